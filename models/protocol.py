"""The one small protocol every model implements; the harness only talks to this."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor


@dataclass(frozen=True)
class Batch:
    """One training batch, every tensor (B, L) int64, left-padded with 0."""

    input_ids: Tensor
    target_pos: Tensor
    target_neg: Tensor
    view_1: Tensor
    view_2: Tensor


#: computes, in eval mode, the mean-pooled encoder output of every training sequence: (U, D)
EmbedUsers = Callable[[], np.ndarray]


class RecModel(Protocol):
    """What the trainer, the evaluator and the CLI need from a model."""

    item_size: int
    generator: torch.Generator | None

    def losses(self, batch: Batch) -> dict[str, Tensor]:
        """Every loss term of one batch; key "loss" is the joint objective to minimise."""
        ...

    def epoch_start(self, epoch: int, embed_users: EmbedUsers, seed: int) -> None:
        """Hook run before each training epoch (ICLRec's k-means, ELCRec's centre init)."""
        ...

    def after_step(self) -> None:
        """Hook run after each optimiser step."""
        ...

    def user_repr(self, input_ids: Tensor) -> Tensor:
        """(B, L) -> (B, D) user representation; scores are its dot products with items."""
        ...

    def item_weights(self) -> Tensor:
        """(item_size, D) item embeddings used for scoring."""
        ...

    def intent_of(self, user_repr_mean: Tensor) -> Tensor | None:
        """(U, D) mean-pooled outputs -> (U,) centre index, or None for models without intents."""
        ...

    def intents(self) -> int:
        """Number of intent centres the model assigns users to (0 for models without intents)."""
        ...

    def reset_parameters(self, gen: torch.Generator) -> None: ...

    def train(self, mode: bool = True) -> Any: ...

    def eval(self) -> Any: ...

    def parameters(self) -> Any: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: Any, strict: bool = True) -> Any: ...

    def __call__(self, input_ids: Tensor, last_only: bool = False) -> Tensor: ...
