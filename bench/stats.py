"""Statistics for comparing recommenders: small pure functions over per-user (or per-seed) arrays.

No torch. Every test states its null hypothesis; every random procedure takes an explicit seed.
Tests are checked against scipy in tests/test_stats.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

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


def hierarchical_bootstrap_ci(subject: np.ndarray, reference: np.ndarray, n_boot: int = 2000, seed: int = 0,
                              alpha: float = 0.05) -> tuple[float, float, float]:
    """CI of the relative improvement mean(subject) / mean(reference) - 1 of paired per-user data.

    subject, reference: (S, U) per-seed, per-user metrics (S may differ between the two). Each
    replicate resamples seeds (with replacement, per model), then users (with replacement, the
    same users for both models, since users are paired). Returns (point, low, high), percentile.
    """
    s, r = np.atleast_2d(subject).astype(np.float64), np.atleast_2d(reference).astype(np.float64)
    if s.shape[1] != r.shape[1]:
        raise ValueError("subject and reference must have the same users")
    point = s.mean() / r.mean() - 1.0
    rng = np.random.default_rng(seed)
    u = s.shape[1]
    stats = []
    for start in range(0, n_boot, 100):
        k = min(100, n_boot - start)
        s_mean = s[rng.integers(0, len(s), size=(k, len(s)))].mean(1)  # (k, U): seed-resampled means
        r_mean = r[rng.integers(0, len(r), size=(k, len(r)))].mean(1)
        users = rng.integers(0, u, size=(k, u))  # the same resampled users for both models
        num = np.take_along_axis(s_mean, users, 1).mean(1)
        den = np.take_along_axis(r_mean, users, 1).mean(1)
        stats.append(num / np.where(den == 0, np.nan, den) - 1.0)
    boot = np.concatenate(stats)
    lo, hi = np.quantile(boot, [alpha / 2, 1 - alpha / 2])
    return float(point), float(lo), float(hi)


def bootstrap_ratio_ci(subject: list[np.ndarray], reference: list[np.ndarray], n_boot: int = 2000, seed: int = 0,
                       alpha: float = 0.05) -> tuple[float, float, float]:
    """CI of mean(subject) / mean(reference) - 1 for unpaired grouped data (e.g. epoch times of
    runs): resample groups, then values within each group, independently per side."""
    rng = np.random.default_rng(seed)

    def one(groups: list[np.ndarray]) -> float:
        picked = [groups[i] for i in rng.integers(0, len(groups), size=len(groups))]
        return float(np.mean(np.concatenate([g[rng.integers(0, len(g), size=len(g))] for g in picked])))

    point = float(np.mean(np.concatenate(subject)) / np.mean(np.concatenate(reference)) - 1.0)
    boot = np.array([one(subject) / one(reference) - 1.0 for _ in range(n_boot)])
    lo, hi = np.quantile(boot, [alpha / 2, 1 - alpha / 2])
    return point, float(lo), float(hi)


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
