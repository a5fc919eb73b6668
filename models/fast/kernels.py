"""Fast implementations of the encoder's building blocks: seeded dropout masks applied from their
random bits, oneDNN linear layers (CPU), the Gram matrix of InfoNCE, a training pass on blocks of rows
side by side (CPU). Each has the value of the plain torch expression its docstring names, up to
float32 summation order.

Which of them runs is decided once per pass by `models.fast.select`; the choices arrive here as
explicit arguments (`onednn`, `native`), never read off the data (a mask's dtype, a missing mask).
What remains here are the kernels' own limits: the C dropout takes p = 0.5 only (one bit per
element), the C weight gradient whole tiles only (`native.wgrad_fits`).
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from models.dropout import dropout_factors, random_bits
from models.fast.native import drop_add, drop_mul, linear_wgrad, wgrad_fits

_BIT_TABLES: dict[tuple[torch.device, torch.dtype], Tensor] = {}


def _bit_table(device: torch.device, dtype: torch.dtype) -> Tensor:
    """(256, 8): row b holds 2.0 where bit i of byte b is set, else 0 (the p=0.5 keep-scale)."""
    key = (device, dtype)
    if key not in _BIT_TABLES:
        bits = (torch.arange(256).unsqueeze(-1) >> torch.arange(8)) & 1
        _BIT_TABLES[key] = (bits * 2).to(device=device, dtype=dtype)
    return _BIT_TABLES[key]


def dropout_scale(x: Tensor, p: float, gen: torch.Generator | None) -> Tensor:
    """`models.dropout.dropout_factors` for x's shape: the same draw, the same values. For p = 0.5 the
    random words are expanded through a byte -> 8 factors table (one lookup per byte instead of a shift
    and a mask per element)."""
    if p == 0.5:
        words = random_bits(x.numel(), gen, x.device)
        scale = F.embedding(words.view(torch.uint8).int(), _bit_table(x.device, x.dtype))  # (n/8, 8)
        return scale.view(-1)[: x.numel()].view(x.shape)
    return dropout_factors(tuple(x.shape), p, gen, x.device, x.dtype)


class _Dropout(torch.autograd.Function):
    """x * factors; its backward is the same product with the incoming gradient."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, factors: Tensor) -> Tensor:
        ctx.save_for_backward(factors)
        return x * factors

    @staticmethod
    def backward(ctx: Any, g: Tensor) -> tuple[Tensor | None, ...]:
        (factors,) = ctx.saved_tensors
        return g * factors, None


class _BitDropout(torch.autograd.Function):
    """x * keep for p = 0.5 from the random words themselves (C kernel `drop_mul`): no float tensor of
    factors is made, forward or backward."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, words: Tensor) -> Tensor:
        ctx.save_for_backward(words)
        return drop_mul(x, words)

    @staticmethod
    def backward(ctx: Any, g: Tensor) -> tuple[Tensor | None, ...]:
        (words,) = ctx.saved_tensors
        return drop_mul(g, words), None


def dropout(x: Tensor, p: float, gen: torch.Generator | None, native: bool) -> Tensor:
    """Inverted dropout of x in a training pass (`models.dropout.dropout`, the same masks); with
    `native`, a p = 0.5 mask is applied from its random bits by the C kernel (bit for bit the product)."""
    if p == 0.0:
        return x
    if native and p == 0.5:
        return _BitDropout.apply(x, random_bits(x.numel(), gen, x.device))  # type: ignore[no-any-return]
    return _Dropout.apply(x, dropout_scale(x, p, gen))  # type: ignore[no-any-return]


class _DropoutAdd(torch.autograd.Function):
    """x + y * factors. Autograd's own backward of addcmul first multiplies the factors by its value
    argument (1), a pass over a (tokens, D) tensor per call; this one does not."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, y: Tensor, factors: Tensor) -> Tensor:
        ctx.save_for_backward(factors)
        return torch.addcmul(x, y, factors)

    @staticmethod
    def backward(ctx: Any, g: Tensor) -> tuple[Tensor | None, ...]:
        (factors,) = ctx.saved_tensors
        return g, (g * factors if ctx.needs_input_grad[1] else None), None


class _BitDropoutAdd(torch.autograd.Function):
    """x + y * keep for p = 0.5 from the random words (C kernels `drop_add`, `drop_mul`)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, y: Tensor, words: Tensor) -> Tensor:
        ctx.save_for_backward(words)
        return drop_add(x, y, words)

    @staticmethod
    def backward(ctx: Any, g: Tensor) -> tuple[Tensor | None, ...]:
        (words,) = ctx.saved_tensors
        return g, (drop_mul(g, words) if ctx.needs_input_grad[1] else None), None


def dropout_add(y: Tensor, x: Tensor, p: float, gen: torch.Generator | None, native: bool) -> Tensor:
    """x + dropout(y) in one pass (the residual connections of a training pass)."""
    if p == 0.0:
        return y + x
    if native and p == 0.5 and x.shape == y.shape:  # the C kernel reads x and y element by element
        return _BitDropoutAdd.apply(x, y, random_bits(y.numel(), gen, y.device))  # type: ignore[no-any-return]
    return _DropoutAdd.apply(x, y, dropout_scale(y, p, gen))  # type: ignore[no-any-return]


#: whether this torch has oneDNN's linear with post-ops (`models.fast.select` asks, for CPU float32)
ONEDNN = torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


def _dnn_linear(x: Tensor, w: Tensor, b: Tensor | None, post: str = "none", algorithm: str = "") -> Tensor:
    """(..., in) -> (..., out) through oneDNN's linear, with an optional eltwise post-op ("gelu")."""
    y = torch.ops.mkldnn._linear_pointwise(x.reshape(-1, x.shape[-1]).contiguous(), w, b, post, [], algorithm)
    return y.view(*x.shape[:-1], w.shape[0])


# Blocks of rows that the training pass splits work into. A constant, not the number of threads,
# so that a seed gives the same numbers whatever the number of threads.
ROW_BLOCKS = 2


def _weight_grad(g: Tensor, x: Tensor) -> Tensor:
    """g.T @ x for g (T, out), x (T, in) with T in the tens of thousands -> (out, in).

    MKL splits such a long reduction poorly across threads. So the T rows are cut into ROW_BLOCKS
    blocks, whose products run as one batched GEMM (a block per thread) and are summed. The product
    is taken in the orientation MKL runs fastest (the smaller of in/out as the output's rows). Same
    value up to float32 summation order."""
    t, n_out, n_in = g.shape[0], g.shape[1], x.shape[1]
    if t % ROW_BLOCKS:
        return g.T @ x if n_out <= n_in else (x.T @ g).T
    gb, xb = g.reshape(ROW_BLOCKS, t // ROW_BLOCKS, n_out), x.reshape(ROW_BLOCKS, t // ROW_BLOCKS, n_in)
    if n_out <= n_in:
        return torch.bmm(gb.transpose(1, 2), xb).sum(0)  # (blocks, out, in) -> (out, in)
    return torch.bmm(xb.transpose(1, 2), gb).sum(0).T


class _Linear(torch.autograd.Function):
    """x @ w.T + b for the encoder's tall, skinny (tokens x 64..256) shapes on CPU.

    Forward runs oneDNN's linear, which adds the bias inside the GEMM (MKL's addmm first writes the
    broadcast bias into the whole output, one more pass over it); so does the input gradient
    (g @ w as a linear with the transposed weight). The weight gradient is one batched GEMM over
    blocks of rows (`_weight_grad`), and the bias gradient a matrix-vector product, which reads the
    gradient faster than a sum reduction; with `native_wgrad` (the C kernels run, one torch thread),
    both come from one pass of `native.linear_wgrad` instead (blocked sums; where MKL takes its AVX2
    path on an AVX-512 CPU, also faster: docs/perf.md). Same values as F.linear up to float32
    summation order.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, w: Tensor, b: Tensor, native_wgrad: bool) -> Tensor:
        ctx.save_for_backward(x, w)
        ctx.native_wgrad = native_wgrad
        return _dnn_linear(x, w, b)

    @staticmethod
    def backward(ctx: Any, g: Tensor) -> tuple[Tensor | None, ...]:
        x, w = ctx.saved_tensors
        g2, x2 = g.reshape(-1, g.shape[-1]), x.reshape(-1, x.shape[-1])  # (T, out), (T, in)
        # oneDNN again for g @ w: MKL is slower for the widening (T, 64) x (64, 256)
        gx = _dnn_linear(g, w.t().contiguous(), None) if ctx.needs_input_grad[0] else None
        gw: Tensor | None = None
        gb: Tensor | None = None
        if ctx.needs_input_grad[1] and ctx.native_wgrad:
            gw, gb = linear_wgrad(g2, x2, ctx.needs_input_grad[2])  # one pass, blocked sums
            return gx, gw, gb, None
        if ctx.needs_input_grad[1]:
            gw = _weight_grad(g2, x2)
        if ctx.needs_input_grad[2]:
            gb = g2.new_ones(g2.shape[0]) @ g2  # (out,)
        return gx, gw, gb, None


def linear(x: Tensor, w: Tensor, b: Tensor, onednn: bool, native: bool) -> Tensor:
    """(..., in) -> (..., out): `_Linear` with `onednn` (CPU float32), else F.linear. With `native`, its
    weight gradient is the C kernel's where the weight's shape fits the kernel's tiles."""
    if onednn:
        return _Linear.apply(x, w, b, native and wgrad_fits(w.shape[0], w.shape[1]))  # type: ignore[no-any-return]
    return F.linear(x, w, b)


def linear_gelu(x: Tensor, w: Tensor, b: Tensor) -> Tensor:
    """gelu(x @ w.T + b) with the exact GELU inside oneDNN's GEMM (one pass over the (tokens, 4D)
    activation less). Forward only: for passes without autograd."""
    return _dnn_linear(x, w, b, "gelu", "none")  # algorithm "none": the exact (erf) GELU


def linear_add(x: Tensor, w: Tensor, b: Tensor, res: Tensor) -> Tensor:
    """x @ w.T + b + res with the residual added inside oneDNN's GEMM. Forward only: for passes without
    autograd."""
    x2, r2 = x.reshape(-1, x.shape[-1]).contiguous(), res.reshape(-1, w.shape[0]).contiguous()
    return torch.ops.mkldnn._linear_pointwise.binary(x2, r2, w, b, "add").view(res.shape)


def _flush_subnormal(grad: Tensor) -> Tensor:
    """Zeroes gradient entries below 1e-30. With flattened 3200-dim views the logits are in the
    thousands, so the softmax gradient is full of float32 subnormals, which make every following
    arithmetic kernel and GEMM many times slower on x86 CPUs. They are far below float32 resolution of
    any sum they enter (GPUs flush them in the same way), so the gradient does not change measurably."""
    return grad.masked_fill(grad.abs() < 1e-30, 0.0)


def _matmul_t(a: Tensor, b: Tensor, onednn: bool) -> Tensor:
    """a @ b.T; with `onednn` a linear with b as its weight, faster than MKL for the InfoNCE Gram's
    (512, 512) x (512, 3200) where MKL takes its AVX2 path (docs/perf.md)."""
    return _dnn_linear(a, b.contiguous(), None) if onednn else a @ b.T


class _Gram(torch.autograd.Function):
    """z @ z.T with the backward as one GEMM: d/dz = (G + G^T) z, where autograd of `z @ z.T` runs
    two (2B, 2B) x (2B, F) products. The incoming gradient is flushed of subnormals first.

    The backward's product runs oneDNN (`_matmul_t`); the forward stays on the BLAS: oneDNN's
    3200-long dot products are less accurate, enough to take the loss fixture's worst ELCRec
    gradient close to its 1e-5 limit (docs/perf.md)."""

    @staticmethod
    def forward(ctx: Any, z: Tensor, onednn: bool) -> Tensor:
        ctx.save_for_backward(z)
        ctx.onednn = onednn
        return z @ z.T  # (2B, 2B)

    @staticmethod
    def backward(ctx: Any, g: Tensor) -> tuple[Tensor | None, ...]:
        (z,) = ctx.saved_tensors
        g = _flush_subnormal(g)
        return _matmul_t(g + g.T, z.T, ctx.onednn), None  # (2B, F)


def gram_matrix(z: Tensor, onednn: bool) -> Tensor:
    """z @ z.T (2B, F) -> (2B, 2B); with autograd its backward is one GEMM (`_Gram`)."""
    return _Gram.apply(z, onednn) if z.requires_grad else z @ z.T  # type: ignore[no-any-return]


_POOLS: dict[int, ThreadPoolExecutor] = {}


def _pool() -> ThreadPoolExecutor | None:
    """ROW_BLOCKS worker threads sharing this thread's torch threads (the setting is per thread),
    or None with a single torch thread, where the blocks run one after the other."""
    n = torch.get_num_threads()
    if n < ROW_BLOCKS:
        return None
    if n not in _POOLS:
        _POOLS[n] = ThreadPoolExecutor(ROW_BLOCKS, initializer=torch.set_num_threads, initargs=(n // ROW_BLOCKS,))
    return _POOLS[n]


def block_threads(threads: int) -> int:
    """The torch threads each block of a `row_blocks` pass runs with, out of `threads` (see `_pool`)."""
    return threads // ROW_BLOCKS if threads >= ROW_BLOCKS else threads


def _map(fn: Any, *args: Any) -> list[Any]:
    pool = _pool()
    return list(pool.map(fn, *args) if pool else map(fn, *args))


def _sum_in_order(parts: tuple[Tensor | None, ...]) -> Tensor | None:
    total = None
    for p in parts:  # a fixed order: the sum does not depend on which thread finished first
        if p is not None:
            total = p if total is None else total + p
    return total


class _RowBlocks(torch.autograd.Function):
    """fn over ROW_BLOCKS blocks of rows side by side, forward and backward (see `row_blocks`)."""

    @staticmethod
    def forward(ctx: Any, fn: Any, x: Tensor, seeds: list[int], *params: Tensor) -> Tensor:
        def run(seed: int, block: Tensor) -> Tensor:
            with torch.enable_grad():  # each block's graph is built, and later differentiated, by itself
                return fn(block, torch.Generator(device=x.device).manual_seed(seed))  # type: ignore[no-any-return]

        ctx.outs = _map(run, seeds, x.chunk(ROW_BLOCKS))
        ctx.params = params
        return torch.cat([o.detach() for o in ctx.outs])

    @staticmethod
    def backward(ctx: Any, g: Tensor) -> tuple[Tensor | None, ...]:
        outs, params = ctx.outs, ctx.params
        del ctx.outs

        def grads(out: Tensor, g_out: Tensor) -> tuple[Tensor | None, ...]:
            return torch.autograd.grad(out, params, g_out, allow_unused=True)

        per_block = _map(grads, outs, g.split([o.shape[0] for o in outs]))
        return (None, None, None, *(_sum_in_order(parts) for parts in zip(*per_block, strict=True)))


def row_blocks(fn: Any, x: Tensor, gen: torch.Generator | None, params: Sequence[Tensor]) -> Tensor:
    """fn(x, generator) for a row-wise fn (each output row depends on its input row only), computed
    as fn(block, generator_i) on ROW_BLOCKS blocks of rows, in the forward and the backward pass
    (`params`: what fn differentiates to; their gradients are summed over the blocks in a fixed order).

    With two torch threads or more the blocks run side by side, in worker threads that share the torch
    threads out: the ops whose own threading scales poorly (LayerNorm's backward, the embedding
    gradient, the GEMMs' row split) then keep both cores busy. With one thread they run one after the
    other; a block's ops then run on one thread, as with two threads, so the result is the same. Each
    block's dropout draws from its own generator, seeded from `gen`, so a seed fixes every mask whatever
    the number of threads (the masks differ from a one-block pass's)."""
    seeds = torch.randint(0, 2**62, (ROW_BLOCKS,), generator=gen).tolist()
    return _RowBlocks.apply(fn, x, seeds, *params)  # type: ignore[no-any-return]
