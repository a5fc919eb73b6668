from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.data import SeqData, load_dataset
from bench.data.synthetic import synthetic_from_spec
from bench.evaluate import evaluate, representation_stats
from bench.metrics import per_user_metrics
from bench.modelio import build_model, load_checkpoint
from tests.conftest import locate


def brute_force_ranks(model, data: SeqData, rule: str) -> np.ndarray:  # type: ignore[no-untyped-def]
    inputs, targets, hist_end = data.eval_split("test")
    model.eval()
    with torch.no_grad():
        scores = (model(torch.from_numpy(inputs))[:, -1] @ model.item_embeddings.weight.T).numpy()
    for u in range(data.n_users):
        seen = data.flat[data.starts[u] : hist_end[u]]
        scores[u, seen] = 0.0 if rule == "zero" else -np.inf
    t = scores[np.arange(data.n_users), targets]
    return (scores >= t[:, None]).sum(1)


@pytest.mark.parametrize("rule", ["zero", "exclude"])
def test_ranks_equal_a_brute_force_full_sort(rule: str) -> None:
    data = synthetic_from_spec("synthetic:users=300,items=60,intents=3")
    torch.manual_seed(1)
    model = build_model("sasrec", data.item_size, {"layers": 2})
    res = evaluate(model, data, "test", rule)
    assert np.array_equal(res.ranks, brute_force_ranks(model, data, rule))
    assert res.metrics["HR@20"] == pytest.approx(np.mean(res.ranks <= 20))
    assert res.per_user["NDCG@5"].shape == (300,)
    assert res.protocol.seen_items == rule and res.protocol.dataset_sha256 == data.sha256


def test_protocol_fingerprints_differ_by_rule() -> None:
    data = synthetic_from_spec("synthetic:users=50,items=40,intents=2")
    model = build_model("sasrec", data.item_size, {"layers": 1})
    a, b = evaluate(model, data, "test", "zero"), evaluate(model, data, "test", "exclude")
    assert a.protocol.hash() != b.protocol.hash()


def test_metrics_from_ranks() -> None:
    m = per_user_metrics(np.array([1, 3, 6, 25]))
    assert m["HR@5"].tolist() == [1, 1, 0, 0] and m["HR@20"].tolist() == [1, 1, 1, 0]
    assert m["NDCG@5"][1] == pytest.approx(0.5) and m["MRR"][2] == pytest.approx(1 / 6)


def expected_table() -> dict[str, dict[str, float]]:
    """What the authors' evaluation code prints for each released checkpoint (../shared/checkpoints/EXPECTED.md)."""
    table = json.loads((Path(__file__).parent / "fixtures" / "checkpoint_metrics.json").read_text())
    return {k: v for k, v in table.items() if not k.startswith("_")}


@pytest.mark.parametrize("ck", ["ELCRec Beauty", "ICLRec Beauty", "ELCRec Toys", "ICLRec Toys"])
def test_authors_checkpoints_reproduce_expected_metrics(ck: str) -> None:
    model_name, ds = ck.split()
    files = {"Beauty": ("beauty", "Beauty"), "Toys": ("toys", "Toys_and_Games")}
    dataset, stem = files[ds]
    checkpoint = f"{model_name}-{stem}-1.pt"
    data = load_dataset(dataset, locate("datasets", (f"{stem}.txt",)))
    model = load_checkpoint(model_name.lower(), locate("checkpoints", (checkpoint,)) / checkpoint, data.item_size)
    res = evaluate(model, data, "test", "zero")
    expected = expected_table()[ck]
    assert len(expected) >= 4
    for key, value in expected.items():
        assert f"{res.metrics[key]:.4f}" == f"{value:.4f}", (key, res.metrics[key], value)


def test_representation_stats_measure_how_alike_users_are() -> None:
    rng = np.random.default_rng(0)
    reps = torch.from_numpy(rng.standard_normal((50, 8)))
    unit = reps / reps.norm(dim=1, keepdim=True)
    cos = unit @ unit.T
    brute = float((cos.sum() - cos.diagonal().sum()) / (50 * 49))
    stats = representation_stats(reps)
    assert stats["mean_cosine"] == pytest.approx(brute)
    assert stats["mean_norm"] == pytest.approx(float(reps.norm(dim=1).mean()))
    same = representation_stats(torch.ones(30, 8) * 3.0)  # every user ranked alike: a collapse
    assert same["mean_cosine"] == pytest.approx(1.0)
