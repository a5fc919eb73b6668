"""The perf baseline (`bench.recipe`) must compute ELCRec's objective, or its speed-up means nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from bench.fixture import fixture_errors
from bench.modelio import build_model
from bench.recipe import elcrec_losses
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
    errors = fixture_errors("elcrec", fixtures_dir.parent.parent, losses=elcrec_losses)
    assert max(errors.values()) <= 1e-5, errors
