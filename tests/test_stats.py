"""Every statistic against scipy (or an independent brute force where scipy has none)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import stats as ss

from bench.results import stats


@pytest.fixture
def pair() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    a = rng.random(500)
    return a, a - 0.03 + 0.2 * rng.standard_normal(500)


@pytest.mark.parametrize("alt", stats.ALTERNATIVES)
def test_paired_t_matches_scipy(pair: tuple[np.ndarray, np.ndarray], alt: str) -> None:
    ours, ref = stats.paired_t(*pair, alternative=alt), ss.ttest_rel(*pair, alternative=alt)
    assert ours.statistic == pytest.approx(ref.statistic) and ours.p_value == pytest.approx(ref.pvalue)


@pytest.mark.parametrize("alt", stats.ALTERNATIVES)
def test_wilcoxon_matches_scipy_with_ties_and_zeros(alt: str) -> None:
    rng = np.random.default_rng(1)
    a = rng.integers(0, 6, 400).astype(float)  # many ties and zero differences, like HR@k
    b = rng.integers(0, 5, 400).astype(float)
    ours = stats.wilcoxon(a, b, alt)
    ref = ss.wilcoxon(a, b, alternative=alt, method="approx", correction=False, zero_method="wilcox")
    assert ours.p_value == pytest.approx(ref.pvalue, rel=1e-9)


@pytest.mark.parametrize("alt", stats.ALTERNATIVES)
def test_exact_permutation_matches_scipy(alt: str) -> None:
    rng = np.random.default_rng(2)
    a, b = rng.random(10), rng.random(10)
    ours = stats.permutation_test(a, b, n_resamples=2**10, alternative=alt)
    ref = ss.permutation_test((a, b), lambda x, y: np.mean(x - y), permutation_type="samples",
                              n_resamples=np.inf, alternative=alt)
    assert ours.p_value == pytest.approx(ref.pvalue)


def test_monte_carlo_permutation_is_seeded_and_close_to_exact(pair: tuple[np.ndarray, np.ndarray]) -> None:
    a, b = pair
    r1 = stats.permutation_test(a[:40], b[:40], n_resamples=4000, seed=5)
    r2 = stats.permutation_test(a[:40], b[:40], n_resamples=4000, seed=5)
    ref = ss.permutation_test((a[:40], b[:40]), lambda x, y: np.mean(x - y), permutation_type="samples",
                              n_resamples=20000, random_state=0)
    assert r1 == r2 and r1.p_value == pytest.approx(ref.pvalue, abs=0.03)


@pytest.mark.parametrize("alt", stats.ALTERNATIVES)
@pytest.mark.parametrize(("n1", "n2"), [(3, 4), (6, 5), (30, 25)])
def test_mann_whitney_matches_scipy(alt: str, n1: int, n2: int) -> None:
    rng = np.random.default_rng(n1)
    x, y = rng.random(n1) + 0.2, rng.random(n2)
    ours = stats.mann_whitney(x, y, alt)
    method = "exact" if n1 + n2 <= 20 else "asymptotic"
    ref = ss.mannwhitneyu(x, y, alternative=alt, method=method)
    assert ours.statistic == pytest.approx(ref.statistic) and ours.p_value == pytest.approx(ref.pvalue)


def test_mann_whitney_with_ties_matches_scipy() -> None:
    x, y = np.array([1.0, 2, 2, 3, 5, 5, 7]), np.array([2.0, 3, 3, 4, 4, 6])
    ref = ss.mannwhitneyu(x, y, alternative="greater", method="asymptotic")
    assert stats.mann_whitney(x, y, "greater").p_value == pytest.approx(ref.pvalue)


def test_rankdata_matches_scipy() -> None:
    x = np.array([3.0, 1, 3, 2, 2, 2, 9])
    assert np.allclose(stats.rankdata(x), ss.rankdata(x))


def test_holm_matches_the_definition() -> None:
    p = [0.01, 0.04, 0.03, 0.005]
    m = len(p)
    order = sorted(range(m), key=lambda i: p[i])
    expected = [0.0] * m
    running = 0.0
    for k, i in enumerate(order):
        running = max(running, min(1.0, (m - k) * p[i]))
        expected[i] = running
    assert stats.holm(p) == pytest.approx(expected)
    assert stats.holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])


def test_cohens_dz_and_win_tie_loss(pair: tuple[np.ndarray, np.ndarray]) -> None:
    a, b = pair
    d = a - b
    assert stats.cohens_dz(a, b) == pytest.approx(d.mean() / d.std(ddof=1))
    assert stats.win_tie_loss([1, 2, 3], [0, 2, 4]) == (1, 1, 1)


def test_seed_ratio_with_seeds_is_welch_on_seed_means_when_users_share_nothing() -> None:
    # per-user values independent across seeds (no user effect): the shared per-user part is ~0 and
    # the interval is Welch's t on seed means (delta method on the log ratio)
    rng = np.random.default_rng(3)
    sub, ref = 1.1 + rng.standard_normal((4, 5000)), 1.0 + rng.standard_normal((3, 5000))
    est = stats.seed_ratio(sub, ref)
    a, b = sub.mean(1), ref.mean(1)
    se = np.sqrt(a.var(ddof=1) / 4 / a.mean() ** 2 + b.var(ddof=1) / 3 / b.mean() ** 2)
    assert est.scope == "seeds" and est.log_ratio == pytest.approx(np.log(a.mean() / b.mean()))
    assert est.se == pytest.approx(se, rel=0.2)
    welch = ss.ttest_ind(np.log(a), np.log(b), equal_var=False)
    assert est.df == pytest.approx(welch.df, rel=0.3)


def test_seed_ratio_adds_the_per_user_variance_the_seeds_share() -> None:
    # a strong user effect shared by all seeds of both models: the seed means agree closely, but the
    # user sample still moves the ratio; the interval must carry it
    rng = np.random.default_rng(5)
    user = rng.gamma(0.3, 1.0, size=3000)
    gain = 1.2 + 0.6 * rng.standard_normal(3000)  # how much better the subject is differs per user
    sub = user * gain + 0.01 * rng.standard_normal((3, 3000))
    ref = user + 0.01 * rng.standard_normal((3, 3000))
    est = stats.seed_ratio(sub, ref)
    lo, hi = est.interval()
    assert lo < 1.2 < hi
    assert est.se > 5 * est.log_ratio * 0.01 / np.sqrt(3)  # far more than the seed noise alone
    welch_only = np.sqrt(sub.mean(1).var(ddof=1) / 3 / sub.mean() ** 2 + ref.mean(1).var(ddof=1) / 3 / ref.mean() ** 2)
    assert est.se >= welch_only


def test_one_seed_a_side_is_an_interval_over_users_for_these_seeds_only() -> None:
    rng = np.random.default_rng(4)
    ref = rng.random(3000)
    sub = ref + 0.05 * rng.random(3000)
    est = stats.seed_ratio(sub[None], ref[None])
    assert est.scope == "these seeds" and est.df == 2999
    d = sub / sub.mean() - ref / ref.mean()
    assert est.se == pytest.approx(d.std(ddof=1) / np.sqrt(3000))
    assert est.p_two_sided() == pytest.approx(2 * min(est.p_above(1.0), est.p_below(1.0)))


def test_one_seed_interval_is_fiellers_and_its_p_values_come_from_the_same_pivot() -> None:
    rng = np.random.default_rng(8)
    ref = (rng.random(1100) < 0.015) * rng.random(1100)  # a small, sparse test set: ~16 hits
    sub = np.where(rng.random(1100) < 0.7, ref, (rng.random(1100) < 0.015) * rng.random(1100))
    est = stats.seed_ratio(sub[None], ref[None])
    lo, hi = est.interval()
    assert lo < est.ratio < hi
    # the bounds are the ratios the one-sided tests reject at exactly alpha / 2
    assert est.p_below(hi) == pytest.approx(0.025) and est.p_above(lo) == pytest.approx(0.025)
    scoring = np.count_nonzero((sub != 0) | (ref != 0))  # the users the variance rests on
    assert est.df == scoring - 1
    for rho in (lo, hi):  # Fieller's pivot: the paired t statistic of s - rho r, by scipy
        t = ss.ttest_1samp(sub - rho * ref, 0.0).statistic
        assert 2 * ss.t.sf(abs(t), scoring - 1) == pytest.approx(0.05)
    # not symmetric on the log scale, unlike the delta method's
    assert abs(math.log(hi / est.ratio) - math.log(est.ratio / lo)) > 0.01


def test_one_seed_interval_agrees_with_the_delta_method_on_a_large_test_set() -> None:
    rng = np.random.default_rng(9)
    ref = rng.random(20000)
    est = stats.seed_ratio((ref * 1.05 + 0.1 * rng.random(20000))[None], ref[None])
    delta = (math.exp(est.log_ratio - 1.96 * est.se), math.exp(est.log_ratio + 1.96 * est.se))
    assert est.interval() == pytest.approx(delta, rel=1e-3)


def test_one_seed_interval_is_unbounded_when_the_reference_is_not_above_zero() -> None:
    ref = np.zeros(500)
    ref[:2] = 1.0  # two hits: the reference's mean is not significantly above zero
    sub = np.zeros(500)
    sub[:5] = 1.0
    assert stats.seed_ratio(sub[None], ref[None]).interval()[1] == math.inf


def test_run_ratio_is_welch_on_log_run_means() -> None:
    fast = [np.full(5, 7.5), np.full(5, 8.0), np.full(5, 7.8)]
    slow = [np.full(5, 10.0), np.full(5, 10.5), np.full(5, 10.1)]
    est = stats.run_ratio(fast, slow)
    lf, ls = np.log([7.5, 8.0, 7.8]), np.log([10.0, 10.5, 10.1])
    ref = ss.ttest_ind(lf, ls, equal_var=False)
    assert est.log_ratio == pytest.approx(lf.mean() - ls.mean())
    assert est.p_two_sided() == pytest.approx(ref.pvalue) and est.df == pytest.approx(ref.df)
    lo, hi = est.interval()
    assert lo < est.ratio < hi < 1


def test_power_helpers() -> None:
    rng = np.random.default_rng(6)
    user = rng.gamma(0.5, 1.0, size=4000)
    ref = user * (1 + 0.03 * rng.standard_normal((3, 1)))
    sub = user * 1.05 * (1 + 0.03 * rng.standard_normal((3, 1)))
    est = stats.seed_ratio(sub, ref)
    assert stats.detectable(est) > 2 * est.se
    need = stats.seeds_needed(sub, ref, np.log(1.089 / 1.0297))
    assert need is not None and need >= 2
    assert stats.seeds_needed(sub[:1], ref[:1], 0.05) is None


def test_u_distribution_counts_all_arrangements() -> None:
    dist = stats._u_distribution(3, 4)
    assert dist.sum() == len(list(itertools.combinations(range(7), 3)))
