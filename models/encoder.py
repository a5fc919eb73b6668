"""The SASRec-style encoder shared by SASRec, CL4SRec, ICLRec and ELCRec.

Reference: the `SASRecModel` / `Encoder` of the ICLRec code (salesforce/ICLRec, `src/models.py`,
`src/modules.py`), re-used unchanged by ELCRec (yueliu1999/ELCRec). Attribute names mirror that
code so the authors' state dicts load with `strict=True`.

Faithful details (they decide exact numbers, see shared/reference/README.md):
- post-norm BERT blocks, exact (erf) GELU, LayerNorm eps 1e-12;
- the attention mask is *additive* -10000, not -inf: a left-padding query whose keys are all masked
  attends over all raw scores, future items included;
- padding positions are computed like any other position.

Deviations (numerically equivalent up to float32 summation order, faster):
- q/k/v are one fused GEMM over the concatenated weights, with the attention scale folded in;
- on CPU the linear layers run oneDNN's GEMM with the bias added inside it, and their weight gradient
  is one batched GEMM over two blocks of tokens, summed, in the faster orientation;
- the InfoNCE logits are one Gram matrix whose backward is one GEMM, and its float32
  subnormal gradient entries (< 1e-30) are flushed to zero (they slow x86 arithmetic ~100x);
- dropout masks are drawn from an explicit `torch.Generator` (seedable, no global RNG); for p=0.5 the
  mask is one random bit per element, which is an exact Bernoulli(0.5) draw;
- a large CPU training pass (ELCRec's and ICLRec's five passes of a batch) runs on two blocks of rows
  side by side (rows are independent sequences), each block drawing its masks from its own generator
  seeded from the model's;
- passes without dropout and autograd (scoring, k-means input) run torch's fused
  `scaled_dot_product_attention` with the same additive mask, and oneDNN adds the GELU and the
  residuals inside the GEMMs;
- `forward(..., last_only=True)` computes the last block only for the final position, which is all
  that scoring needs (keys/values still see every position, so the output is identical).
- on CPU at one torch thread (each block of rows above, or a one-thread run), the attention of a pass
  with autograd (softmax, dropout and both products, per sequence and head), the p = 0.5 dropouts,
  the linear layers' weight and bias gradients and the LayerNorm backward (its affine gradients summed
  in blocks of rows) run native kernels (`models/native.c`, compiled on first use): the
  same masks from the same generator; the attention's float32 sums and its exp (a polynomial, ~1 ulp;
  exp(x) = 0 below x = -87) differ in the last bits (the loss fixture still matches to < 2e-6), the
  dropouts are bit for bit the torch expressions. Without a C compiler the torch path runs.
The linear, Gram-matrix and dropout kernels behind these items are in `models/kernels.py`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.fast import native
from models.fast.kernels import (
    dropout,
    dropout_add,
    gram_matrix,
    linear,
    linear_add,
    linear_gelu,
    random_bits,
    row_blocks,
    use_row_blocks,
)


def require(ok: bool, problem: str) -> None:
    """Config validation: a ValueError naming the offending setting."""
    if not ok:
        raise ValueError(problem)


def require_ranges(cfg: object, at_least_1: tuple[str, ...] = (), non_negative: tuple[str, ...] = (),
                   positive: tuple[str, ...] = ()) -> None:
    """A ValueError naming every listed field of cfg that is out of its range."""
    rules = [(at_least_1, ">= 1", lambda v: v >= 1), (non_negative, ">= 0", lambda v: v >= 0),
             (positive, "> 0", lambda v: v > 0)]
    bad = [f"{n} must be {text}, got {getattr(cfg, n)}" for names, text, ok in rules for n in names
           if not ok(getattr(cfg, n))]
    require(not bad, "; ".join(bad))


@dataclass(frozen=True)
class EncoderConfig:
    layers: int = 2
    hidden: int = 64
    heads: int = 2
    max_len: int = 50
    dropout: float = 0.5
    attn_dropout: float = 0.5
    init_std: float = 0.02

    def __post_init__(self) -> None:
        require_ranges(self, at_least_1=("layers", "max_len"), positive=("init_std",))
        require(self.heads >= 1 and self.hidden >= 1 and self.hidden % self.heads == 0,
                f"hidden ({self.hidden}) must be a positive multiple of heads ({self.heads})")
        require(0.0 <= self.dropout < 1.0 and 0.0 <= self.attn_dropout < 1.0,
                f"dropout and attn_dropout must be in [0, 1), got {self.dropout}, {self.attn_dropout}")


class _Attention(nn.Module):
    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        d = cfg.hidden
        self.query, self.key, self.value, self.dense = (nn.Linear(d, d) for _ in range(4))
        self.LayerNorm = nn.LayerNorm(d, eps=1e-12)
        self.heads = cfg.heads


class _FeedForward(nn.Module):
    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        self.dense_1 = nn.Linear(cfg.hidden, 4 * cfg.hidden)
        self.dense_2 = nn.Linear(4 * cfg.hidden, cfg.hidden)
        self.LayerNorm = nn.LayerNorm(cfg.hidden, eps=1e-12)


class _Layer(nn.Module):
    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        self.attention = _Attention(cfg)
        self.intermediate = _FeedForward(cfg)


class _Stack(nn.Module):
    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        self.layer = nn.ModuleList(_Layer(cfg) for _ in range(cfg.layers))


class SeqEncoder(nn.Module):
    """Item + position embedding, LayerNorm, dropout, then `layers` post-norm transformer blocks."""

    def __init__(self, item_size: int, cfg: EncoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.item_size = item_size
        self.item_embeddings = nn.Embedding(item_size, cfg.hidden, padding_idx=0)
        self.position_embeddings = nn.Embedding(cfg.max_len, cfg.hidden)
        self.LayerNorm = nn.LayerNorm(cfg.hidden, eps=1e-12)
        self.item_encoder = _Stack(cfg)
        self.generator: torch.Generator | None = None
        causal = torch.tril(torch.ones(cfg.max_len, cfg.max_len, dtype=torch.bool))
        self.register_buffer("causal", causal, persistent=False)
        self.apply(self._init_weights)

    def _init_weights(self, m: nn.Module) -> None:
        # as the authors: N(0, std) for every Linear/Embedding (the padding row too), zero biases
        if isinstance(m, nn.Linear | nn.Embedding):
            m.weight.data.normal_(0.0, self.cfg.init_std, generator=self.generator)
        if isinstance(m, nn.Linear) and m.bias is not None:
            m.bias.data.zero_()

    def reset_parameters(self, gen: torch.Generator) -> None:
        """Re-initialise every weight from `gen` so that a seed fixes the initial model."""
        self.generator = gen
        self.apply(self._init_weights)

    def _attention_mask(self, input_ids: Tensor) -> Tensor:
        """(B, L, L) additive mask: 0 where the key is a real, non-future item, else -10000."""
        n = input_ids.shape[1]
        causal: Tensor = self.causal  # type: ignore[assignment]
        keep = (input_ids > 0)[:, None, :] & causal[None, :n, :n]
        return torch.where(keep, 0.0, -10000.0)  # float32

    def _native_attention(self, last_only: bool) -> bool:
        """Whether the layers' attention runs the native kernel: passes with autograd on CPU (training
        steps, the loss fixture) where torch runs one thread (each block of rows of a large pass, or a
        one-thread run), with p = 0.5 attention dropout or none."""
        p = self.cfg.attn_dropout if self.training else 0.0
        return (torch.is_grad_enabled() and not last_only and p in (0.0, 0.5) and native.usable(
            self.position_embeddings.weight) and native.attention_fits(3 * self.cfg.hidden, self.cfg.heads))

    def _attend(self, qkv: Tensor, mask: Tensor | None, valid: Tensor, heads: int, last_only: bool,
                gen: torch.Generator | None) -> Tensor:
        """(B, L, 3D) projections, (B, L, L) additive mask (None: the native kernel, which builds it from
        valid, the (B, L) real-item keys) -> (B, Lq, D) attention context."""
        b, n, d3 = qkv.shape
        dh = d3 // (3 * heads)
        if mask is None:
            bits = None
            if self.training and self.cfg.attn_dropout > 0:  # the torch path's draws, head by head
                bits = torch.stack([random_bits(b * n * n, gen, qkv.device) for _ in range(heads)])
            return native.attention(qkv, valid, heads, bits)
        if last_only:
            mask = mask[:, -1:]
        if not self.training and not torch.is_grad_enabled():
            # scoring and embedding passes (no dropout, no autograd): torch's fused attention kernel
            # computes the same softmax(q.k + mask) v (additive mask, fully masked rows included)
            # without a (B, L, L) tensor per head. Its backward is further from the authors'
            # gradients (1.2e-5 relative on the fixture), so autograd passes keep the explicit path.
            q, k, v = (t.transpose(1, 2) for t in qkv.view(b, n, 3, heads, dh).unbind(2))  # (B, h, L, dh)
            q = q[:, :, -1:] if last_only else q
            ctx = F.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, None], scale=1.0)  # scale is folded
            return ctx.transpose(1, 2).reshape(b, -1, d3 // 3)
        # per-head views of the projection: the batched GEMMs read them strided, so no head-major
        # copies are made, and split's backward is a single concatenation
        parts = qkv.split(dh, dim=-1)  # q_0..q_h-1, k_0.., v_0..: (B, L, dh) each
        out = []
        for i in range(heads):
            q = parts[i][:, -1:] if last_only else parts[i]
            scores = torch.baddbmm(mask, q, parts[heads + i].transpose(1, 2))  # (B, Lq, L), mask added
            probs = dropout(torch.softmax(scores, dim=-1), self.cfg.attn_dropout, gen, self.training)
            out.append(torch.bmm(probs, parts[2 * heads + i]))
        return torch.cat(out, dim=-1)  # (B, Lq, D)

    def _block(self, layer: _Layer, x: Tensor, mask: Tensor | None, valid: Tensor, last_only: bool,
               gen: torch.Generator | None) -> Tensor:
        att = layer.attention
        scale = 1.0 / math.sqrt(x.shape[-1] // att.heads)  # folded into the query projection: one pass less
        w = torch.cat([att.query.weight * scale, att.key.weight, att.value.weight])  # (3D, D)
        bias = torch.cat([att.query.bias * scale, att.key.bias, att.value.bias])
        ctx = self._attend(linear(x, w, bias), mask, valid, att.heads, last_only, gen)  # x: (B, L, D)
        if last_only:  # only the final position is needed downstream
            x = x[:, -1:]
        ff = layer.intermediate
        if not self.training:  # no dropout between the GEMMs and the residuals: fused where possible
            x = native.layer_norm(linear_add(ctx, att.dense.weight, att.dense.bias, x), att.LayerNorm)
            inner = linear_gelu(x, ff.dense_1.weight, ff.dense_1.bias)  # (B, Lq, 4D)
            return native.layer_norm(linear_add(inner, ff.dense_2.weight, ff.dense_2.bias, x), ff.LayerNorm)
        p = self.cfg.dropout
        attended = dropout_add(linear(ctx, att.dense.weight, att.dense.bias), x, p, gen, True)
        x = native.layer_norm(attended, att.LayerNorm)
        inner = F.gelu(linear(x, ff.dense_1.weight, ff.dense_1.bias))  # (B, Lq, 4D)
        y = linear(inner, ff.dense_2.weight, ff.dense_2.bias)
        return native.layer_norm(dropout_add(y, x, p, gen, True), ff.LayerNorm)

    def forward(self, input_ids: Tensor, last_only: bool = False) -> Tensor:
        """(B, L) item ids, left-padded with 0 -> (B, L, D) hidden states ((B, 1, D) if last_only).

        L may be shorter than max_len: the input is then the *last* L positions of the window.
        A large CPU training pass with autograd runs on blocks of rows side by side (`row_blocks`).
        """
        if self.training and torch.is_grad_enabled() and not last_only and use_row_blocks(input_ids):
            params = [p for p in self.parameters() if p.requires_grad]
            return row_blocks(self._encode, input_ids, self.generator, params)
        return self._encode(input_ids, self.generator, last_only)

    def _encode(self, input_ids: Tensor, gen: torch.Generator | None, last_only: bool = False) -> Tensor:
        pos = self.position_embeddings.weight[self.cfg.max_len - input_ids.shape[1] :]
        x = native.layer_norm(self.item_embeddings(input_ids) + pos, self.LayerNorm)
        x = dropout(x, self.cfg.dropout, gen, self.training)
        mask = None if self._native_attention(last_only) else self._attention_mask(input_ids)
        valid = input_ids > 0
        layers = self.item_encoder.layer
        for i, layer in enumerate(layers):
            x = self._block(layer, x, mask, valid, last_only and i == len(layers) - 1, gen)  # type: ignore[arg-type]
        return x

    def user_repr(self, input_ids: Tensor, users: Tensor | None = None) -> Tensor:
        """(B, L) -> (B, D): the hidden state at the last position, used for scoring (users unused)."""
        return self.forward(input_ids, last_only=True)[:, -1]


def infer_layers(state: dict[str, Tensor]) -> int:
    """Number of transformer blocks in an authors'-format state dict."""
    idx = {int(k.split(".")[2]) for k in state if k.startswith("item_encoder.layer.")}
    return max(idx) + 1 if idx else 0


def rec_loss(model: SeqEncoder, seq_out: Tensor, pos: Tensor, neg: Tensor) -> Tensor:
    """Binary cross-entropy of next-item prediction with one sampled negative per position.

    seq_out (B, L, D), pos/neg (B, L). Averaged over non-padding targets; the `+ 1e-24` inside the
    logs is the authors' (it changes the gradient once a sigmoid saturates, so it is kept).
    """
    emb = model.item_embeddings
    pos_logits = (emb(pos) * seq_out).sum(-1)  # (B, L)
    neg_logits = (emb(neg) * seq_out).sum(-1)
    is_target = (pos > 0).to(seq_out.dtype)
    loss = -torch.log(torch.sigmoid(pos_logits) + 1e-24) - torch.log(1 - torch.sigmoid(neg_logits) + 1e-24)
    return (loss * is_target).sum() / is_target.sum().clamp_min(1.0)


def info_nce(z1: Tensor, z2: Tensor, temperature: float = 1.0) -> Tensor:
    """InfoNCE over 2B rows: row i of z1 is positive with row i of z2; every other row of z1 and z2
    is a negative (itself excluded); symmetric for z2. z1, z2: (B, F)."""
    return info_nce_stacked(torch.cat([z1, z2]), temperature)


def info_nce_stacked(z: Tensor, temperature: float = 1.0) -> Tensor:
    """`info_nce(z[:B], z[B:])` for z (2B, F) already stacked (no copy of the views is made).

    The authors build [[s12, s11], [s22, s12^T]] from three products; that is the Gram matrix of
    [z1; z2] with its column halves swapped, and cross-entropy does not care about column order,
    so one (2B, F) x (F, 2B) product does (one GEMM instead of three, same value).
    """
    b = z.shape[0] // 2
    gram = gram_matrix(z)  # (2B, 2B)
    if temperature != 1.0:  # dividing by 1 is exact, so the paper's setting skips the pass
        gram = gram / temperature
    eye = torch.eye(2 * b, dtype=torch.bool, device=z.device)
    labels = (torch.arange(2 * b, device=z.device) + b) % (2 * b)  # row i's positive is its twin
    return F.cross_entropy(gram.masked_fill(eye, float("-inf")), labels)
