"""Seeded inverted dropout: the definition of every dropout mask the models draw.

The authors' code uses `nn.Dropout`, which draws from torch's global RNG. Here every mask comes from
an explicit `torch.Generator` (the model's, replaced by the trainer every epoch), so that a seed fixes
a run. For p = 0.5 a mask is one random bit per element, an exact Bernoulli(0.5) draw, 64 elements per
random int64 word; for other p it is a uniform float >= p per element. The fast path
(`models.fast`) draws the same masks from the same generator in the same order and applies them
faster; this module is the plain statement of the draw that it is tested against.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor


def random_bits(n: int, gen: torch.Generator | None, device: torch.device) -> Tensor:
    """(ceil(n / 64),) int64 words of random bits from `gen`: element e's bit is bit e % 8 of byte e // 8."""
    return torch.randint(-(2**63), 2**63 - 1, ((n + 63) // 64,), generator=gen, dtype=torch.int64, device=device)


def dropout_factors(shape: tuple[int, ...], p: float, gen: torch.Generator | None, device: torch.device,
                    dtype: torch.dtype = torch.float32) -> Tensor:
    """Inverted-dropout factors of `shape`: 1 / (1 - p) where an element is kept, else 0."""
    n = math.prod(shape)
    if p == 0.5:
        octets = random_bits(n, gen, device).view(torch.uint8).int()  # (8 * words,): the words' bytes in memory order
        bits = (octets[:, None] >> torch.arange(8, device=device)) & 1  # (8 * words, 8): bit i of byte b
        keep = bits.view(-1)[:n].view(shape).bool()
    else:
        keep = torch.rand(shape, generator=gen, device=device) >= p
    return keep.to(dtype) / (1.0 - p)


def dropout(x: Tensor, p: float, gen: torch.Generator | None, training: bool) -> Tensor:
    """x times its dropout factors (`dropout_factors`), or x itself when not training or p = 0."""
    if not training or p == 0.0:
        return x
    return x * dropout_factors(tuple(x.shape), p, gen, x.device, x.dtype)


@dataclass(frozen=True)
class SeededDropout:
    """The dropout of one pass: masks from `gen` while training, none in evaluation."""

    gen: torch.Generator | None
    training: bool

    def __call__(self, x: Tensor, p: float) -> Tensor:
        return dropout(x, p, self.gen, self.training)

    def per_head(self, probs: Tensor, p: float) -> Tensor:
        """Attention dropout of probs (B, h, Lq, L): each head's (B, Lq, L) mask is drawn in turn, head 0
        first (the fast path's kernels work head by head and draw in that order)."""
        if not self.training or p == 0.0:
            return probs
        b, h, lq, n = probs.shape
        masks = [dropout_factors((b, lq, n), p, self.gen, probs.device, probs.dtype) for _ in range(h)]
        return probs * torch.stack(masks, dim=1)  # (B, h, Lq, L)
