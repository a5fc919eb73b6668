"""The fast path of `models.encoder.SeqEncoder`: the function of its `reference` forward, of the same
parameters, computed faster. `models.fast.select` decides per pass which pieces run (the fields of
`Backend`); each piece has the value of the reference's plain expression up to float32 rounding and
summation order:

- q/k/v are one GEMM over the concatenated weights, with the attention scale folded into the query's;
- `onednn` (CPU float32): the linear layers run oneDNN's GEMM with the bias added inside it, their
  weight gradient is one batched GEMM over two blocks of tokens, summed, in the faster orientation
  (`kernels.linear`);
- attention with autograd, "explicit": per head, the scores as one baddbmm that adds the mask, read
  through strided per-head views of the fused projection (no head-major copies, and split's backward
  is one concatenation); "native": the C kernel per (sequence, head) does softmax, dropout and both
  products (its float32 sums and its exp, a polynomial of ~1 ulp, exp(x) = 0 below x = -87, differ
  in the last bits);
- passes without dropout or autograd (scoring, k-means input): torch's fused
  `scaled_dot_product_attention` with the same additive mask ("sdpa"), and with `fused_epilogues`
  oneDNN adds the GELU and the residuals inside its GEMMs;
- `native`: p = 0.5 dropout masks are applied from their random bits by C kernels (bit for bit the
  torch products), and the linear layers' weight and bias gradients come from one C pass;
  `native_layer_norm`: LayerNorm's backward sums its affine gradients in blocks of rows;
- the dropout masks are the reference's (`models.dropout`): the same draws from the same generator in
  the same order, head by head in the attention;
- `row_blocks` (a large CPU training pass, ELCRec's and ICLRec's five passes of a batch): the rows, which
  are independent sequences, run as two blocks side by side, each drawing its masks from its own
  generator seeded from the model's. Those masks differ from the reference's (the same distribution);
  without dropout the outputs agree.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.dropout import random_bits
from models.fast import kernels, native

if TYPE_CHECKING:
    from models.encoder import SeqEncoder, _Layer
    from models.fast.backend import Backend

#: (B, L, 3D) fused q/k/v projection, heads, last_only -> (B, Lq, D) attention context
Attend = Callable[[Tensor, int, bool], Tensor]


@dataclass(frozen=True)
class _Pass:
    """One fast pass: its backend, its dropout generator and rates (0 when not training)."""

    plan: Backend
    gen: torch.Generator | None
    p: float
    p_attn: float

    def linear(self, x: Tensor, w: Tensor, b: Tensor) -> Tensor:
        return kernels.linear(x, w, b, self.plan.onednn, self.plan.native)

    def drop(self, x: Tensor) -> Tensor:
        return kernels.dropout(x, self.p, self.gen, self.plan.native)

    def drop_add(self, y: Tensor, x: Tensor) -> Tensor:
        """x + dropout(y): a residual connection."""
        return kernels.dropout_add(y, x, self.p, self.gen, self.plan.native)

    def norm(self, x: Tensor, ln: nn.LayerNorm) -> Tensor:
        return native.layer_norm(x, ln) if self.plan.native_layer_norm else ln(x)  # type: ignore[no-any-return]


def encode(enc: SeqEncoder, input_ids: Tensor, last_only: bool, plan: Backend) -> Tensor:
    """`enc.reference(input_ids, last_only)`, (B, L) -> (B, L, D) or (B, 1, D), run as `plan` says."""
    if plan.row_blocks:  # each output row depends on its input row only
        inner = replace(plan, row_blocks=False)
        params = [p for p in enc.parameters() if p.requires_grad]
        return kernels.row_blocks(lambda ids, gen: _encode(enc, ids, _pass(enc, inner, gen), False), input_ids,
                                  enc.generator, params)
    return _encode(enc, input_ids, _pass(enc, plan, enc.generator), last_only)


def _pass(enc: SeqEncoder, plan: Backend, gen: torch.Generator | None) -> _Pass:
    cfg, on = enc.cfg, enc.training
    return _Pass(plan, gen, cfg.dropout if on else 0.0, cfg.attn_dropout if on else 0.0)


def _encode(enc: SeqEncoder, input_ids: Tensor, run: _Pass, last_only: bool) -> Tensor:
    pos = enc.position_embeddings.weight[enc.cfg.max_len - input_ids.shape[1] :]  # (L, D)
    x = run.drop(run.norm(enc.item_embeddings(input_ids) + pos, enc.LayerNorm))  # (B, L, D)
    attend = _attention(enc, input_ids, run)
    layers = enc.item_encoder.layer
    for i, layer in enumerate(layers):
        x = _block(layer, x, attend, run, last_only and i == len(layers) - 1)  # type: ignore[arg-type]
    return x


def _block(layer: _Layer, x: Tensor, attend: Attend, run: _Pass, last_only: bool) -> Tensor:
    """One post-norm block, x (B, L, D) -> (B, Lq, D), Lq = 1 if last_only."""
    att, ff = layer.attention, layer.intermediate
    scale = 1.0 / math.sqrt(x.shape[-1] // att.heads)  # folded into the query projection: one pass less
    w = torch.cat([att.query.weight * scale, att.key.weight, att.value.weight])  # (3D, D)
    bias = torch.cat([att.query.bias * scale, att.key.bias, att.value.bias])  # (3D,)
    ctx = attend(run.linear(x, w, bias), att.heads, last_only)  # (B, Lq, D)
    if last_only:  # only the final position is needed downstream
        x = x[:, -1:]
    if run.plan.fused_epilogues:  # no dropout between the GEMMs and the residuals, no autograd
        x = run.norm(kernels.linear_add(ctx, att.dense.weight, att.dense.bias, x), att.LayerNorm)
        inner = kernels.linear_gelu(x, ff.dense_1.weight, ff.dense_1.bias)  # (B, Lq, 4D)
        return run.norm(kernels.linear_add(inner, ff.dense_2.weight, ff.dense_2.bias, x), ff.LayerNorm)
    x = run.norm(run.drop_add(run.linear(ctx, att.dense.weight, att.dense.bias), x), att.LayerNorm)
    inner = F.gelu(run.linear(x, ff.dense_1.weight, ff.dense_1.bias))  # (B, Lq, 4D)
    return run.norm(run.drop_add(run.linear(inner, ff.dense_2.weight, ff.dense_2.bias), x), ff.LayerNorm)


def _attention(enc: SeqEncoder, input_ids: Tensor, run: _Pass) -> Attend:
    """The attention of this pass. The mask has one definition, the reference's additive
    `attention_mask`; each variant takes it in the form its kernel reads, made here."""
    if run.plan.attention == "native":
        valid = input_ids > 0  # (B, L): the kernel adds -10000 at padding and future keys itself
        return lambda qkv, heads, last_only: native_attention(qkv, valid, heads, run.p_attn, run.gen)
    mask = enc.attention_mask(input_ids)[:, 0]  # (B, L, L), for every head
    if run.plan.attention == "sdpa":
        return lambda qkv, heads, last_only: sdpa_attention(qkv, mask, heads, last_only)
    return lambda qkv, heads, last_only: explicit_attention(qkv, mask, heads, last_only, run.p_attn, run.gen,
                                                            run.plan.native)


def native_attention(qkv: Tensor, valid: Tensor, heads: int, p_attn: float, gen: torch.Generator | None) -> Tensor:
    """(B, L, 3D) -> (B, L, D) by the C kernel; dropout p_attn is 0 or 0.5 (`select` checks)."""
    b, n, _ = qkv.shape
    bits = None
    if p_attn > 0:  # the reference's draws: one (B, L, L) mask per head, head after head
        bits = torch.stack([random_bits(b * n * n, gen, qkv.device) for _ in range(heads)])  # (H, words)
    return native.attention(qkv, valid, heads, bits)


def sdpa_attention(qkv: Tensor, mask: Tensor, heads: int, last_only: bool) -> Tensor:
    """(B, L, 3D), additive mask (B, L, L) -> (B, Lq, D) by torch's fused kernel (no (B, L, L) tensor
    per head), for passes without dropout and autograd."""
    b, n, d3 = qkv.shape
    q, k, v = (t.transpose(1, 2) for t in qkv.view(b, n, 3, heads, d3 // (3 * heads)).unbind(2))  # (B, h, L, dh)
    if last_only:
        q, mask = q[:, :, -1:], mask[:, -1:]
    ctx = F.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, None], scale=1.0)  # the scale is in q
    return ctx.transpose(1, 2).reshape(b, -1, d3 // 3)


def explicit_attention(qkv: Tensor, mask: Tensor, heads: int, last_only: bool, p_attn: float,
                       gen: torch.Generator | None, native: bool) -> Tensor:
    """(B, L, 3D), additive mask (B, L, L) -> (B, Lq, D), head by head, with dropout p_attn (applied by
    the C kernel where `native`)."""
    dh = qkv.shape[-1] // (3 * heads)
    if last_only:
        mask = mask[:, -1:]
    parts = qkv.split(dh, dim=-1)  # q_0..q_h-1, k_0.., v_0..: (B, L, dh) each
    out = []
    for i in range(heads):
        q = parts[i][:, -1:] if last_only else parts[i]
        scores = torch.baddbmm(mask, q, parts[heads + i].transpose(1, 2))  # (B, Lq, L), mask added
        probs = kernels.dropout(torch.softmax(scores, dim=-1), p_attn, gen, native)
        out.append(torch.bmm(probs, parts[2 * heads + i]))
    return torch.cat(out, dim=-1)  # (B, Lq, D)
