"""BERT4Rec (Sun et al., CIKM 2019, "BERT4Rec: Sequential Recommendation with Bidirectional Encoder
Representations from Transformer"), with its real Cloze objective.

Reference: FeiSun/BERT4Rec `modeling.py`, `run.py` (TensorFlow) and RUCAIBox/RecBole
`recbole/model/sequential_recommender/bert4rec.py`: a bidirectional post-norm Transformer over item
+ position embeddings; training masks a random fraction of a sequence's items with a [mask] token
and predicts them with softmax cross-entropy over all items, through an output head (dense, GELU,
LayerNorm) and the tied item embeddings plus an output bias; at inference [mask] is appended to the
history and its output scores the next item. Beauty settings of FeiSun's scripts: 2 layers, 2 heads,
hidden 64, mask probability 0.6, hidden dropout 0.5, attention dropout 0.2 (the config defaults).
(yehjin-shin/BSARec's `bert4rec.py` replaces the Cloze loss with a next-item loss: not followed.)

Training samples ("cloze"), as FeiSun's `gen_data_fin.py` builds its training set: each user's
training part (all but the last two items, last 50) in dupe_factor (10) copies with random masks,
plus one copy whose last item alone is masked (`mask_last`, the inference task); one epoch is one
pass over all of them (so 11 sequences per user). The mask token is item id item_size - 1 (the
ICLRec data convention).

Deviations: the copies are masked anew every epoch (FeiSun's are drawn once, static); each item is
masked with probability mask_prob (FeiSun masks exactly round(length x 0.6) items, at most 30); a
sequence longer than 50 keeps its last 50 items (FeiSun adds sliding windows every 5 items); a
sequence that drew no mask gets its last item masked; the scores of padding and mask token are
part of the softmax; Adam at the harness's learning rate, no warm-up or decay (FeiSun: 1e-4, 100
warm-up steps, linear decay over 400,000 steps); dropout masks come from the run's generator.
Known to under-train with short budgets (Petrov & Macdonald, RecSys 2022).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models import fast
from models.base import Attention, Embedder, FeedForward, ZooModel, attention_mask, full_ce, pad_left
from models.encoder import require, require_ranges
from models.protocol import Batch


@dataclass(frozen=True)
class BERT4RecConfig:
    layers: int = 2
    hidden: int = 64
    heads: int = 2
    max_len: int = 50
    dropout: float = 0.5
    attn_dropout: float = 0.2
    mask_prob: float = 0.6
    dupe_factor: int = 10  # randomly masked copies of each training sequence per epoch
    mask_last: bool = True  # plus one copy whose last item alone is masked (as at inference)

    def __post_init__(self) -> None:
        require_ranges(self, at_least_1=("layers", "hidden", "heads", "max_len", "dupe_factor"))
        require(self.hidden % self.heads == 0, f"hidden ({self.hidden}) must be a multiple of heads ({self.heads})")
        require(0.0 <= self.dropout < 1.0 and 0.0 <= self.attn_dropout < 1.0, "dropouts must be in [0, 1)")
        require(0.0 < self.mask_prob <= 1.0, f"mask_prob must be in (0, 1], got {self.mask_prob}")


class BERTBlock(nn.Module):
    def __init__(self, cfg: BERT4RecConfig) -> None:
        super().__init__()
        self.attention = Attention(cfg.hidden, cfg.heads)
        self.feed_forward = FeedForward(cfg.hidden)


class BERT4Rec(ZooModel):
    samples = "cloze"
    objective = "cloze-ce"

    def __init__(self, item_size: int, cfg: BERT4RecConfig) -> None:
        super().__init__(item_size)
        self.hp = cfg
        self.embed = Embedder(item_size, cfg.hidden, cfg.max_len)
        self.blocks = nn.ModuleList(BERTBlock(cfg) for _ in range(cfg.layers))
        self.head = nn.Linear(cfg.hidden, cfg.hidden)
        self.head_norm = nn.LayerNorm(cfg.hidden, eps=1e-12)
        self.output_bias = nn.Parameter(torch.zeros(item_size))

    def sample_options(self) -> dict[str, Any]:
        return {"mask_prob": self.hp.mask_prob, "copies": self.hp.dupe_factor, "mask_last": self.hp.mask_last}

    def reset_parameters(self, gen: torch.Generator) -> None:
        super().reset_parameters(gen)
        self.output_bias.data.zero_()

    def forward(self, input_ids: Tensor, last_only: bool = False) -> Tensor:
        """(B, L) -> (B, L, D+1) head outputs with a constant 1 appended (it meets the output bias)."""
        hp, mask = self.hp, attention_mask(input_ids, causal=False)
        x = self.embed(input_ids, self, hp.dropout)
        for i, b in enumerate(self.blocks):
            last = last_only and i == len(self.blocks) - 1  # the final position alone (scoring)
            x = b.feed_forward(b.attention(x, mask, self, hp.attn_dropout, hp.dropout, last), self, hp.dropout)  # type: ignore[operator]
        out = self.head_norm(F.gelu(self.head(x)))
        return torch.cat([out, torch.ones_like(out[..., :1])], -1)

    def losses(self, batch: Batch) -> dict[str, Tensor]:
        out, target = fast.at_targets(self, batch.input_ids, batch.target_pos)  # (P, D+1) at masked positions
        ce = full_ce(out, self.item_weights(), target)
        return {"loss": ce, "ce": ce}

    def user_repr(self, input_ids: Tensor, users: Tensor | None = None) -> Tensor:
        """History + [mask], last max_len items: the mask's output scores the next item."""
        masked = torch.full_like(input_ids[:, :1], self.item_size - 1)
        return self(pad_left(torch.cat([input_ids, masked], 1), self.hp.max_len), last_only=True)[:, -1]

    def item_weights(self) -> Tensor:
        """(I, D+1): the tied item embeddings with the output bias as the last column."""
        return torch.cat([self.embed.item_embeddings.weight, self.output_bias[:, None]], 1)
