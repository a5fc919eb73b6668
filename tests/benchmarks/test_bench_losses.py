"""Loss-kernel benchmarks (pytest-benchmark): InfoNCE, next-item BCE, and ELCRec's whole training
step on a Beauty-sized batch. Run with `tox -e bench` (compares with the last saved run)."""

from __future__ import annotations

import pytest
import torch

from bench.modelio import build_model
from models.encoder import info_nce_stacked, rec_loss
from models.protocol import Batch


@pytest.fixture
def batch() -> Batch:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1, 12103, (256, 50), generator=g)
    ids[:, :40] = 0  # Beauty's histories are short: most positions are padding
    return Batch(ids, ids.roll(-1, 1), torch.randint(1, 12103, (256, 50), generator=g), ids.flip(1), ids)


def test_info_nce_forward_backward(benchmark: pytest.FixtureRequest) -> None:
    z = torch.randn(512, 3200, requires_grad=True)

    def step() -> None:
        info_nce_stacked(z).backward()  # (2B, F): the views stacked, as the models pass them

    benchmark(step)


def test_rec_loss_forward_backward(benchmark: pytest.FixtureRequest, batch: Batch) -> None:
    model = build_model("sasrec", 12103, {"layers": 1})
    out = torch.randn(256, 50, 64, requires_grad=True)
    benchmark(lambda: rec_loss(model, out, batch.target_pos, batch.target_neg).backward())


def test_elcrec_training_step(benchmark: pytest.FixtureRequest, batch: Batch) -> None:
    model = build_model("elcrec", 12103, {"layers": 1, "k": 256, "alpha": 10.0})
    model.reset_parameters(torch.Generator().manual_seed(0))
    model.train()
    benchmark.pedantic(lambda: model.losses(batch)["loss"].backward(), rounds=5, warmup_rounds=1)
