"""The SASRec-style Transformer encoder of the ICLRec family (SASRec, CL4SRec, ICLRec, ELCRec; also
SASRec-CE, gSASRec, DuoRec, S3-Rec), written plainly: the reference every backend computes.

Reference: the ICLRec code (salesforce/ICLRec), `src/modules.py` (Encoder, Layer, SelfAttention,
Intermediate, LayerNorm, gelu) and `src/models.py` (SASRecModel: add_position_embedding, the extended
attention mask of forward, init_weights), re-used unchanged by ELCRec (yueliu1999/ELCRec). Attribute
names mirror that code so the authors' state dicts load with `strict=True`.

Faithful details (they decide exact numbers, see shared/reference/README.md):
- post-norm BERT blocks: LayerNorm(x + dropout(dense(attention(x)))), then
  LayerNorm(x + dropout(dense_2(gelu(dense_1(x))))); exact (erf) GELU; LayerNorm eps 1e-12;
- the attention mask is *additive* -10000, not -inf: a left-padding query whose keys are all masked
  attends over all raw scores, future items included;
- padding positions are computed like any other position;
- weights N(0, init_std) for every Linear and Embedding (the padding row too), zero biases,
  LayerNorm (1, 0).

Deviations from that code:
- dropout draws from an explicit `torch.Generator` (the model's), not torch's global RNG
  (`models.dropout`): for p = 0.5 one random bit per element (an exact Bernoulli(0.5) draw); the
  attention dropout draws one mask per head, head after head;
- `reset_parameters(gen)` draws the initial weights from an explicit generator;
- torch's `nn.LayerNorm` and `F.gelu` stand for their hand-written LayerNorm and gelu (the same
  functions and parameter names; float32 rounding may differ);
- the mask is where(keep, 0, -10000), where theirs is (1 - keep) * -10000 (-0.0 at kept keys: the
  same sums);
- an input shorter than max_len (some models cut batches to their longest sequence) takes the *last*
  L position embeddings; their inputs are always max_len long. At its real positions the output is
  that of the whole left-padded window (a masked key's weight, exp(-10000 + s), is 0 in float32);
- `last_only=True` computes the last block for the final position only (keys and values still see
  every position), all that scoring needs: the same values there.

How a pass runs: `SeqEncoder.forward` asks `models.fast.select` (explicit inputs: device, dtype,
training, autograd, size of the pass, the native build, INTENTBENCH_BACKEND=reference to force this
code) and runs `reference` below or the fast path (`models/fast/encoder.py`, which lists its own
float32 differences), the same function of the same parameters: tests/test_backends.py checks both
on every registry model that holds this encoder.

Also here: the losses the family shares (next-item BCE, InfoNCE) and config validation helpers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models import fast
from models.dropout import SeededDropout


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
    """ICLRec's SelfAttention: multi-head self-attention, dense output, dropout, residual, LayerNorm."""

    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        d = cfg.hidden
        self.query, self.key, self.value, self.dense = (nn.Linear(d, d) for _ in range(4))
        self.LayerNorm = nn.LayerNorm(d, eps=1e-12)
        self.heads = cfg.heads
        self.p_attn, self.p = cfg.attn_dropout, cfg.dropout

    def forward(self, x: Tensor, mask: Tensor, drop: SeededDropout, last_only: bool = False) -> Tensor:
        """x (B, L, D), additive mask (B, 1, L, L) -> (B, Lq, D); Lq = 1, the final position, if last_only."""
        b, _, d = x.shape
        h, dh = self.heads, d // self.heads
        x_q = x[:, -1:] if last_only else x  # (B, Lq, D): the positions whose output is needed

        def split(t: Tensor) -> Tensor:  # (B, L', D) -> (B, h, L', dh)
            return t.view(b, -1, h, dh).transpose(1, 2)

        q, k, v = split(self.query(x_q)), split(self.key(x)), split(self.value(x))
        scores = q @ k.transpose(-1, -2) / math.sqrt(dh) + (mask[:, :, -1:] if last_only else mask)  # (B, h, Lq, L)
        probs = drop.per_head(torch.softmax(scores, dim=-1), self.p_attn)
        ctx = (probs @ v).transpose(1, 2).reshape(b, -1, d)  # (B, Lq, D)
        return self.LayerNorm(drop(self.dense(ctx), self.p) + x_q)


class _FeedForward(nn.Module):
    """ICLRec's Intermediate: Linear(4D), exact GELU, Linear(D), dropout, residual, LayerNorm."""

    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        self.dense_1 = nn.Linear(cfg.hidden, 4 * cfg.hidden)
        self.dense_2 = nn.Linear(4 * cfg.hidden, cfg.hidden)
        self.LayerNorm = nn.LayerNorm(cfg.hidden, eps=1e-12)
        self.p = cfg.dropout

    def forward(self, x: Tensor, drop: SeededDropout) -> Tensor:
        """(B, L, D) -> (B, L, D)."""
        inner = F.gelu(self.dense_1(x))  # (B, L, 4D)
        return self.LayerNorm(drop(self.dense_2(inner), self.p) + x)


class _Layer(nn.Module):
    """ICLRec's Layer: self-attention, then the feed-forward block."""

    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        self.attention = _Attention(cfg)
        self.intermediate = _FeedForward(cfg)

    def forward(self, x: Tensor, mask: Tensor, drop: SeededDropout, last_only: bool = False) -> Tensor:
        return self.intermediate(self.attention(x, mask, drop, last_only), drop)  # type: ignore[no-any-return]


class _Stack(nn.Module):
    """ICLRec's Encoder: `layers` blocks, one after the other."""

    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        self.layer = nn.ModuleList(_Layer(cfg) for _ in range(cfg.layers))

    def forward(self, x: Tensor, mask: Tensor, drop: SeededDropout, last_only: bool = False) -> Tensor:
        """(B, L, D) -> (B, L, D), or (B, 1, D) if last_only: the last block computes the final position."""
        for i, layer in enumerate(self.layer):
            x = layer(x, mask, drop, last_only and i == len(self.layer) - 1)
        return x


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

    @staticmethod
    def attention_mask(input_ids: Tensor) -> Tensor:
        """(B, L) -> (B, 1, L, L) additive mask: 0 where the key is a real item at or before the query,
        else -10000 (float32)."""
        n = input_ids.shape[1]
        causal = torch.ones(n, n, dtype=torch.bool, device=input_ids.device).tril()  # (L, L)
        keep = (input_ids > 0)[:, None, None, :] & causal  # (B, 1, L, L)
        return torch.where(keep, 0.0, -10000.0)

    def forward(self, input_ids: Tensor, last_only: bool = False) -> Tensor:
        """(B, L) item ids, left-padded with 0 -> (B, L, D) hidden states ((B, 1, D) if last_only).

        L may be shorter than max_len: the input is then the *last* L positions of the window. The pass
        runs on the backend `models.fast.select` picks: `reference`, or the fast path (same function)."""
        w = self.item_embeddings.weight
        backend = fast.select(w.device, w.dtype, self.cfg, training=self.training, grad=torch.is_grad_enabled(),
                              tokens=input_ids.numel(), last_only=last_only)
        return backend.encode(self, input_ids, last_only)

    def reference(self, input_ids: Tensor, last_only: bool = False) -> Tensor:
        """`forward` in plain torch, as ICLRec's SASRecModel.forward computes it (module docstring)."""
        drop = SeededDropout(self.generator, self.training)
        pos = self.position_embeddings.weight[self.cfg.max_len - input_ids.shape[1] :]  # (L, D): the last L
        x = drop(self.LayerNorm(self.item_embeddings(input_ids) + pos), self.cfg.dropout)  # (B, L, D)
        return self.item_encoder(x, self.attention_mask(input_ids), drop, last_only)  # type: ignore[no-any-return]

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
    gram = fast.gram_matrix(z)  # (2B, 2B): its backward is one GEMM
    if temperature != 1.0:  # dividing by 1 is exact, so the paper's setting skips the pass
        gram = gram / temperature
    eye = torch.eye(2 * b, dtype=torch.bool, device=z.device)
    labels = (torch.arange(2 * b, device=z.device) + b) % (2 * b)  # row i's positive is its twin
    return F.cross_entropy(gram.masked_fill(eye, float("-inf")), labels)
