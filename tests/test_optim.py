from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.batches import epoch_batches
from bench.data import load_dataset
from bench.modelio import build_model
from bench.optim import Adam
from bench.train import to_batches
from models.protocol import Batch, RecModel


def _setup() -> tuple[RecModel, list[Batch]]:
    data = load_dataset("synthetic:users=300,items=50,intents=3,seed=4")
    model = build_model("elcrec", data.item_size, {"k": 4, "layers": 1})
    model.reset_parameters(torch.Generator().manual_seed(0))
    batches = to_batches(epoch_batches(data, np.random.default_rng(0)), 64, torch.device("cpu"))
    return model, batches


def _train(model: RecModel, opt: Adam | torch.optim.Optimizer, batches: list[Batch], first: int = 0) -> None:
    model.train()
    for i, batch in enumerate(batches, start=first):
        model.generator = torch.Generator().manual_seed(i)  # the same dropout for both optimisers
        opt.zero_grad(set_to_none=True)
        model.losses(batch)["loss"].backward()  # type: ignore[no-untyped-call]
        opt.step()
        model.after_step()


@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
def test_adam_steps_are_bit_identical_to_torch_fused_adam(weight_decay: float) -> None:
    ours, batches = _setup()
    ref, _ = _setup()
    _train(ours, Adam(ours.parameters(), lr=1e-2, weight_decay=weight_decay), batches)
    _train(ref, torch.optim.Adam(ref.parameters(), lr=1e-2, weight_decay=weight_decay, fused=True), batches)
    for (name, a), b in zip(ours.state_dict().items(), ref.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    untrained = _setup()[0].state_dict()["item_embeddings.weight"]
    assert not torch.equal(ours.state_dict()["item_embeddings.weight"], untrained)  # it did train


def test_adam_state_round_trip_continues_exactly() -> None:
    straight, batches = _setup()
    _train(straight, Adam(straight.parameters(), lr=1e-2), batches)
    resumed, _ = _setup()
    first = Adam(resumed.parameters(), lr=1e-2)
    _train(resumed, first, batches[:2])
    second = Adam(resumed.parameters(), lr=1e-2)
    second.load_state_dict(first.state_dict())
    _train(resumed, second, batches[2:], first=2)  # the same per-batch dropout seeds as the straight run
    for a, b in zip(straight.state_dict().values(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match="Invalid learning rate"):
        Adam(straight.parameters(), lr=-1.0)
    with pytest.raises(ValueError, match="parameters"):
        Adam([torch.zeros(2, requires_grad=True)], lr=1.0).load_state_dict(first.state_dict())
