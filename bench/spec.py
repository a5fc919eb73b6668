"""What one training run is: its `RunSpec` and training settings. No torch.

The runner expands a sweep into RunSpecs, hands each to a worker process as JSON (`as_dict`, the
one boundary where a spec is a dict), and the worker trains it; a record keeps that JSON as its
`config`. The config hash covers everything but the seed and the machine-side settings, so that a
repeated sweep finds its finished runs.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from bench.protocol import SEEN_RULES

# not in the hash: the same run on another machine, thread count or data folder, or resumed with
# --allow-code-change, is the same run
UNHASHED = ("seed", "data_dir", "threads", "allow_code_change")


@dataclass(frozen=True)
class TrainConfig:
    lr: float = 1e-3
    beta1: float = 0.9
    beta2: float = 0.999
    weight_decay: float = 0.0
    batch_size: int = 256
    epochs: int = 300
    patience: int = 40
    seen_items: str = "zero"  # validation and test protocol

    def __post_init__(self) -> None:
        ok = {"lr": self.lr >= 0, "weight_decay": self.weight_decay >= 0, "beta1": 0 <= self.beta1 < 1,
              "beta2": 0 <= self.beta2 < 1, "batch_size": self.batch_size >= 1, "epochs": self.epochs >= 1,
              "patience": self.patience >= 1, "seen_items": self.seen_items in SEEN_RULES}
        bad = [f"{k}={getattr(self, k)!r}" for k, good in ok.items() if not good]
        if bad:
            raise ValueError(f"out of range: {', '.join(bad)} (lr, weight_decay >= 0; betas in [0, 1); batch_size, "
                             f"epochs, patience >= 1; seen_items {' or '.join(SEEN_RULES)})")


@dataclass(frozen=True)
class RunSpec:
    model: str
    dataset: str
    seed: int
    hp: dict[str, Any] = field(default_factory=dict)  # model hyper-parameter overrides
    # the training settings given (the profile's epochs and patience, `--set` ones); TrainConfig's
    # defaults for the rest. Kept as given: the config hash covers these, not the defaults of the day
    train: dict[str, Any] = field(default_factory=dict)
    device: str = "cpu"
    data_dir: str | None = None
    threads: int = 0  # torch intra-op threads; 0 = torch's default
    allow_code_change: bool = False  # resume a state saved by other code (the record says so)

    @property
    def train_config(self) -> TrainConfig:
        return TrainConfig(**self.train)

    def as_dict(self) -> dict[str, Any]:
        """The JSON form: a worker's argument and a record's `config`, with the config hash."""
        d = self._fields()
        d["config_hash"] = self.config_hash
        return d

    @functools.cached_property
    def config_hash(self) -> str:
        body = {k: v for k, v in self._fields().items() if k not in UNHASHED}
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:12]

    def _fields(self) -> dict[str, Any]:
        d = {"model": self.model, "dataset": self.dataset, "seed": self.seed, "hp": self.hp, "train": self.train,
             "device": self.device, "data_dir": self.data_dir, "threads": self.threads}
        if self.allow_code_change:  # only then: specs and records stay as they were otherwise
            d["allow_code_change"] = True
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunSpec:
        return cls(model=d["model"], dataset=d["dataset"], seed=int(d["seed"]), hp=dict(d["hp"]),
                   train=dict(d["train"]), device=d.get("device", "cpu"), data_dir=d.get("data_dir"),
                   threads=int(d.get("threads", 0)), allow_code_change=bool(d.get("allow_code_change")))


@dataclass(frozen=True)
class Profile:
    """A training protocol: epoch budget, patience, default data and settings of its own."""

    epochs: int
    patience: int
    datasets: tuple[str, ...]
    note: str
    train: dict[str, Any] = field(default_factory=dict)  # training settings other than the authors' defaults

    def describe(self) -> str:
        data = ",".join(self.datasets)
        extra = "".join(f", {k.replace('_', ' ')} {v}" for k, v in self.train.items())
        return f"{self.epochs} epochs max, patience {self.patience}{extra}, default data {data}: {self.note}"


SMOKE_DATA = "synthetic:users=600,items=120,intents=4"
PROFILES: dict[str, Profile] = {
    "paper": Profile(300, 40, ("beauty",), "the authors' full protocol"),
    "quick": Profile(20, 5, ("beauty",), "20 epochs, patience 5: early learning curves and cost at 1/15 of paper"),
    # smoke: 10 steps an epoch (batch 64 on 600 users) so that every model leaves the popularity
    # plateau within the budget; at batch 256 (3 steps an epoch) the contrastive and Cloze models did not
    "smoke": Profile(10, 10, (SMOKE_DATA,), "a tiny synthetic set: checks the pipeline and that each model learns",
                     {"batch_size": 64}),
}
