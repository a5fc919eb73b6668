from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from bench.modelio import build_model, load_checkpoint
from bench.perf.fixture import fixture_errors, load_batch
from models.dropout import dropout_factors
from models.fast import backend, kernels
from models.protocol import Batch

REL = 1e-5


@pytest.mark.parametrize("model", ["elcrec", "iclrec"])
def test_losses_and_gradients_match_the_authors_fixture(model: str, fixtures_dir: Path, checkpoints: Path) -> None:
    errors = fixture_errors(model, fixtures=fixtures_dir, checkpoints=checkpoints)
    assert len(errors) >= 8
    bad = {k: v for k, v in errors.items() if v > REL}
    assert not bad, f"relative errors above {REL}: {bad}"


def test_elcrec_concat_fusion_matches(fixtures_dir: Path, checkpoints: Path) -> None:
    exp = json.loads((fixtures_dir / "loss_expected.json").read_text())["elcrec"]
    state = load_checkpoint("elcrec", checkpoints / "ELCRec-Beauty-1.pt", 12103).state_dict()
    model = build_model("elcrec", 12103, {"layers": 1, "k": 256, "alpha": 10.0, "fusion": "concat"})
    model.load_state_dict(state)
    model.eval()
    got = model.losses(load_batch(fixtures_dir))["instance_cl"].item()
    assert abs(got - exp["instance_cl_loss_concat"]) <= REL * exp["instance_cl_loss_concat"]


def test_last_only_and_truncated_windows_change_nothing() -> None:
    torch.manual_seed(0)
    model = build_model("sasrec", 40, {"layers": 2})
    model.eval()
    ids = torch.randint(1, 40, (6, 50))
    ids[:, :44] = 0  # short histories, left-padded
    full = model(ids)[:, -1]
    assert torch.allclose(model.user_repr(ids), full, atol=1e-6)
    assert torch.allclose(model.user_repr(ids[:, -6:]), full, atol=1e-6)


def test_fused_kernels_without_autograd_equal_the_explicit_path() -> None:
    torch.manual_seed(1)
    model = build_model("sasrec", 40, {"layers": 2})
    model.eval()
    ids = torch.randint(1, 40, (8, 50))
    ids[:4, :45] = 0  # fully masked padding queries in half of the rows
    explicit = model(ids)  # grad enabled: the explicit baddbmm/softmax/bmm path
    with torch.no_grad():
        fused = model(ids)  # no autograd: scaled_dot_product_attention, GELU and residuals inside the GEMMs
        last = model.user_repr(ids)
    assert explicit.requires_grad and not fused.requires_grad
    assert torch.allclose(fused, explicit, atol=1e-5)
    assert torch.allclose(last, explicit[:, -1], atol=1e-5)


@pytest.mark.parametrize("rows", [12800, 12801])  # blocked per thread; an odd count takes one product
@pytest.mark.parametrize(("n_in", "n_out"), [(64, 192), (256, 64)])  # both orientations of the weight gradient
def test_the_fast_linear_has_the_gradients_of_f_linear(n_in: int, n_out: int, rows: int) -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(rows, n_in, generator=gen, requires_grad=True)
    w = torch.randn(n_out, n_in, generator=gen, requires_grad=True)
    b = torch.randn(n_out, generator=gen, requires_grad=True)
    g = torch.randn(rows, n_out, generator=gen)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        fast = torch.autograd.grad(kernels.linear(x, w, b, onednn=kernels.ONEDNN, native=False), (x, w, b), g)
    finally:
        torch.set_num_threads(threads)
    plain = torch.autograd.grad(F.linear(x.double(), w.double(), b.double()), (x, w, b), g.double())
    for ours, ref in zip(fast, plain, strict=True):
        assert float((ours.double() - ref).norm() / ref.norm()) < REL  # float32 sums of 12,800 terms


@pytest.mark.parametrize("p", [0.5, 0.3])  # the one-bit masks and the general ones
def test_the_residual_dropout_has_the_value_and_gradients_of_its_plain_expression(p: float) -> None:
    gen = torch.Generator().manual_seed(0)
    x, y = (torch.randn(40, 7, 64, generator=gen, requires_grad=True) for _ in range(2))
    g = torch.randn(40, 7, 64, generator=gen)
    out = kernels.dropout_add(y, x, p, torch.Generator().manual_seed(5), native=False)
    scale = kernels.dropout_scale(y, p, torch.Generator().manual_seed(5))  # the same draw
    reference = dropout_factors((40, 7, 64), p, torch.Generator().manual_seed(5), y.device)
    assert torch.equal(scale.view(torch.int32), reference.view(torch.int32))  # the reference's factors, bit for bit
    plain = x + y * scale
    assert torch.allclose(out, plain, rtol=1e-6, atol=1e-6)  # addcmul may round once (fused multiply-add)
    assert scale.unique().tolist() == pytest.approx([0.0, 1 / (1 - p)])
    for ours, ref in zip(torch.autograd.grad(out, (x, y), g), torch.autograd.grad(plain, (x, y), g), strict=True):
        assert torch.equal(ours, ref)


def _train_pass(model: torch.nn.Module, ids: torch.Tensor, threads: int) -> list[torch.Tensor]:
    """Output and parameter gradients of one training-mode pass, with `threads` torch threads."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        model.reset_parameters(torch.Generator().manual_seed(3))  # type: ignore[operator]
        out = model(ids)
        params = [p for p in model.parameters() if p.requires_grad]
        return [out, *torch.autograd.grad(out, params, torch.ones_like(out))]
    finally:
        torch.set_num_threads(before)


def test_a_seed_fixes_the_dropout_masks_whatever_the_number_of_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backend, "ROW_BLOCK_MIN_TOKENS", 0)  # small inputs take the row blocks too
    ids = torch.randint(1, 40, (64, 50))
    model = build_model("sasrec", 40, {"layers": 1})
    model.train()
    one, two = _train_pass(model, ids, 1), _train_pass(model, ids, 2)
    assert all(torch.allclose(a, b, rtol=1e-5, atol=1e-7) for a, b in zip(one, two, strict=True))
    assert not torch.allclose(one[0], model.eval()(ids))  # dropout was on


def test_padding_queries_see_future_items_as_the_authors_mask_does() -> None:
    model = build_model("sasrec", 40, {"layers": 1})
    model.eval()
    a = torch.zeros(1, 50, dtype=torch.long)
    a[0, -2:] = torch.tensor([3, 4])
    b = a.clone()
    b[0, -1] = 5
    # a padding position (every key masked by -10000) attends over all raw scores, the future included
    assert not torch.allclose(model(a)[0, 0], model(b)[0, 0])


def test_dropout_is_seeded_by_the_model_generator() -> None:
    model = build_model("sasrec", 40, {"layers": 1})
    ids = torch.randint(1, 40, (4, 50))
    outs = []
    for _ in range(2):
        model.reset_parameters(torch.Generator().manual_seed(7))
        outs.append(model(ids))
    assert torch.equal(outs[0], outs[1])
    assert not torch.equal(model(ids), outs[1])  # the generator moved on: a new dropout draw


@pytest.mark.parametrize("name", ["sasrec", "cl4srec", "iclrec", "elcrec"])
def test_every_model_trains_a_step_to_finite_losses(name: str) -> None:
    model = build_model(name, 30, {"layers": 1, **({"k": 4} if name in ("iclrec", "elcrec") else {})})
    model.reset_parameters(torch.Generator().manual_seed(0))
    ids = torch.randint(1, 30, (8, 50))
    model.epoch_start(0, lambda: model(ids).mean(1).detach().numpy().repeat(2, 0), seed=1)
    batch = Batch(ids, ids.roll(-1, 1), torch.randint(1, 30, (8, 50)), ids.flip(1), ids)
    out = model.losses(batch)
    out["loss"].backward()
    assert all(torch.isfinite(v) for v in out.values())
