"""Statistics for comparing recommenders: small pure functions over per-user (or per-seed) arrays.

No torch. Every test states its null hypothesis; every random procedure takes an explicit seed.
Tests are checked against scipy in tests/test_stats.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import special

ALTERNATIVES = ("two-sided", "greater", "less")


@dataclass(frozen=True)
class TestResult:
    name: str
    statistic: float
    p_value: float
    n: int


def _p_from_cdf(cdf: float, sf: float, alternative: str) -> float:
    if alternative == "greater":
        return sf
    if alternative == "less":
        return cdf
    return min(1.0, 2.0 * min(cdf, sf))


def paired_t(a: np.ndarray, b: np.ndarray, alternative: str = "two-sided") -> TestResult:
    """Paired t-test. H0: the mean of a - b is 0 (alternative "greater": mean(a - b) > 0)."""
    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    n = len(d)
    if n < 2:
        return TestResult("paired t-test", math.nan, math.nan, n)
    sd = d.std(ddof=1)
    if sd == 0.0:
        t = math.copysign(math.inf, d.mean()) if d.mean() != 0 else math.nan
    else:
        t = float(d.mean() / (sd / math.sqrt(n)))
    if math.isnan(t):
        return TestResult("paired t-test", t, 1.0, n)
    cdf = float(special.stdtr(n - 1, t))
    return TestResult("paired t-test", t, _p_from_cdf(cdf, 1.0 - cdf, alternative), n)


def rankdata(x: np.ndarray) -> np.ndarray:
    """Average ranks (1-based), ties sharing the mean of their positions."""
    x = np.asarray(x)
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    first = np.r_[True, xs[1:] != xs[:-1]]
    group = np.cumsum(first) - 1
    starts = np.flatnonzero(first)
    ends = np.r_[starts[1:], len(x)]
    avg = (starts + ends + 1) / 2.0  # mean of 1-based positions start+1 .. end
    ranks = np.empty(len(x))
    ranks[order] = avg[group]
    return ranks


def wilcoxon(a: np.ndarray, b: np.ndarray, alternative: str = "two-sided") -> TestResult:
    """Wilcoxon signed-rank test, normal approximation with tie correction, zero differences
    dropped. H0: the differences a - b are symmetric about 0. Statistic: W+ (sum of positive ranks)."""
    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    d = d[d != 0]
    n = len(d)
    if n == 0:
        return TestResult("Wilcoxon signed-rank", 0.0, 1.0, 0)
    r = rankdata(np.abs(d))
    w_plus = float(r[d > 0].sum())
    _, counts = np.unique(np.abs(d), return_counts=True)
    var = n * (n + 1) * (2 * n + 1) / 24.0 - (counts**3 - counts).sum() / 48.0
    z = (w_plus - n * (n + 1) / 4.0) / math.sqrt(var) if var > 0 else 0.0
    cdf = float(special.ndtr(z))
    return TestResult("Wilcoxon signed-rank", w_plus, _p_from_cdf(cdf, float(special.ndtr(-z)), alternative), n)


def permutation_test(a: np.ndarray, b: np.ndarray, n_resamples: int = 10000, seed: int = 0,
                     alternative: str = "two-sided") -> TestResult:
    """Paired sign-flip permutation test of the mean difference. H0: within each pair the two
    values are exchangeable. Exact enumeration when 2^n <= n_resamples."""
    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    n = len(d)
    obs = d.mean()
    if 2**n <= n_resamples:
        signs = 1 - 2 * ((np.arange(2**n)[:, None] >> np.arange(n)[None]) & 1)
        null, exact = (signs * d).mean(1), True
    else:
        rng = np.random.default_rng(seed)
        null = np.concatenate([(rng.choice((-1.0, 1.0), size=(min(1000, n_resamples - i), n)) * d).mean(1)
                               for i in range(0, n_resamples, 1000)])
        exact = False
    eps = 1e-12 * max(abs(obs), 1.0)  # floating-point ties count as "as extreme"
    ge, le = (null >= obs - eps).sum(), (null <= obs + eps).sum()
    add = 0 if exact else 1  # a Monte Carlo p-value counts the observed arrangement itself
    sf, cdf = (ge + add) / (len(null) + add), (le + add) / (len(null) + add)
    return TestResult("paired permutation", float(obs), _p_from_cdf(cdf, sf, alternative), n)


def cohens_dz(a: np.ndarray, b: np.ndarray) -> float:
    """Effect size of paired samples: mean(a - b) / sd(a - b)."""
    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    sd = d.std(ddof=1) if len(d) > 1 else 0.0
    return float(d.mean() / sd) if sd > 0 else math.nan


def win_tie_loss(a: np.ndarray, b: np.ndarray) -> tuple[int, int, int]:
    """How many pairs a wins, ties and loses."""
    a, b = np.asarray(a), np.asarray(b)
    return int((a > b).sum()), int((a == b).sum()), int((a < b).sum())


def holm(p_values: list[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (family-wise error control), in the input order."""
    p = np.asarray(p_values, dtype=np.float64)
    m = len(p)
    order = np.argsort(p, kind="mergesort")
    adj = np.maximum.accumulate((m - np.arange(m)) * p[order])
    out = np.empty(m)
    out[order] = np.minimum(adj, 1.0)
    return out.tolist()


@dataclass(frozen=True)
class LogRatio:
    """An estimate of log(mean(subject) / mean(reference)) with its standard error and (Welch-
    Satterthwaite) degrees of freedom. `scope` says what it covers: "seeds" when both sides have
    two or more seeds (runs), so the seed-to-seed spread is part of the error, or "these seeds"
    (one seed on a side: the interval is over users, or epochs, and covers those runs only)."""

    log_ratio: float
    se: float
    df: float
    scope: str
    n_subject: int
    n_reference: int

    @property
    def ratio(self) -> float:
        return math.exp(self.log_ratio)

    def interval(self, alpha: float = 0.05) -> tuple[float, float]:
        """Two-sided 1 - alpha interval of the ratio (not minus one)."""
        q = float(special.stdtrit(self.df, 1 - alpha / 2)) if self.se > 0 else 0.0
        return math.exp(self.log_ratio - q * self.se), math.exp(self.log_ratio + q * self.se)

    def p_above(self, ratio: float) -> float:
        """One-sided p-value of H0: true ratio <= `ratio` (H1: above it)."""
        if not self.se > 0:
            return 0.0 if self.log_ratio > math.log(ratio) else 1.0
        return float(special.stdtr(self.df, -(self.log_ratio - math.log(ratio)) / self.se))

    def p_below(self, ratio: float) -> float:
        """One-sided p-value of H0: true ratio >= `ratio` (H1: below it)."""
        if not self.se > 0:
            return 0.0 if self.log_ratio < math.log(ratio) else 1.0
        return float(special.stdtr(self.df, (self.log_ratio - math.log(ratio)) / self.se))

    def p_two_sided(self, ratio: float = 1.0) -> float:
        return min(1.0, 2.0 * min(self.p_above(ratio), self.p_below(ratio)))


@dataclass(frozen=True)
class FiellerRatio(LogRatio):
    """A one-seed ratio a / b of paired per-user means, judged by Fieller's pivot instead of the
    delta method: H0 "ratio = rho" is tested with T(rho) = (a - rho b) / se(a - rho b), the
    variance of the difference taken at rho itself (var_ss - 2 rho cov + rho^2 var_rr, per-user
    (co)variances over users). On small test sets (tens of hits a model) the log ratio is skewed
    and the delta method's interval misses on one side up to twice its nominal rate; Fieller's
    does not need the ratio to be normal (docs/statistics.md). Interval and p-values come from the
    one pivot; `se` stays the delta method's, for power arithmetic."""

    a: float
    b: float
    var_ss: float  # var(subject) / users
    cov: float  # cov(subject, reference) / users
    var_rr: float  # var(reference) / users

    def _t(self, ratio: float) -> float:
        v = self.var_ss - 2 * ratio * self.cov + ratio * ratio * self.var_rr
        diff = self.a - ratio * self.b
        if not v > 0:
            return math.copysign(math.inf, diff) if diff else 0.0
        return diff / math.sqrt(v)

    def interval(self, alpha: float = 0.05) -> tuple[float, float]:
        """The ratios rho >= 0 that a two-sided test at alpha keeps: roots of (a - rho b)^2 =
        q (var_ss - 2 rho cov + rho^2 var_rr), q = t^2; unbounded above while b itself is not
        significantly above zero."""
        q = float(special.stdtrit(self.df, 1 - alpha / 2)) ** 2
        lead = self.b**2 - q * self.var_rr
        half = (self.a * self.b - q * self.cov) ** 2 - lead * (self.a**2 - q * self.var_ss)
        if lead <= 0 or half < 0:
            return 0.0, math.inf
        mid, width = (self.a * self.b - q * self.cov) / lead, math.sqrt(half) / lead
        return max(mid - width, 0.0), mid + width

    def p_above(self, ratio: float) -> float:
        return float(special.stdtr(self.df, -self._t(ratio)))

    def p_below(self, ratio: float) -> float:
        return float(special.stdtr(self.df, self._t(ratio)))


def _fieller(s: np.ndarray, r: np.ndarray, ns: int, nr: int) -> FiellerRatio:
    """The one-seed estimate of seed-averaged per-user values s, r (users,), paired by user."""
    u = len(s)
    c = np.cov(s, r, ddof=1) / u  # (2, 2)
    a, b = float(s.mean()), float(r.mean())
    d = s / a - r / b  # the delta method's per-user log-ratio terms, for `se`
    # t's degrees of freedom from the users where either model scores: on a sparse test set the
    # variance estimate rests on those alone (LastFM: ~20 of 1,090 users), and U - 1 overstates its
    # precision (docs/statistics.md); on Beauty-sized sets the two are the same quantile
    df = max(float(np.count_nonzero((s != 0) | (r != 0))) - 1.0, 1.0)
    return FiellerRatio(math.log(a / b), math.sqrt(float(d.var(ddof=1)) / u), df, "these seeds", ns, nr,
                        a, b, float(c[0, 0]), float(c[0, 1]), float(c[1, 1]))


def _welch_df(parts: list[tuple[float, float]]) -> float:
    """Welch-Satterthwaite degrees of freedom of a sum of variance estimates (value, df)."""
    total = sum(v for v, _ in parts)
    denom = sum(v * v / d for v, d in parts if d > 0 and math.isfinite(d))
    return total * total / denom if denom > 0 else math.inf


def seed_ratio(subject: np.ndarray, reference: np.ndarray) -> LogRatio:
    """log(mean(subject) / mean(reference)) of (seeds, users) per-user metrics of two models on
    the same users, seeds being the unit of inference.

    With >= 2 seeds a side the variance is Welch's over seed means (each seed mean carries its own
    per-user noise) plus the part of the per-user variance that every seed shares (a user hard for
    one seed is hard for all, so resampling seeds alone would miss it): var(paired relative
    per-user difference of seed-averaged values) / users, less its within-seed part, which the
    seed means already hold. With one seed on a side only the per-user variance is estimable, and
    the interval covers the effect of these seeds only (Fieller's, `FiellerRatio`).
    """
    s, r = np.atleast_2d(subject).astype(np.float64), np.atleast_2d(reference).astype(np.float64)
    if s.shape[1] != r.shape[1]:
        raise ValueError("subject and reference must have the same users")
    (ns, u), nr = s.shape, len(r)
    a, b = s.mean(), r.mean()
    if not (a > 0 and b > 0):
        return LogRatio(math.nan, math.nan, math.nan, "these seeds", ns, nr)
    if min(ns, nr) < 2:
        return _fieller(s.mean(0), r.mean(0), ns, nr)
    d = s.mean(0) / a - r.mean(0) / b  # delta method of the log ratio, per user
    user = float(d.var(ddof=1)) / u
    seed_s = float(s.mean(1).var(ddof=1)) / (ns * a * a)
    seed_r = float(r.mean(1).var(ddof=1)) / (nr * b * b)
    within = (float(s.var(0, ddof=1).mean()) / (a * a * ns) + float(r.var(0, ddof=1).mean()) / (b * b * nr)) / u
    shared = max(user - within, 0.0)
    df = _welch_df([(seed_s, ns - 1), (seed_r, nr - 1), (shared, u - 1)])
    return LogRatio(math.log(a / b), math.sqrt(seed_s + seed_r + shared), df, "seeds", ns, nr)


def contrast_ratio(subject: list[np.ndarray], reference: list[np.ndarray]) -> LogRatio:
    """log(A / B) where A is the mean over the subject's settings of each setting's mean, B the same
    over the reference's, from each setting's (seeds, users) per-user metric on the same users (a
    sensitivity grid: in-range against out-of-range points, each setting weighted equally).

    `seed_ratio` generalised (with one setting a side it is `seed_ratio`): each setting's seed means
    give its own Welch term, w^2 var(seed means) / (n A^2) with w = 1 / settings of its side; the
    per-user variance every seed and setting shares is var_u(d_u) / U, d_u = sum_p w x_pu / A -
    sum_q w y_qu / B on seed-averaged values, less the within-seed part the seed terms already hold.
    With one seed at any setting the interval is over users and covers these seeds only."""
    s = [np.atleast_2d(m).astype(np.float64) for m in subject]
    r = [np.atleast_2d(m).astype(np.float64) for m in reference]
    if len({m.shape[1] for m in s + r}) != 1:
        raise ValueError("every setting must have the same users")
    a, b = float(np.mean([m.mean() for m in s])), float(np.mean([m.mean() for m in r]))
    ns, nr, u = sum(map(len, s)), sum(map(len, r)), s[0].shape[1]
    if not (a > 0 and b > 0):
        return LogRatio(math.nan, math.nan, math.nan, "these seeds", ns, nr)
    d = sum(m.mean(0) for m in s) / (len(s) * a) - sum(m.mean(0) for m in r) / (len(r) * b)  # (users,)
    user = float(np.var(d, ddof=1)) / u
    if min(map(len, s + r)) < 2:
        return LogRatio(math.log(a / b), math.sqrt(user), u - 1.0, "these seeds", ns, nr)
    sides = [(m, len(s), a) for m in s] + [(m, len(r), b) for m in r]  # (matrix, settings on its side, side mean)
    seed_terms = [(float(m.mean(1).var(ddof=1)) / (len(m) * w * w * mu * mu), len(m) - 1.0) for m, w, mu in sides]
    within = sum(float(m.var(0, ddof=1).mean()) / (len(m) * w * w * mu * mu) for m, w, mu in sides) / u
    shared = max(user - within, 0.0)
    df = _welch_df([*seed_terms, (shared, u - 1.0)])
    return LogRatio(math.log(a / b), math.sqrt(sum(v for v, _ in seed_terms) + shared), df, "seeds", ns, nr)


def mean_interval(values: np.ndarray, alpha: float = 0.05) -> tuple[float, float, float]:
    """(mean, low, high): the mean of independent values (a setting's seeds) and its two-sided
    1 - alpha t interval; nan bounds with fewer than two values."""
    v = np.asarray(values, dtype=np.float64)
    m = float(v.mean()) if len(v) else math.nan
    if len(v) < 2:
        return m, math.nan, math.nan
    half = float(special.stdtrit(len(v) - 1, 1 - alpha / 2)) * float(v.std(ddof=1)) / math.sqrt(len(v))
    return m, m - half, m + half


def run_ratio(subject: list[np.ndarray], reference: list[np.ndarray]) -> LogRatio:
    """Ratio of the geometric means of run-level mean values (e.g. mean epoch time per run),
    Welch's t on the logs: runs are the unit, so a machine's speed drifting between runs is part
    of the error. With one run on a side the interval is over that run's values (epochs), and
    covers these runs only."""
    sm = np.array([np.mean(g) for g in subject], dtype=np.float64)
    rm = np.array([np.mean(g) for g in reference], dtype=np.float64)
    if len(sm) < 2 or len(rm) < 2:
        ls, lr = np.log(np.concatenate(subject)), np.log(np.concatenate(reference))
        scope = "these seeds"
    else:
        ls, lr = np.log(sm), np.log(rm)
        scope = "seeds"
    if len(ls) < 2 or len(lr) < 2:
        return LogRatio(float(ls.mean() - lr.mean()), math.nan, math.nan, scope, len(sm), len(rm))
    vs, vr = float(ls.var(ddof=1)) / len(ls), float(lr.var(ddof=1)) / len(lr)
    df = _welch_df([(vs, len(ls) - 1), (vr, len(lr) - 1)])
    return LogRatio(float(ls.mean() - lr.mean()), math.sqrt(vs + vr), df, scope, len(sm), len(rm))


def paired_ratio(subject: np.ndarray, reference: np.ndarray) -> LogRatio:
    """Geometric-mean ratio of paired positive values (the epochs of one round of an interleaved
    benchmark, `bench cost`): a t interval over the pairs' log ratios, so that a machine's drift
    between rounds, common to both sides of a pair, cancels. Pairs are the unit ("seeds" scope
    with two or more)."""
    d = np.log(np.asarray(subject, dtype=np.float64)) - np.log(np.asarray(reference, dtype=np.float64))
    n = len(d)
    if n < 2:
        return LogRatio(float(d.mean()) if n else math.nan, math.nan, math.nan, "these seeds", n, n)
    return LogRatio(float(d.mean()), float(d.std(ddof=1)) / math.sqrt(n), n - 1.0, "seeds", n, n)


def product_ratio(a: LogRatio, b: LogRatio) -> LogRatio:
    """The ratio a x b of two independent estimates (e.g. epochs to a target times the cost per
    epoch): log ratios add, variances add, Welch-Satterthwaite degrees of freedom."""
    var_a, var_b = a.se**2, b.se**2
    df = _welch_df([(var_a, a.df), (var_b, b.df)])
    scope = "seeds" if a.scope == b.scope == "seeds" else "these seeds"
    return LogRatio(a.log_ratio + b.log_ratio, math.sqrt(var_a + var_b), df, scope, a.n_subject, a.n_reference)


def detectable(est: LogRatio, alpha: float = 0.05, power: float = 0.8) -> float:
    """The smallest log ratio a two-sided test at `alpha` detects with `power`, at this standard
    error and degrees of freedom (nan when the error is unknown)."""
    if not est.se > 0 or not math.isfinite(est.se):
        return math.nan
    df = est.df if math.isfinite(est.df) else 1e9
    return float((special.stdtrit(df, 1 - alpha / 2) + special.stdtrit(df, power)) * est.se)


def seeds_needed(subject: np.ndarray, reference: np.ndarray, margin: float, alpha: float = 0.05,
                 power: float = 0.8, most: int = 200) -> int | None:
    """Seeds per model at which a one-sided test at alpha / 2 detects a log ratio `margin` with
    `power`, from the observed per-seed and shared per-user variances (>= 2 seeds a side needed);
    None when even `most` seeds would not (the shared per-user part does not shrink with seeds)."""
    s, r = np.atleast_2d(subject).astype(np.float64), np.atleast_2d(reference).astype(np.float64)
    if min(len(s), len(r)) < 2:
        return None
    est = seed_ratio(s, r)
    a, b, u = s.mean(), r.mean(), s.shape[1]
    per_s, per_r = float(s.mean(1).var(ddof=1)) / (a * a), float(r.mean(1).var(ddof=1)) / (b * b)
    shared = max(est.se**2 - per_s / len(s) - per_r / len(r), 0.0)  # what more seeds leave
    if not math.isfinite(shared):
        return None
    for n in range(2, most + 1):
        se = math.sqrt((per_s + per_r) / n + shared)
        df = _welch_df([(per_s / n, n - 1), (per_r / n, n - 1), (shared, u - 1)])
        if (special.stdtrit(df, 1 - alpha / 2) + special.stdtrit(df, power)) * se <= margin:
            return n
    return None


def mann_whitney(x: np.ndarray, y: np.ndarray, alternative: str = "two-sided") -> TestResult:
    """Mann-Whitney U test. H0: a random x is as likely to exceed a random y as the reverse.
    Statistic: U of x. Exact null distribution without ties for small samples (n1 + n2 <= 20),
    else the normal approximation with tie and continuity corrections."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    n1, n2 = len(x), len(y)
    ranks = rankdata(np.concatenate([x, y]))
    u = float(ranks[:n1].sum() - n1 * (n1 + 1) / 2.0)
    ties = len(np.unique(np.concatenate([x, y]))) < n1 + n2
    if n1 + n2 <= 20 and not ties:
        dist = _u_distribution(n1, n2)
        total = dist.sum()
        k = round(u)
        sf, cdf = dist[k:].sum() / total, dist[: k + 1].sum() / total
        return TestResult("Mann-Whitney U (exact)", u, _p_from_cdf(float(cdf), float(sf), alternative), n1 + n2)
    n = n1 + n2
    _, t = np.unique(ranks, return_counts=True)
    sd = math.sqrt(n1 * n2 / 12.0 * ((n + 1) - (t**3 - t).sum() / (n * (n - 1))))
    mu = n1 * n2 / 2.0
    if sd == 0:
        return TestResult("Mann-Whitney U (normal)", u, 1.0, n)
    sf = float(special.ndtr(-(u - mu - 0.5) / sd))  # P(U >= u), continuity-corrected
    cdf = float(special.ndtr((u - mu + 0.5) / sd))
    return TestResult("Mann-Whitney U (normal)", u, _p_from_cdf(cdf, sf, alternative), n)


def _u_distribution(n1: int, n2: int) -> np.ndarray:
    """Counts of each U value under H0 (all arrangements equally likely), by dynamic programming."""
    # f[i][j] = polynomial of U counts for i x's and j y's
    table: dict[tuple[int, int], np.ndarray] = {}
    for i in range(n1 + 1):
        for j in range(n2 + 1):
            if i == 0 or j == 0:
                table[i, j] = np.ones(1)
                continue
            with_x = np.concatenate([np.zeros(j), table[i - 1, j]])  # largest is an x: beats j y's
            without = table[i, j - 1]
            size = max(len(with_x), len(without))
            table[i, j] = np.pad(with_x, (0, size - len(with_x))) + np.pad(without, (0, size - len(without)))
    return table[n1, n2]


def seed_spread(m: np.ndarray) -> float:
    """A model's seed-to-seed spread of its true mean (relative sd) from (seeds, users) values:
    the variance of the seed means less what their per-user noise alone gives (nan with one seed)."""
    if len(m) < 2 or not m.mean() > 0:
        return math.nan
    mean, u = float(m.mean()), m.shape[1]
    excess = float(m.mean(1).var(ddof=1)) - float(m.var(0, ddof=1).mean()) / u
    return math.sqrt(max(excess, 0.0)) / mean


def pairwise_p(mats: dict[Any, np.ndarray]) -> dict[tuple[Any, Any], float]:
    """Two-sided p-values of every pair of models' (seeds, users) arrays, seeds the unit."""
    keys = list(mats)
    return {(a, b): seed_ratio(mats[a], mats[b]).p_two_sided()
            for i, a in enumerate(keys) for b in keys[i + 1:]}
