"""A built-in dataset with planted intents: the offline default and the test suite's data.

Items 1..items are split into `intents` disjoint groups. Each item has a few preferred successors
inside its group. Each user follows 1-3 intents (the first one, its label, is the most likely);
a sequence starts in the label's group and at every step either stays with its current intent
(following a preferred successor most of the time) or switches to another of the user's intents.
Deterministic by seed; `SeqData.labels` holds each user's planted (primary) intent.

Spec strings: "synthetic" or "synthetic:users=2000,items=500,intents=8,seed=0".
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, fields

import numpy as np

from bench.data.sequences import SeqData
from bench.errors import BenchError


@dataclass(frozen=True)
class SyntheticConfig:
    users: int = 2000
    items: int = 500
    intents: int = 8
    seed: int = 0
    mean_len: int = 10  # average sequence length (at least 5)
    stay: float = 0.85  # probability to keep the current intent at a step
    follow: float = 0.8  # probability to take a preferred successor within a group
    successors: int = 3  # preferred successors per item


def parse_spec(spec: str) -> SyntheticConfig:
    _, _, opts = spec.partition(":")
    known = {f.name: f.type for f in fields(SyntheticConfig)}
    kw: dict[str, float | int] = {}
    for part in filter(None, opts.split(",")):
        key, _, value = part.partition("=")
        if key not in known:
            raise BenchError(f"synthetic: unknown option {key!r}; known: {', '.join(known)}")
        try:
            kw[key] = float(value) if known[key] in (float, "float") else int(value)
        except ValueError:
            raise BenchError(f"synthetic: option {key} needs a number, got {value!r}") from None
    cfg = SyntheticConfig(**kw)  # type: ignore[arg-type]
    if cfg.intents < 1 or cfg.items < 2 * cfg.intents or cfg.users < 1 or cfg.mean_len < 5:
        raise BenchError(f"synthetic: need intents >= 1, items >= 2*intents, users >= 1, mean_len >= 5: {cfg}")
    return cfg


def _user_sequence(cfg: SyntheticConfig, rng: np.random.Generator, groups: list[np.ndarray],
                   succ: np.ndarray, group_of: np.ndarray) -> tuple[list[int], int]:
    n_int = int(rng.integers(1, min(3, cfg.intents) + 1))
    mine = rng.choice(cfg.intents, size=n_int, replace=False)
    weights = np.array([3.0, 1.0, 1.0][:n_int])
    weights /= weights.sum()
    length = 5 + int(rng.geometric(1.0 / (cfg.mean_len - 4))) - 1
    length = min(length, 4 * cfg.mean_len)
    intent = int(mine[0])
    seq = [int(rng.choice(groups[intent]))]
    for _ in range(length - 1):
        if rng.random() > cfg.stay:
            intent = int(rng.choice(mine, p=weights))
        prev = seq[-1]
        if group_of[prev] == intent and rng.random() < cfg.follow:
            seq.append(int(rng.choice(succ[prev])))
        else:
            seq.append(int(rng.choice(groups[intent])))
    return seq, int(mine[0])


def item_groups(cfg: SyntheticConfig) -> np.ndarray:
    """(items + 1,) planted group of every item id (id 0, padding: group 0 too), as `generate`'s."""
    group_of = np.zeros(cfg.items + 1, dtype=np.int64)
    for g, members in enumerate(np.array_split(np.arange(1, cfg.items + 1), cfg.intents)):
        group_of[members] = g
    return group_of


def generate(cfg: SyntheticConfig) -> tuple[list[np.ndarray], np.ndarray]:
    """-> (sequences, planted primary intent per user)."""
    rng = np.random.default_rng(cfg.seed)
    ids = np.arange(1, cfg.items + 1)
    groups = np.array_split(ids, cfg.intents)
    group_of = np.zeros(cfg.items + 1, dtype=np.int64)
    succ = np.zeros((cfg.items + 1, cfg.successors), dtype=np.int64)
    for g, members in enumerate(groups):
        group_of[members] = g
        succ[members] = rng.choice(members, size=(len(members), cfg.successors))
    seqs, labels = [], []
    for _ in range(cfg.users):
        seq, label = _user_sequence(cfg, rng, groups, succ, group_of)
        seqs.append(np.asarray(seq, dtype=np.int64))
        labels.append(label)
    return seqs, np.asarray(labels, dtype=np.int64)


def synthetic_from_spec(spec: str) -> SeqData:
    cfg = parse_spec(spec)
    seqs, labels = generate(cfg)
    text = "\n".join(f"{u} " + " ".join(map(str, s)) for u, s in enumerate(seqs, 1)) + "\n"
    digest = hashlib.sha256(text.encode()).hexdigest()
    return SeqData.from_sequences(spec, digest, seqs, labels)
