"""The native CPU kernels (models/fast/native.c) against the torch path they replace."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from bench.modelio import build_model
from bench.perf.fixture import fixture_errors
from models.encoder import SeqEncoder
from models.fast import kernels, native, select
from models.fast.encoder import explicit_attention, native_attention

needs_native = pytest.mark.skipif(native.library() is None, reason="no C compiler: the native kernels are not built")


@pytest.fixture
def one_thread() -> Iterator[None]:
    """The native kernels run where torch runs one thread (each block of rows of a large pass)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _ids(rows: int, length: int, seed: int) -> torch.Tensor:
    """Left-padded item ids with lengths 1..length, some rows full."""
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, 100, (rows, length), generator=gen)
    lengths = torch.randint(1, length + 1, (rows,), generator=gen)
    lengths[:2] = length
    ids[torch.arange(length)[None, :] < (length - lengths)[:, None]] = 0
    return ids


def _attention(qkv: torch.Tensor, ids: torch.Tensor, heads: int, p: float, use_native: bool) -> torch.Tensor:
    """The C kernel or the explicit per-head torch ops, dropout p drawn from the same seed."""
    gen = torch.Generator().manual_seed(11)
    if use_native:
        return native_attention(qkv, ids > 0, heads, p, gen)
    return explicit_attention(qkv, SeqEncoder.attention_mask(ids)[:, 0], heads, False, p, gen, native=False)


@needs_native
@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize(("heads", "length", "training"),
                         [(2, 50, True), (2, 50, False), (4, 7, True), (4, 40, True), (1, 23, True), (2, 1, True)])
def test_the_native_attention_has_the_values_and_gradients_of_the_torch_path(heads: int, length: int,
                                                                             training: bool) -> None:
    p = 0.5 if training else 0.0
    gen = torch.Generator().manual_seed(0)
    ids = _ids(37, length, 1)
    qkv = torch.randn(37, length, 192, generator=gen, requires_grad=True)
    g = torch.randn(37, length, 64, generator=gen)
    ours, ref = _attention(qkv, ids, heads, p, True), _attention(qkv, ids, heads, p, False)  # the same draws
    assert ours.shape == ref.shape
    # A padding query has every key masked: its scores are s - 10000, on float32's grid of 2^-10 there,
    # so two summation orders of s may land on neighbouring grid points (~1e-3 relative, seen on AMD
    # CPUs). Real queries never add the mask to a key they keep: those rows must agree to float32 rounding.
    real = (ids > 0)[..., None]
    assert torch.allclose(ours * real, ref * real, rtol=0, atol=2e-6 * ref.abs().max().item())
    assert torch.allclose(ours, ref, rtol=0, atol=2e-3 * ref.abs().max().item())
    for g_out, tol in ((g * real, 2e-6), (g, 2e-3)):  # the gradient from real queries only, then all
        (g_ours,), (g_ref,) = torch.autograd.grad(ours, qkv, g_out, retain_graph=True), torch.autograd.grad(
            ref, qkv, g_out, retain_graph=True)
        assert torch.allclose(g_ours, g_ref, rtol=0, atol=tol * g_ref.abs().max().item())
    if training:  # dropout was on: the outputs differ from the evaluation-mode ones
        assert not torch.allclose(ours, _attention(qkv, ids, heads, 0.0, True))


@needs_native
@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("shape", [(1000, 64), (3, 7, 5), (1,)])  # n a multiple of 64 words, and not
def test_the_native_dropout_is_the_torch_expression_bit_for_bit(shape: tuple[int, ...]) -> None:
    gen = torch.Generator().manual_seed(0)
    x, y = (torch.randn(shape, generator=gen) for _ in range(2))
    x.view(-1)[0] = -0.0  # signed zeros and NaN go through x * 0 as in torch
    y.view(-1)[-1] = float("nan")
    scale = kernels.dropout_scale(x, 0.5, torch.Generator().manual_seed(3))
    dropped = kernels.dropout(x, 0.5, torch.Generator().manual_seed(3), native=True)
    assert torch.equal((x * scale).view(torch.int32), dropped.view(torch.int32))
    added = kernels.dropout_add(y, x, 0.5, torch.Generator().manual_seed(3), native=True)
    assert torch.equal((x + y * scale).view(torch.int32), added.view(torch.int32))


@needs_native
@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize(("tokens", "n_out", "n_in"), [(1000, 192, 64), (300, 64, 256), (129, 16, 64), (1, 256, 128)])
def test_the_native_weight_gradient_is_the_linear_layers_gradient(tokens: int, n_out: int, n_in: int) -> None:
    """A linear layer's weight and bias gradients (the tiles of 6 rows, the 1-5 rows left, a block of
    tokens cut short) against float64, as tightly as torch's own float32 product."""
    gen = torch.Generator().manual_seed(tokens)
    x = torch.randn(tokens, n_in, generator=gen, requires_grad=True)
    w = torch.randn(n_out, n_in, generator=gen, requires_grad=True)
    b = torch.randn(n_out, generator=gen, requires_grad=True)
    g = torch.randn(tokens, n_out, generator=gen)
    assert native.wgrad_fits(n_out, n_in)
    gx, gw, gb = torch.autograd.grad(kernels.linear(x, w, b, onednn=True, native=True), (x, w, b), g)
    ref = g.double().T @ x.double()
    torch_err = (g.T @ x.detach() - ref).abs().max()
    assert (gw.double() - ref).abs().max() <= 4 * torch_err + 1e-12
    assert torch.allclose(gb.double(), g.double().sum(0), rtol=0, atol=1e-6 * tokens ** 0.5)
    assert torch.allclose(gx, g @ w.detach(), rtol=1e-5, atol=1e-5)
    gw_only, no_bias = native.linear_wgrad(g, x.detach(), bias=False)
    assert no_bias is None and torch.equal(gw_only, gw)


@needs_native
@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("model", ["elcrec", "iclrec"])
def test_at_one_thread_the_native_kernels_pass_the_authors_fixture(model: str, fixtures_dir: Path,
                                                                   checkpoints: Path) -> None:
    """Every loss term and gradient within 1e-5 of the authors'. The torch path at one thread does not:
    its LayerNorm backward sums ELCRec's embedding LayerNorm weight gradient over 64,000 largely
    cancelling rows in one pass (1.3e-4 off); `ln_bwd` sums blocks of rows (1.0e-6)."""
    cfg = build_model(model, 100, {"layers": 1}).cfg  # type: ignore[attr-defined]
    plan = select(torch.device("cpu"), torch.float32, cfg, grad=True, tokens=256 * 50)  # an eval-mode pass
    assert plan.native and plan.native_layer_norm and plan.attention == "native"  # the fixture's passes here
    errors = fixture_errors(model, fixtures=fixtures_dir, checkpoints=checkpoints)
    assert max(errors.values()) <= 1e-5, {k: f"{v:.2e}" for k, v in errors.items() if v > 1e-5}


@needs_native
@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize(("rows", "width"), [(1000, 64), (129, 16), (3, 256)])
def test_the_native_layer_norm_backward_is_the_layer_norms_gradient(rows: int, width: int) -> None:
    gen = torch.Generator().manual_seed(rows)
    ln = torch.nn.LayerNorm(width, eps=1e-12)
    with torch.no_grad():
        ln.weight.normal_(generator=gen), ln.bias.normal_(generator=gen)
    x = (torch.randn(rows, width, generator=gen) * 3 + 1).requires_grad_()
    g = torch.randn(rows, width, generator=gen)
    out = native.layer_norm(x, ln)
    assert type(out.grad_fn).__name__ == "_LayerNormBackward"  # the native backward runs
    assert torch.equal(out, ln(x))  # ATen's forward
    ours = torch.autograd.grad(out, (x, ln.weight, ln.bias), g)
    ln64 = torch.nn.LayerNorm(width, eps=1e-12).double()
    ln64.load_state_dict(ln.state_dict())
    x64 = x.detach().double().requires_grad_()
    ref = torch.autograd.grad(ln64(x64), (x64, ln64.weight, ln64.bias), g.double())
    for a, b in zip(ours, ref, strict=True):
        assert torch.allclose(a.double(), b, rtol=0, atol=2e-6 * b.abs().max().item())


@needs_native
def test_with_several_torch_threads_a_pass_takes_the_torch_path() -> None:
    cfg = build_model("sasrec", 100, {"layers": 1}).cfg  # type: ignore[attr-defined]
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        small = select(torch.device("cpu"), torch.float32, cfg, training=True, grad=True, tokens=256 * 50)
        large = select(torch.device("cpu"), torch.float32, cfg, training=True, grad=True, tokens=1280 * 50)
    finally:
        torch.set_num_threads(before)
    assert not small.native and small.attention == "explicit" and not small.row_blocks
    assert large.row_blocks and large.native and large.attention == "native"  # one thread in each block


@needs_native
def test_the_kernels_build_from_an_empty_cache_and_are_reused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(native, "_STATE", {})
    monkeypatch.setenv("INTENTBENCH_CACHE", str(tmp_path))
    assert native.library() is not None
    built = list(tmp_path.glob("native-*.so"))
    assert len(built) == 1 and not list(tmp_path.glob("tmp*"))  # renamed into place, no leftovers
    stamp = built[0].stat().st_mtime_ns
    monkeypatch.setattr(native, "_STATE", {})  # a new process: found in the cache, not rebuilt
    assert native.library() is not None and built[0].stat().st_mtime_ns == stamp


def test_without_a_compiler_the_torch_path_runs_and_says_so(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(native, "_STATE", {})
    monkeypatch.setenv("INTENTBENCH_CACHE", str(tmp_path))
    monkeypatch.setenv("CC", "false")  # a "compiler" that fails
    assert native.library() is None
    assert native.library() is None  # said once, not per call
    err = capsys.readouterr().err
    assert err.count("native kernels unavailable") == 1 and "torch path" in err
    model = build_model("sasrec", 100, {"layers": 1})
    model.train()
    out = model(_ids(8, 50, 3))
    out.sum().backward()
    assert torch.isfinite(out).all() and model.item_embeddings.weight.grad is not None


@pytest.mark.usefixtures("one_thread")
def test_native_kernels_can_be_switched_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INTENTBENCH_NATIVE", "0")
    assert native.library() is None and not select(torch.device("cpu"), torch.float32).native
