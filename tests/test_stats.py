"""Every statistic against scipy (or an independent brute force where scipy has none)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import stats as ss

from bench import stats


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


def test_hierarchical_bootstrap_covers_the_truth_and_is_seeded() -> None:
    rng = np.random.default_rng(3)
    ref = rng.random((3, 2000))
    sub = ref * 1.10 + 0.01 * rng.standard_normal((3, 2000))  # a 10% improvement
    point, lo, hi = stats.hierarchical_bootstrap_ci(sub, ref, n_boot=400, seed=1)
    assert lo < point < hi and lo < 0.10 < hi
    assert stats.hierarchical_bootstrap_ci(sub, ref, n_boot=400, seed=1) == (point, lo, hi)
    same = stats.hierarchical_bootstrap_ci(ref, ref, n_boot=400, seed=1)
    assert same[1] <= 0.0 <= same[2]


def test_bootstrap_matches_scipy_percentile_bootstrap_for_one_seed() -> None:
    rng = np.random.default_rng(4)
    ref = rng.random(3000)
    sub = ref + 0.05 * rng.random(3000)
    _, lo, hi = stats.hierarchical_bootstrap_ci(sub[None], ref[None], n_boot=3000, seed=0)
    res = ss.bootstrap((sub, ref), lambda s, r, axis=-1: s.mean(axis) / r.mean(axis) - 1, paired=True,
                       method="percentile", n_resamples=3000, random_state=0)
    assert lo == pytest.approx(res.confidence_interval.low, abs=0.004)
    assert hi == pytest.approx(res.confidence_interval.high, abs=0.004)


def test_bootstrap_ratio_ci_for_unpaired_groups() -> None:
    fast = [np.full(5, 7.5), np.full(5, 8.0)]
    slow = [np.full(5, 10.0), np.full(5, 10.5)]
    point, lo, hi = stats.bootstrap_ratio_ci(fast, slow, n_boot=300, seed=0)
    assert point == pytest.approx(7.75 / 10.25 - 1) and lo < point < hi < 0


def test_u_distribution_counts_all_arrangements() -> None:
    dist = stats._u_distribution(3, 4)
    assert dist.sum() == len(list(itertools.combinations(range(7), 3)))
