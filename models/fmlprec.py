"""FMLP-Rec (Zhou et al., WWW 2022, "Filter-enhanced MLP is All You Need for Sequential
Recommendation").

Reference: Woeee/FMLP-Rec `models.py`, `modules.py` (FilterLayer, FMLPRecModel); as re-hosted on
the ICLRec data files by yehjin-shin/BSARec `src/model/fmlprec.py`, `src/model/_modules.py`
(`FMLPRecLayer`: rfft over the sequence, a learnable complex filter (max_len // 2 + 1, D) drawn
N(0, 0.02), irfft, dropout, residual, LayerNorm; then the feed-forward block). Objective as the
reference trainers: every prefix of the training sequence is a sample, softmax cross-entropy over all
items at its last position. Settings: hidden 64, 2 layers, dropout 0.5, max_len 50.

Deviations: dropout masks come from the run's generator; the scores of padding id 0 and of the mask
token are part of the softmax (the reference's softmax covers its embedding table, padding row
included, so only the mask token's row is extra). Inputs shorter than max_len (the evaluator cuts
windows to their longest history) are left-padded back to max_len: the filter is defined on that
length.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from models.base import Embedder, FeedForward, LastItemCE, ZooModel, pad_left
from models.encoder import require, require_ranges


@dataclass(frozen=True)
class FMLPRecConfig:
    layers: int = 2
    hidden: int = 64
    max_len: int = 50
    dropout: float = 0.5

    def __post_init__(self) -> None:
        require_ranges(self, at_least_1=("layers", "hidden", "max_len"))
        require(0.0 <= self.dropout < 1.0, f"dropout must be in [0, 1), got {self.dropout}")


class FilterLayer(nn.Module):
    """x + dropout(irfft(rfft(x) * W)) -> LayerNorm, the filter applied along the sequence."""

    def __init__(self, max_len: int, d: int) -> None:
        super().__init__()
        self.complex_weight = nn.Parameter(torch.zeros(1, max_len // 2 + 1, d, 2))
        self.LayerNorm = nn.LayerNorm(d, eps=1e-12)

    def forward(self, x: Tensor, model: ZooModel, p: float, last_only: bool = False) -> Tensor:
        """x (B, L, D) -> (B, L, D), or (B, 1, D) at the final position if last_only (the filter
        still sees all L)."""
        spec = torch.fft.rfft(x, dim=1, norm="ortho") * torch.view_as_complex(self.complex_weight)
        filtered = torch.fft.irfft(spec, n=x.shape[1], dim=1, norm="ortho")  # (B, L, D)
        if last_only:
            x, filtered = x[:, -1:], filtered[:, -1:]
        return self.LayerNorm(model.drop(filtered, p) + x)


class FMLPBlock(nn.Module):
    def __init__(self, cfg: FMLPRecConfig) -> None:
        super().__init__()
        self.filter = FilterLayer(cfg.max_len, cfg.hidden)
        self.feed_forward = FeedForward(cfg.hidden)


class FMLPRec(LastItemCE):
    samples = "prefixes"
    objective = "ce-full"

    def __init__(self, item_size: int, cfg: FMLPRecConfig) -> None:
        super().__init__(item_size)
        self.hp = cfg
        self.embed = Embedder(item_size, cfg.hidden, cfg.max_len)
        self.blocks = nn.ModuleList(FMLPBlock(cfg) for _ in range(cfg.layers))

    def reset_parameters(self, gen: torch.Generator) -> None:
        super().reset_parameters(gen)
        for block in self.blocks:
            block.filter.complex_weight.data.normal_(0.0, 0.02, generator=gen)  # type: ignore[union-attr,operator]

    def forward(self, input_ids: Tensor, last_only: bool = False) -> Tensor:
        """(B, L) -> (B, max_len, D) (B, 1, D if last_only: the last block computes the final
        position only, all that the loss and the scores read)."""
        p = self.hp.dropout
        x = self.embed(pad_left(input_ids, self.hp.max_len), self, p)
        for i, block in enumerate(self.blocks):
            last = last_only and i == len(self.blocks) - 1
            x = block.feed_forward(block.filter(x, self, p, last), self, p)  # type: ignore[operator]
        return x
