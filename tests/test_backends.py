"""The fast path (`models/fast`) against the plain reference encoder (`models/encoder.py`).

Every registry entry whose model holds a `SeqEncoder` (found by looking at the built model, not by
name) is run on both backends from the same weights, centroids and dropout generator: its loss terms
(and its pre-training stage's, where it has one) and their gradients with respect to every parameter
must agree, and so must the encoder's outputs.

Train mode, with dropout on: below `ROW_BLOCK_MIN_TOKENS` tokens per pass (all passes here) the fast
path draws every mask from the model's generator in the reference's order (`models/dropout.py`), so
both backends drop the same elements. The row-block pass (larger passes) draws from generators of its
own by design, so it is compared with dropout off. Evaluation passes without autograd (scoring,
k-means input), which run the fast path's fused kernels, are compared too. The encoder's weight
matrices are drawn at std 0.2 (`fresh`): at the initial 0.02 the attention is nearly uniform and
hides most of what could differ.

Tolerances (float32, eps 6e-8). The backends compute the same expressions in other orders: oneDNN,
MKL or the C kernels block the GEMMs' sums differently, the attention scale is folded into the query
weights, the C attention's exp is a polynomial (~1 ulp), the C LayerNorm backward sums in blocks, the
InfoNCE Gram's backward is one GEMM with subnormals flushed. At real positions (measured on Zen 3,
both thread counts: outputs within 1.4e-6 of the largest, gradients of a loss on them within 1.6e-6
relative) the limits are 1e-5: ~7x the measured, and far below what a real difference makes (a
wrong mask, scale, head split or dropout draw moves them by 1e-3 or more). A padding position's query
has every key masked: its scores s - 10000 lie on float32's grid of 2^-10 there, two summation orders
of s may land on neighbouring points (~1e-3 relative per score, tests/test_native.py), and its output
moves by up to ~1e-4 of the largest (measured): outputs at all positions get 2e-3. The models' losses
use those positions too (mean pooling, InfoNCE over flattened views): loss terms agree within 1.6e-6
relative (limit 2e-5), their per-parameter gradient norms within 8e-5 for the models with InfoNCE
(limit 5e-4) and 5e-6 for the others. Gradients that are exactly zero in exact arithmetic (the key
biases: softmax ignores a per-query constant) are rounding noise on both sides (measured: below 1e-7
of the key weight's gradient), so every parameter also gets an absolute allowance of 1e-6 of the
largest gradient norm in its module.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor

from bench.batches import training_samples
from bench.data import item_attributes, load_dataset
from bench.evaluate import mean_pooled_train_outputs
from bench.modelio import build_model
from bench.perf.fixture import fixture_errors
from bench.presets import preset
from bench.train import epoch_generators, to_batches
from models import REGISTRY
from models.encoder import EncoderConfig, SeqEncoder
from models.fast import ENV, REFERENCE, backend, describe, select
from models.protocol import Batch, RecModel

DATA = "synthetic:users=200,items=60,intents=3,seed=2"
REAL_TOL, PADDING_TOL = 1e-5, 2e-3  # outputs, of the largest one
REAL_GRAD_REL, LOSS_REL, LOSS_GRAD_REL, ZERO_GRAD = 1e-5, 2e-5, 5e-4, 1e-6
BACKENDS = ("reference", "fast")


@pytest.fixture(scope="module")
def data() -> Any:
    return load_dataset(DATA)


@pytest.fixture(params=[1, 2], ids=["1-thread", "2-threads"])
def threads(request: pytest.FixtureRequest) -> Iterator[int]:
    """One torch thread: the C kernels run (where built); two: oneDNN and torch's ops."""
    before = torch.get_num_threads()
    torch.set_num_threads(request.param)
    yield request.param
    torch.set_num_threads(before)


def encoder_of(model: Any) -> SeqEncoder | None:
    """The SeqEncoder a model holds (itself, or a submodule), or None."""
    return next((m for m in model.modules() if isinstance(m, SeqEncoder)), None)


def fresh(name: str, data: Any) -> RecModel:
    """The model of `name` with seed-0 weights and its epoch-0 hook run (k-means, centre init). The
    encoder's weight matrices are scaled up to std 0.2: at the initial 0.02 every attention score is
    ~1e-3, the attention nearly uniform, and blind to most of what could differ (scale, mask, heads)."""
    model = build_model(name, data.item_size, preset(DATA, name), data.n_users, lambda: item_attributes(DATA, data))
    model.reset_parameters(torch.Generator().manual_seed(0))
    enc = encoder_of(model)
    if enc is not None:
        with torch.no_grad():
            for w in (p for p in enc.parameters() if p.dim() == 2):
                w.mul_(0.2 / enc.cfg.init_std)
    model.epoch_start(0, lambda: mean_pooled_train_outputs(model, data, torch.device("cpu")), 1)
    model.train()
    return model


def batch_of(regime: str, options: dict[str, Any], data: Any, rows: int = 32) -> Batch:
    rng, _ = epoch_generators(5, 0, torch.device("cpu"))
    return to_batches(training_samples(regime, data, rng, options), rows, torch.device("cpu"))[0]


def stages(model: RecModel) -> list[tuple[str, str, dict[str, Any]]]:
    """(stage, regime, options): the training losses, and the pre-training stage's where there is one."""
    pre = model.pretraining()
    return [("losses", model.samples, model.sample_options()), *([] if pre is None else [
        ("pretraining", pre.samples, pre.options)])]


def losses_of(model: RecModel, stage: str) -> Callable[[Batch], dict[str, Tensor]]:
    pre = model.pretraining()
    return pre.losses if stage == "pretraining" and pre is not None else model.losses


def run_on(name: str, model: RecModel, stage: str, batch: Batch,
           monkeypatch: pytest.MonkeyPatch) -> tuple[dict[str, float], dict[str, Tensor]]:
    """Loss terms and parameter gradients of one training step on backend `name`; the dropout
    generator restarts from the same seed."""
    monkeypatch.setenv(ENV, name)
    model.generator = torch.Generator().manual_seed(7)
    out = losses_of(model, stage)(batch)
    out["loss"].backward()  # type: ignore[no-untyped-call]
    grads = {k: p.grad for k, p in model.named_parameters() if p.grad is not None}  # type: ignore[attr-defined]
    return {k: float(v.detach()) for k, v in out.items()}, grads


def twins(model: RecModel) -> dict[str, Any]:
    """Two copies of the model, one per backend: the same weights, centroids and centres."""
    model.generator = None  # the copies get their own generators
    return {b: copy.deepcopy(model) for b in BACKENDS}


def assert_close_grads(fast: dict[str, Tensor], ref: dict[str, Tensor], rel: float) -> None:
    """Per parameter: |fast - ref| <= rel |ref| + ZERO_GRAD x the largest gradient of its module (the
    allowance for gradients that are zero in exact arithmetic, such as a key bias's)."""
    assert fast.keys() == ref.keys() and ref
    module_top: dict[str, float] = {}
    for k, g in ref.items():
        owner = k.rpartition(".")[0]
        module_top[owner] = max(module_top.get(owner, 0.0), float(g.norm()))
    errors = {k: float((fast[k] - g).norm()) for k, g in ref.items()}
    bad = {k: f"{e:.2e} of {float(ref[k].norm()):.2e}" for k, e in errors.items()
           if e > rel * float(ref[k].norm()) + ZERO_GRAD * module_top[k.rpartition(".")[0]]}
    assert not bad, bad


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_both_backends_give_the_same_losses_and_gradients(name: str, data: Any, threads: int,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    model = fresh(name, data)
    if encoder_of(model) is None:
        pytest.skip(f"{name} holds no SeqEncoder")
    for stage, regime, options in stages(model):
        batch = batch_of(regime, options, data)
        runs = {b: run_on(b, m, stage, batch, monkeypatch) for b, m in twins(model).items()}
        (loss_r, grads_r), (loss_f, grads_f) = runs["reference"], runs["fast"]
        assert loss_f.keys() == loss_r.keys()
        assert all(loss_f[k] == pytest.approx(v, rel=LOSS_REL, abs=1e-9) for k, v in loss_r.items()), (loss_f, loss_r)
        assert_close_grads(grads_f, grads_r, LOSS_GRAD_REL)


def encoder_pass(model: Any, ids: Tensor, name: str,
                 monkeypatch: pytest.MonkeyPatch) -> tuple[list[Tensor], dict[str, Tensor]]:
    """A training pass (dropout on, the same generator seed) and the parameter gradients of a random
    projection of its outputs at real positions; then evaluation passes without autograd: all positions
    (k-means input) and the last one (scoring)."""
    monkeypatch.setenv(ENV, name)
    model.train()
    model.zero_grad()
    model.generator = torch.Generator().manual_seed(9)
    train = model(ids)  # (B, L, D)
    weights = torch.randn(train.shape, generator=torch.Generator().manual_seed(10)) * (ids > 0)[..., None]
    (train * weights).sum().backward()
    grads = {k: p.grad for k, p in model.named_parameters() if p.grad is not None}
    model.eval()
    with torch.inference_mode():
        return [train.detach(), model(ids), model.user_repr(ids)], grads


def assert_close_outputs(fast: Tensor, ref: Tensor, ids: Tensor) -> None:
    """(B, L, D) or (B, D) outputs of the (B, L) ids: tight at real positions, looser at padding."""
    real = (ids > 0)[..., None] if ref.dim() == 3 else (ids[:, -1] > 0)[:, None]
    top = float(ref.abs().max())
    assert torch.allclose(fast * real, ref * real, rtol=0, atol=REAL_TOL * top)
    assert torch.allclose(fast, ref, rtol=0, atol=PADDING_TOL * top)


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_both_backends_give_the_same_outputs(name: str, data: Any, threads: int,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    model = fresh(name, data)
    enc = encoder_of(model)
    if enc is None:
        pytest.skip(f"{name} holds no SeqEncoder")
    ids = batch_of(model.samples, model.sample_options(), data).input_ids
    (ref, grads_r), (fast, grads_f) = (encoder_pass(model, ids, b, monkeypatch) for b in BACKENDS)
    for r, f in zip(ref, fast, strict=True):
        assert_close_outputs(f, r, ids)
    assert not torch.allclose(ref[0], ref[1])  # dropout was on in the training pass
    assert_close_grads(grads_f, grads_r, REAL_GRAD_REL)
    plan = select(torch.device("cpu"), torch.float32, enc.cfg, training=True, grad=True, tokens=ids.numel())
    assert plan.name == "fast" and plan.onednn == backend.ONEDNN  # what ran was the fast path
    assert plan.native == (threads == 1 and backend.library() is not None)


def test_a_pass_on_blocks_of_rows_computes_the_reference_function(threads: int,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Row blocks draw their masks from their own generators, so dropout is off here."""
    monkeypatch.setattr(backend, "ROW_BLOCK_MIN_TOKENS", 0)  # small inputs take the blocks too
    model = build_model("sasrec", 40, {"layers": 2, "dropout": 0.0, "attn_dropout": 0.0})
    model.reset_parameters(torch.Generator().manual_seed(3))
    model.train()
    ids = torch.randint(1, 40, (64, 50), generator=torch.Generator().manual_seed(4))
    ids[:20, :40] = 0
    assert select(torch.device("cpu"), torch.float32, model.cfg, training=True, grad=True,  # type: ignore[attr-defined]
                  tokens=ids.numel()).row_blocks
    g = torch.randn(64, 50, 64, generator=torch.Generator().manual_seed(5))
    res = {}
    for name in BACKENDS:
        monkeypatch.setenv(ENV, name)
        model.zero_grad()  # type: ignore[attr-defined]
        out = model(ids)
        (out * g).sum().backward()
        res[name] = (out.detach(), {k: p.grad for k, p in model.named_parameters()})  # type: ignore[attr-defined]
    assert_close_outputs(res["fast"][0], res["reference"][0], ids)
    assert_close_grads(res["fast"][1], res["reference"][1], REAL_GRAD_REL)


def test_some_registry_models_hold_the_encoder(data: Any) -> None:
    """The parametrised tests above skip models without one: they must not all skip."""
    held = [n for n in sorted(REGISTRY) if encoder_of(build_model(n, data.item_size, preset(DATA, n), data.n_users,
                                                                  lambda: item_attributes(DATA, data)))]
    assert len(held) >= 4, held


@pytest.mark.usefixtures("one_torch_thread")
def test_select_decides_from_its_explicit_inputs(monkeypatch: pytest.MonkeyPatch) -> None:
    cpu, f32 = torch.device("cpu"), torch.float32
    cfg = EncoderConfig()  # hidden 64, 2 heads of 32, dropout 0.5
    built = backend.library() is not None
    train = select(cpu, f32, cfg, training=True, grad=True, tokens=800)
    assert (train.attention == "native") == built and train.native == built and not train.row_blocks
    assert not train.fused_epilogues and train.onednn == backend.ONEDNN
    scoring = select(cpu, f32, cfg, tokens=800)  # evaluation without autograd
    assert scoring.attention == "sdpa" and scoring.fused_epilogues == backend.ONEDNN
    assert select(cpu, f32, cfg, training=True, grad=True, tokens=800, last_only=True).attention == "explicit"
    other_p = EncoderConfig(attn_dropout=0.3)  # the C attention has p = 0.5 dropout only
    assert select(cpu, f32, other_p, training=True, grad=True, tokens=800).attention == "explicit"
    assert select(cpu, f32, other_p, grad=True, tokens=800).attention == train.attention  # eval: no dropout
    narrow = EncoderConfig(heads=8)  # heads of 8 floats: not the kernel's multiple of 16
    assert select(cpu, f32, narrow, training=True, grad=True, tokens=800).attention == "explicit"
    assert select(cpu, f32, cfg, training=True, grad=True, tokens=backend.ROW_BLOCK_MIN_TOKENS).row_blocks
    for device, dtype in ((torch.device("cuda"), f32), (cpu, torch.float64)):  # no oneDNN, no C kernels
        plan = select(device, dtype, cfg, training=True, grad=True, tokens=800)
        assert plan.name == "fast" and not (plan.onednn or plan.native or plan.native_layer_norm)
        assert plan.attention == "explicit"
    assert select(torch.device("cuda"), f32, cfg, training=True, grad=True, tokens=10**6).row_blocks is False


def test_the_environment_forces_the_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV, "reference")
    cpu = torch.device("cpu")
    assert select(cpu, torch.float32, EncoderConfig(), training=True, grad=True, tokens=10**6) == REFERENCE
    assert select(cpu, torch.float32) == REFERENCE and describe() == "reference"
    monkeypatch.setenv(ENV, "turbo")
    with pytest.raises(ValueError, match="INTENTBENCH_BACKEND must be one of fast, reference, got 'turbo'"):
        select(cpu, torch.float32)


@pytest.mark.parametrize("model", ["elcrec", "iclrec"])
def test_the_reference_encoder_passes_the_authors_fixture(model: str, fixtures_dir: Path, checkpoints: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The plain code, run with two torch threads: at one, ATen's LayerNorm backward sums ELCRec's
    embedding LayerNorm weight gradient in one pass, 1.3e-4 off (README, Models)."""
    monkeypatch.setenv(ENV, "reference")
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        errors = fixture_errors(model, fixtures=fixtures_dir, checkpoints=checkpoints)
    finally:
        torch.set_num_threads(before)
    assert max(errors.values()) <= 1e-5, {k: f"{v:.2e}" for k, v in errors.items() if v > 1e-5}
