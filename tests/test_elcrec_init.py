"""ELCRec's centre initialisations (kmeans, random, kmeanspp) and the k-means++ seeding itself."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from bench.cli import main
from bench.data import load_dataset
from bench.evaluate import mean_pooled_train_outputs
from bench.modelio import build_model
from models.elcrec import INITS
from models.kmeans import kmeanspp_seeds

DATA = "synthetic:users=120,items=30,intents=3,seed=1"


def _initialised(init: str, seed: int, k: int = 6) -> tuple[torch.nn.Module, torch.Tensor]:
    """An ELCRec after parameter reset and the epoch-0 hook, as the trainer runs them; its centres."""
    data = load_dataset(DATA)
    model = build_model("elcrec", data.item_size, {"k": k, "layers": 1, "init": init})
    model.reset_parameters(torch.Generator().manual_seed(seed))
    model.epoch_start(0, lambda: mean_pooled_train_outputs(model, data, torch.device("cpu")), seed)
    return model, model.cluster_centers.detach().clone()  # type: ignore[attr-defined]


@pytest.mark.parametrize("init", INITS)
def test_every_init_gives_k_unit_centres_the_same_for_a_seed(init: str, one_torch_thread: None) -> None:
    _, c = _initialised(init, seed=3)
    assert c.shape == (6, 64) and torch.allclose(c.norm(dim=1), torch.ones(6), atol=1e-5)
    assert torch.equal(c, _initialised(init, seed=3)[1])  # deterministic per seed
    assert not torch.equal(c, _initialised(init, seed=4)[1])
    assert len(torch.unique(c, dim=0)) == 6


def test_the_encoder_starts_the_same_under_every_init(one_torch_thread: None) -> None:
    states = [_initialised(init, seed=5)[0].state_dict() for init in INITS]
    for name, tensor in states[0].items():
        if name != "cluster_centers":
            assert all(torch.equal(tensor, s[name]) for s in states[1:]), name


def test_kmeanspp_centres_are_normalised_users_and_no_more_epoch_hooks(one_torch_thread: None) -> None:
    model, c = _initialised("kmeanspp", seed=2)
    data = load_dataset(DATA)
    users = torch.nn.functional.normalize(torch.from_numpy(mean_pooled_train_outputs(model, data,
                                                                                     torch.device("cpu"))), dim=1)
    assert all(bool(((users - row).abs().max(1).values < 1e-5).any()) for row in c)  # each centre is a user
    model.epoch_start(1, lambda: pytest.fail("the centres are initialised at epoch 0 only"), 2)


def _blobs(clusters: int = 8, per: int = 40, dim: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Well-separated Gaussian blobs: centres 10 apart or more, sd 0.1; (points, cluster labels)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim)) * 10
    labels = np.repeat(np.arange(clusters), per)
    return (centres[labels] + rng.normal(scale=0.1, size=(len(labels), dim))).astype(np.float32), labels


def test_kmeanspp_picks_one_point_per_cluster_far_more_often_than_uniform_choice() -> None:
    x, labels = _blobs()
    rows = {tuple(r): i for i, r in enumerate(x)}
    full_pp = full_uniform = 0
    for seed in range(100):
        picked = [labels[rows[tuple(r)]] for r in kmeanspp_seeds(x, 8, seed)]
        full_pp += len(set(picked)) == 8
        full_uniform += len(set(labels[np.random.default_rng(seed).choice(len(x), 8, replace=False)])) == 8
    # uniform choice covers all 8 blobs with probability about 8!/8^8 = 0.24%
    assert full_pp >= 95 and full_uniform <= 5


def test_kmeanspp_with_fewer_distinct_points_than_k_and_too_few_points() -> None:
    x = np.repeat(np.eye(3, dtype=np.float32), 2, axis=0)  # 6 points, 3 distinct
    got = kmeanspp_seeds(x, 5, seed=0)
    assert got.shape == (5, 3) and len(np.unique(got, axis=0)) == 3  # every distinct point first
    assert np.array_equal(got, kmeanspp_seeds(x, 5, seed=0))
    with pytest.raises(ValueError, match="at least k=7 points"):
        kmeanspp_seeds(x, 7, seed=0)


def test_an_unknown_init_is_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["run", "--models", "elcrec", "--profile", "smoke", "--set", "elcrec.init=forgy", "--out",
               str(tmp_path / "runs")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "init must be one of kmeans, random, kmeanspp" in err
    assert not (tmp_path / "runs" / "records.jsonl").exists()
