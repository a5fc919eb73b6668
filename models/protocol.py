"""The one small protocol every model implements; the harness only talks to this.

A model says what its training samples are (`samples`, one of `REGIMES`) and which loss it
minimises (`objective`); the harness builds that regime's batches and records both in every run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor

#: training-sample regimes (their batch builders live in the harness, keyed by these names):
#: "sequence": one sample per user, input items[:-3] and the next item at every position;
#: "prefixes": every prefix of the training sequence, the next item as the one target;
#: "cloze": the training sequence items[:-2] with a random fraction of its items masked;
#: "pairs": (user, training item) pairs with one sampled negative item;
#: "segments": S3-Rec's pre-training samples: every prefix of items[:-2] with masked items, one
#: negative per position, and a masked segment with its true and a random segment.
REGIMES = ("sequence", "prefixes", "cloze", "pairs", "segments")


def _empty() -> Tensor:
    return torch.empty(0, dtype=torch.int64)


@dataclass(frozen=True)
class Batch:
    """One training batch, int64 tensors, sequences (B, L) left-padded with 0. What each field holds
    depends on the regime; a field a regime does not fill is an empty tensor.

    - input_ids (B, L): the input sequence ("cloze": with masked items replaced by the mask token);
    - target_pos: the items to predict, (B, L) per position ("sequence"; "cloze": 0 where unmasked)
      or (B,) ("prefixes", "pairs");
    - target_neg: one sampled negative per target, shaped as target_pos ("sequence", "pairs");
    - view_1, view_2 (B, L): two augmented views ("sequence"); "prefixes" with the option
      `same_target` puts a training sample with the same target in view_1 (DuoRec);
    - users (B,): row index of each sample's user in the dataset;
    - view_neg (B, L): "segments": the random segment of another sequence (view_1: the sequence with
      a segment masked, view_2: that segment, masks elsewhere).
    """

    input_ids: Tensor = field(default_factory=_empty)
    target_pos: Tensor = field(default_factory=_empty)
    target_neg: Tensor = field(default_factory=_empty)
    view_1: Tensor = field(default_factory=_empty)
    view_2: Tensor = field(default_factory=_empty)
    users: Tensor = field(default_factory=_empty)
    view_neg: Tensor = field(default_factory=_empty)


@dataclass(frozen=True)
class Pretraining:
    """A pre-training stage run before the main training (S3-Rec): its regime, the regime's options,
    its epochs and the loss terms of one batch (key "loss" minimised)."""

    samples: str
    options: dict[str, Any]
    epochs: int
    losses: Callable[[Batch], dict[str, Tensor]]


#: computes, in eval mode, the mean-pooled encoder output of every training sequence: (U, D)
EmbedUsers = Callable[[], np.ndarray]


class RecModel(Protocol):
    """What the trainer, the evaluator and the CLI need from a model."""

    item_size: int
    generator: torch.Generator | None
    samples: str  # one of REGIMES
    objective: str  # the loss, e.g. "bce-1neg", "ce-full", "gbce", "bpr", "cloze-ce"

    def sample_options(self) -> dict[str, Any]:
        """Options of the regime's batch builder (e.g. the Cloze mask probability)."""
        ...

    def losses(self, batch: Batch) -> dict[str, Tensor]:
        """Every loss term of one batch; key "loss" is the joint objective to minimise."""
        ...

    def pretraining(self) -> Pretraining | None:
        """The stage run once before training, or None."""
        ...

    def epoch_start(self, epoch: int, embed_users: EmbedUsers, seed: int) -> None:
        """Hook run before each training epoch (ICLRec's k-means, ELCRec's centre init)."""
        ...

    def after_step(self) -> None:
        """Hook run after each optimiser step."""
        ...

    def user_repr(self, input_ids: Tensor, users: Tensor | None = None) -> Tensor:
        """(B, L) histories and (B,) user rows -> (B, D); scores are its dot products with items."""
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


def model_info(model: RecModel) -> dict[str, Any]:
    """What a run record says of the training regime and loss of its model."""
    pre = model.pretraining()
    stage = None if pre is None else {"samples": pre.samples, "options": pre.options, "epochs": pre.epochs}
    return {"samples": model.samples, "objective": model.objective, "sample_options": model.sample_options(),
            "pretraining": stage}
