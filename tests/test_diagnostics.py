from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import entropy as scipy_entropy

from bench.data import load_dataset
from bench.diagnostics import ari, cluster_diagnostics, entropy, nmi, usage
from bench.modelio import build_model


def test_perfect_and_permuted_assignments_score_one() -> None:
    labels = np.repeat(np.arange(4), 25)
    perm = np.array([2, 0, 3, 1])[labels]
    assert nmi(labels, perm) == pytest.approx(1.0) and ari(labels, perm) == pytest.approx(1.0)


def test_independent_assignments_score_near_zero() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 5, 20000), rng.integers(0, 5, 20000)
    assert abs(ari(a, b)) < 0.01 and nmi(a, b) < 0.01


def test_ari_of_a_known_example() -> None:
    # by hand: table [[2,1],[0,3]] -> index 1+3 = 4, expected 6*7/15 = 2.8, max (6+7)/2 = 6.5
    a, b = np.array([0, 0, 0, 1, 1, 1]), np.array([0, 0, 1, 1, 1, 1])
    assert ari(a, b) == pytest.approx((4 - 2.8) / (6.5 - 2.8))


def test_entropy_matches_scipy() -> None:
    counts = np.array([5, 0, 3, 2])
    assert entropy(counts) == pytest.approx(scipy_entropy(counts))


@pytest.mark.parametrize(("counts", "effective"), [
    ([10, 10, 0, 0], 2.0),  # two equally used centres of four: 2, however many stay empty
    ([7, 7, 7, 7, 7, 7, 7, 7], 8.0),  # all used equally: k
    ([5, 0, 0, 0], 1.0),  # collapse onto one centre
    ([3, 1], float(np.exp(-(0.75 * np.log(0.75) + 0.25 * np.log(0.25))))),  # 1.755: between 1 and 2
])
def test_effective_clusters_of_known_counts(counts: list[int], effective: float) -> None:
    got = usage(np.array(counts))
    assert got["effective_clusters"] == pytest.approx(effective)
    assert got["effective_share"] == pytest.approx(effective / len(counts))
    assert got["max_usage_entropy_nats"] == pytest.approx(np.log(len(counts)))


def test_usage_is_measured_against_every_centre_not_only_the_used_ones() -> None:
    data = load_dataset("synthetic:users=120,items=30,intents=3,seed=1")
    model = build_model("elcrec", data.item_size, {"k": 16, "layers": 1})
    model.reset_parameters(torch.Generator().manual_seed(0))
    with torch.no_grad():  # 16 identical centres: every user picks the first
        model.cluster_centers.copy_(model.cluster_centers[:1].expand(16, -1))
    diag = cluster_diagnostics(model, data, torch.device("cpu"))
    assert diag is not None and diag["centres_used"] == 1 and diag["usage_entropy_nats"] == 0.0
    assert diag["max_usage_entropy_nats"] == pytest.approx(np.log(16))
    assert diag["effective_clusters"] == 1.0 and diag["effective_share"] == 1 / 16
    assert cluster_diagnostics(build_model("sasrec", data.item_size, {}), data, torch.device("cpu")) is None


def test_positions_are_counted_without_padding_and_spread_where_users_are_not() -> None:
    """Every real position of every training sequence (its last 50 at most) is assigned, padding
    never, and the last position of every user; identical centres leave one in use there too."""
    data = load_dataset("synthetic:users=120,items=30,intents=3,seed=1")
    model = build_model("elcrec", data.item_size, {"k": 16, "layers": 1})
    model.reset_parameters(torch.Generator().manual_seed(0))
    starts, ends = data.train_arrays()
    diag = cluster_diagnostics(model, data, torch.device("cpu"))
    assert diag is not None and diag["positions_counted"] == int(np.minimum(ends - starts, 50).sum())
    assert diag["last_counted"] == data.n_users
    assert 1 <= diag["positions_centres_used"] <= 16 and 1.0 <= diag["positions_effective_clusters"] <= 16.0
    with torch.no_grad():  # identical centres: every position too picks the first
        model.cluster_centers.copy_(model.cluster_centers[:1].expand(16, -1))
    same = cluster_diagnostics(model, data, torch.device("cpu"))
    assert same is not None and same["positions_centres_used"] == 1 == same["last_centres_used"]
