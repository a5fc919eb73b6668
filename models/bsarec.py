"""BSARec (Shin et al., AAAI 2024, "An Attentive Inductive Bias for Sequential Recommendation beyond
the Self-Attention").

Reference: yehjin-shin/BSARec `src/model/bsarec.py`, `src/model/_modules.py` (`BSARecLayer`: the
output of each block is alpha x a frequency layer + (1 - alpha) x causal multi-head self-attention,
then the feed-forward block; the frequency layer keeps the lowest c // 2 + 1 rfft frequencies of the
sequence, adds the rest scaled by beta^2 (beta a learnable (D,) vector drawn N(0, 1)), dropout,
residual, LayerNorm). Objective as the reference trainer: prefix samples, softmax cross-entropy over
all items at the last position. Beauty settings (`src/scripts`): alpha 0.7, c 5, 1 head, 2 layers,
hidden 64, dropout 0.5 (hidden and attention), lr 5e-4 (a training setting).

Deviations: dropout masks come from the run's generator; LayerNorm is torch's (the reference's own
LayerNorm computes the same with eps inside the square root); the mask token's score is part of the
softmax. Inputs are left-padded back to max_len: the frequency split is defined on that length.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from models.base import Attention, Embedder, FeedForward, LastItemCE, ZooModel, attention_mask, pad_left
from models.encoder import require, require_ranges


@dataclass(frozen=True)
class BSARecConfig:
    layers: int = 2
    hidden: int = 64
    heads: int = 1
    max_len: int = 50
    dropout: float = 0.5
    attn_dropout: float = 0.5
    alpha: float = 0.7  # weight of the frequency (inductive bias) branch
    c: int = 5  # low-pass cut-off: c // 2 + 1 frequencies kept

    def __post_init__(self) -> None:
        require_ranges(self, at_least_1=("layers", "hidden", "heads", "max_len", "c"))
        require(self.hidden % self.heads == 0, f"hidden ({self.hidden}) must be a multiple of heads ({self.heads})")
        require(0.0 <= self.dropout < 1.0 and 0.0 <= self.attn_dropout < 1.0, "dropouts must be in [0, 1)")
        require(0.0 <= self.alpha <= 1.0, f"alpha must be in [0, 1], got {self.alpha}")


class FrequencyLayer(nn.Module):
    def __init__(self, d: int, c: int) -> None:
        super().__init__()
        self.sqrt_beta = nn.Parameter(torch.zeros(1, 1, d))
        self.LayerNorm = nn.LayerNorm(d, eps=1e-12)
        self.keep = c // 2 + 1

    def forward(self, x: Tensor, model: ZooModel, p: float, last_only: bool = False) -> Tensor:
        """x (B, L, D) -> LayerNorm(x + dropout(low + beta^2 high)), split along the sequence:
        (B, L, D), or (B, 1, D) at the final position if last_only (the split still sees all L)."""
        spec = torch.fft.rfft(x, dim=1, norm="ortho")  # (B, L // 2 + 1, D)
        keep = torch.arange(spec.shape[1], device=x.device)[None, :, None] < self.keep
        low = torch.fft.irfft(spec * keep, n=x.shape[1], dim=1, norm="ortho")  # (B, L, D)
        if last_only:
            x, low = x[:, -1:], low[:, -1:]
        mixed = low + self.sqrt_beta**2 * (x - low)
        return self.LayerNorm(model.drop(mixed, p) + x)


class BSABlock(nn.Module):
    def __init__(self, cfg: BSARecConfig) -> None:
        super().__init__()
        self.filter = FrequencyLayer(cfg.hidden, cfg.c)
        self.attention = Attention(cfg.hidden, cfg.heads)
        self.feed_forward = FeedForward(cfg.hidden)


class BSARec(LastItemCE):
    samples = "prefixes"
    objective = "ce-full"

    def __init__(self, item_size: int, cfg: BSARecConfig) -> None:
        super().__init__(item_size)
        self.hp = cfg
        self.embed = Embedder(item_size, cfg.hidden, cfg.max_len)
        self.blocks = nn.ModuleList(BSABlock(cfg) for _ in range(cfg.layers))

    def reset_parameters(self, gen: torch.Generator) -> None:
        super().reset_parameters(gen)
        for block in self.blocks:
            block.filter.sqrt_beta.data.normal_(0.0, 1.0, generator=gen)  # type: ignore[union-attr,operator]

    def forward(self, input_ids: Tensor, last_only: bool = False) -> Tensor:
        """(B, L) -> (B, max_len, D) (B, 1, D if last_only: the last block computes the final
        position only, all that the loss and the scores read)."""
        ids = pad_left(input_ids, self.hp.max_len)
        hp, mask = self.hp, attention_mask(ids, causal=True)
        x = self.embed(ids, self, hp.dropout)
        for i, b in enumerate(self.blocks):
            last = last_only and i == len(self.blocks) - 1
            dsp = b.filter(x, self, hp.dropout, last)  # type: ignore[operator]
            gsp = b.attention(x, mask, self, hp.attn_dropout, hp.dropout, last)  # type: ignore[operator]
            x = b.feed_forward(hp.alpha * dsp + (1 - hp.alpha) * gsp, self, hp.dropout)  # type: ignore[operator]
        return x
