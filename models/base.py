"""Shared pieces of the model zoo: a base class with the protocol's default hooks, seeded weight
initialisation, full softmax cross-entropy, and a small post-norm Transformer toolkit whose dropout
draws from the model's explicit generator (so a seed fixes a run, as for the ICLRec-family encoder).

Models built on `models.encoder.SeqEncoder` (SASRec-CE, gSASRec, DuoRec) do not use the toolkit:
they reuse that encoder. BERT4Rec (bidirectional), FMLP-Rec and BSARec (Fourier filters) do.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.fast import dropout
from models.protocol import Batch, EmbedUsers, Pretraining


def init_weights(m: nn.Module, gen: torch.Generator, std: float) -> None:
    """N(0, std) for Linear/Embedding/Conv weights, zero biases, LayerNorm (1, 0), Xavier-uniform
    GRU weights (RecBole's GRU4Rec), all drawn from `gen`."""
    if isinstance(m, nn.Linear | nn.Embedding | nn.Conv2d):
        m.weight.data.normal_(0.0, std, generator=gen)
        bias = getattr(m, "bias", None)
        if bias is not None:
            bias.data.zero_()
    elif isinstance(m, nn.LayerNorm):
        m.weight.data.fill_(1.0)
        m.bias.data.zero_()
    elif isinstance(m, nn.GRU):
        for name, p in m.named_parameters():
            if "weight" in name:
                nn.init.xavier_uniform_(p.data, generator=gen)
            else:
                p.data.zero_()


class ZooModel(nn.Module):
    """Defaults of `models.protocol.RecModel` for models without intents or epoch hooks."""

    samples = "sequence"
    objective = ""
    needs_users = False  # True: constructed as (item_size, cfg, n_users)
    init_std = 0.02

    def __init__(self, item_size: int) -> None:
        super().__init__()
        self.item_size = item_size
        self.generator: torch.Generator | None = None

    def sample_options(self) -> dict[str, Any]:
        return {}

    def pretraining(self) -> Pretraining | None:
        return None

    def reset_parameters(self, gen: torch.Generator) -> None:
        """Re-initialise every weight from `gen` so that a seed fixes the initial model."""
        self.apply(lambda m: init_weights(m, gen, self.init_std))

    def epoch_start(self, epoch: int, embed_users: EmbedUsers, seed: int) -> None:
        return None

    def after_step(self) -> None:
        return None

    def intent_of(self, user_repr_mean: Tensor) -> Tensor | None:
        return None

    def intents(self) -> int:
        return 0

    def drop(self, x: Tensor, p: float) -> Tensor:
        """Dropout drawn from the model's generator (identity in eval mode)."""
        return dropout(x, p, self.generator, self.training)


def full_ce(h: Tensor, items: Tensor, target: Tensor) -> Tensor:
    """Softmax cross-entropy over every item id: h (..., D), items (I, D), target (...) with 0 for
    "no target" (padding, unmasked Cloze positions); the mean over real targets. Only the rows with
    a target are scored: the same loss and gradients as ignore_index=0, without the logits of the
    rest (most of a Cloze batch, and the padding of a short-sequence one)."""
    t = target.reshape(-1)
    real = t > 0
    if not bool(real.any()):
        return h.sum() * 0.0 + items.sum() * 0.0
    logits = h.reshape(-1, h.shape[-1])[real] @ items.T  # (P, I), P real targets
    return F.cross_entropy(logits, t[real])


class LastItemCE(ZooModel):
    """A model trained on prefix samples with softmax cross-entropy at the last position, scored by
    its last position's output against its item embeddings (`self.embed`), as FMLP-Rec and BSARec."""

    embed: Embedder

    def losses(self, batch: Batch) -> dict[str, Tensor]:
        ce = full_ce(self.user_repr(batch.input_ids), self.item_weights(), batch.target_pos)
        return {"loss": ce, "ce": ce}

    def user_repr(self, input_ids: Tensor, users: Tensor | None = None) -> Tensor:
        return self(input_ids, last_only=True)[:, -1]

    def item_weights(self) -> Tensor:
        return self.embed.item_embeddings.weight


def pad_left(ids: Tensor, length: int) -> Tensor:
    """(B, L) -> (B, length): the last `length` columns, left-padded with 0 when L is shorter."""
    if ids.shape[1] >= length:
        return ids[:, -length:]
    return F.pad(ids, (length - ids.shape[1], 0))


class Attention(nn.Module):
    """Multi-head self-attention, dense output, dropout, residual, LayerNorm (post-norm BERT block)."""

    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        self.query, self.key, self.value, self.dense = (nn.Linear(d, d) for _ in range(4))
        self.LayerNorm = nn.LayerNorm(d, eps=1e-12)
        self.heads = heads

    def forward(self, x: Tensor, mask: Tensor, model: ZooModel, p_attn: float, p: float,
                last_only: bool = False) -> Tensor:
        """x (B, L, D), additive mask (B, 1, L, L) -> (B, Lq, D); Lq = 1, the final position, if
        last_only (its query alone; keys and values still see every position)."""
        x_q, mask_q = (x[:, -1:], mask[:, :, -1:]) if last_only else (x, mask)  # (B, Lq, D), (B, 1, Lq, L)
        ctx = multi_head(self.query(x_q), self.key(x), self.value(x), self.heads, mask_q,
                         lambda probs: model.drop(probs, p_attn))
        return self.LayerNorm(model.drop(self.dense(ctx), p) + x_q)


def multi_head(q: Tensor, k: Tensor, v: Tensor, heads: int, mask: Tensor,
               on_probs: Callable[[Tensor], Tensor]) -> Tensor:
    """Scaled dot-product attention over `heads` heads: q (B, Lq, D), k, v (B, L, D), additive mask
    (B, 1, Lq, L); `on_probs` (attention dropout) maps the (B, h, Lq, L) weights -> (B, Lq, D)."""
    b, n, d = q.shape
    dh = d // heads

    def split(t: Tensor) -> Tensor:
        return t.view(b, t.shape[1], heads, dh).transpose(1, 2)  # (B, h, L or Lq, dh)

    probs = torch.softmax(split(q) @ split(k).transpose(-1, -2) / math.sqrt(dh) + mask, dim=-1)
    return (on_probs(probs) @ split(v)).transpose(1, 2).reshape(b, n, d)


class FeedForward(nn.Module):
    """Position-wise Linear(4D), exact GELU, Linear(D), dropout, residual, LayerNorm."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.dense_1, self.dense_2 = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)
        self.LayerNorm = nn.LayerNorm(d, eps=1e-12)

    def forward(self, x: Tensor, model: ZooModel, p: float) -> Tensor:
        return self.LayerNorm(model.drop(self.dense_2(F.gelu(self.dense_1(x))), p) + x)


def attention_mask(input_ids: Tensor, causal: bool) -> Tensor:
    """(B, L) -> (B, 1, L, L) additive mask: -10000 on padding keys (and future keys if causal)."""
    keep = (input_ids > 0)[:, None, None, :]
    if causal:
        n = input_ids.shape[1]
        keep = keep & torch.tril(torch.ones(n, n, dtype=torch.bool, device=input_ids.device))
    return torch.where(keep, 0.0, -10000.0)


class Embedder(nn.Module):
    """Item + learned position embeddings, LayerNorm, dropout (the BERT input layer)."""

    def __init__(self, item_size: int, d: int, max_len: int) -> None:
        super().__init__()
        self.item_embeddings = nn.Embedding(item_size, d, padding_idx=0)
        self.position_embeddings = nn.Embedding(max_len, d)
        self.LayerNorm = nn.LayerNorm(d, eps=1e-12)

    def forward(self, input_ids: Tensor, model: ZooModel, p: float) -> Tensor:
        """(B, L) with L <= max_len, right-aligned positions -> (B, L, D)."""
        pos = self.position_embeddings.weight[self.position_embeddings.num_embeddings - input_ids.shape[1] :]
        return model.drop(self.LayerNorm(self.item_embeddings(input_ids) + pos), p)
