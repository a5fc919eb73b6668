"""The perf baseline (`bench.perf.recipe`) must compute ELCRec's objective, or its speed-up means nothing."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.data import SeqData
from bench.evaluate import evaluate
from bench.modelio import build_model
from bench.perf import recipe
from bench.perf.fixture import fixture_errors
from bench.perf.recipe import elcrec_losses
from models.elcrec import ELCRec
from models.protocol import Batch


def _batch(gen: torch.Generator, items: int, b: int = 16, n: int = 12) -> Batch:
    def ids() -> torch.Tensor:
        x = torch.randint(1, items, (b, n), generator=gen)
        pad = torch.randint(0, n, (b, 1), generator=gen)  # left padding of random length
        return torch.where(torch.arange(n)[None] < pad, 0, x)
    return Batch(ids(), ids(), ids(), ids(), ids())


@pytest.mark.parametrize("overrides", [{"fusion": "shift"}, {"fusion": "concat", "layers": 2},
                                       {"intent_infonce": False, "cluster_loss": False}])
def test_the_plain_recipe_computes_the_same_loss_terms_and_gradients(overrides: dict[str, object]) -> None:
    gen = torch.Generator().manual_seed(3)
    model = build_model("elcrec", 40, {"k": 6, "alpha": 2.0, "max_len": 12, **overrides})
    assert isinstance(model, ELCRec)
    model.reset_parameters(gen)
    model.eval()  # no dropout: both paths are then deterministic
    batch = _batch(gen, 40)
    got, want = {}, {}
    for fn, out in ((elcrec_losses, got), (ELCRec.losses, want)):
        model.zero_grad(set_to_none=True)
        terms = fn(model, batch)
        terms["loss"].backward()  # type: ignore[no-untyped-call]
        out.update({k: v.item() for k, v in terms.items()})
        out.update({n: p.grad.norm().item() for n, p in model.named_parameters() if p.grad is not None})
    assert got.keys() == want.keys()
    for k in want:
        assert got[k] == pytest.approx(want[k], rel=1e-4, abs=1e-6), k


def test_the_plain_recipe_matches_the_authors_fixture(fixtures_dir: Path, checkpoints: Path) -> None:
    errors = fixture_errors("elcrec", losses=elcrec_losses, fixtures=fixtures_dir, checkpoints=checkpoints)
    assert max(errors.values()) <= 1e-5, errors


def _distinct_item_users(n_users: int, items: int, seed: int) -> SeqData:
    """Users with 4..30 distinct items each (no repeats, so no target ties with a zeroed seen item)."""
    rng = np.random.default_rng(seed)
    seqs = [rng.permutation(np.arange(1, items + 1))[: rng.integers(4, 31)] for _ in range(n_users)]
    return SeqData.from_sequences("distinct", "-", seqs)


def test_the_authors_validation_gives_our_evaluators_metrics() -> None:
    data = _distinct_item_users(300, 40, seed=5)
    model = build_model("elcrec", data.item_size, {"k": 4, "hidden": 16})
    model.reset_parameters(torch.Generator().manual_seed(2))
    users = recipe.user_lists(data)
    got = recipe.validate(model, users, recipe.seen_matrix(users, data.item_size), random.Random(0), size=64)
    want = evaluate(model, data, "valid").metrics
    assert 0 < got["NDCG@20"] < 1
    for k, v in got.items():
        assert v == pytest.approx(want[k], rel=1e-9), k


def test_the_authors_training_batches_follow_the_protocol() -> None:
    data = _distinct_item_users(300, 40, seed=6)
    users = recipe.user_lists(data)
    batches = recipe.train_batches(users, data.item_size, random.Random(0), size=128)
    assert [len(b.input_ids) for b in batches] == [128, 128, 44]
    for b in batches:
        for row in range(len(b.input_ids)):
            inp, pos, neg = (t[row][t[row] > 0].tolist() for t in (b.input_ids, b.target_pos, b.target_neg))
            # a user's training input, left-padded, the next item at every position, one negative at each,
            # never one of the user's items (short inputs can be shared by several users: any of them)
            assert any(u[:-3] == inp and u[1:-2] == pos and not set(neg) & set(u) for u in users)
            assert len(neg) == len(inp)
            for view in (b.view_1[row], b.view_2[row]):
                kept = Counter(view[view > 0].tolist())
                assert kept and not kept - Counter(inp)  # crop/mask/reorder keep only the input's items
