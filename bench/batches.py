"""Training batches of the authors' protocol, built for a whole epoch at once with numpy.

Per user and epoch (ICLRec/ELCRec `RecWithContrastiveLearningDataset`, data_type "train"):
- input = the user's items except the last three, target = the next item at every position;
- one negative per position, uniform over 1..item_size-1, never an item of that user;
- two views, each by one operator drawn uniformly: crop (a random contiguous floor(0.2 n) slice,
  at least one item), mask (floor(0.7 n) random positions set to 0), reorder (shuffle a random
  contiguous floor(0.2 n) slice); inputs and views are left-padded/cut to the last 50 items.

Everything is vectorised over users (no per-sample Python) and driven by one
`numpy.random.Generator`; the epoch's users are shuffled by the same generator.

The other training-sample regimes of `models.protocol.REGIMES` are built here too, keyed by regime
(`training_samples`): every prefix of the training sequence (FMLP-Rec, BSARec, DuoRec code), the
Cloze task's masked sequences (BERT4Rec), (user, item) pairs (BPR-MF) and S3-Rec's pre-training
samples (masked items and segments).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from bench.data import MAX_LEN, SeqData, concat_ranges, windows

CROP, MASK, REORDER = 0, 1, 2
TAO, GAMMA, BETA = 0.2, 0.7, 0.2  # crop, mask and reorder ratios of the authors


@dataclass(frozen=True)
class EpochBatches:
    """All of an epoch's training tensors, rows in shuffled user order, each (U, 50) int64."""

    users: np.ndarray
    input_ids: np.ndarray
    target_pos: np.ndarray
    target_neg: np.ndarray
    view_1: np.ndarray
    view_2: np.ndarray

    def __len__(self) -> int:
        return len(self.users)

    def arrays(self) -> dict[str, np.ndarray]:
        """The fields of `models.protocol.Batch`, each with one row per user."""
        return {k: getattr(self, k) for k in ("input_ids", "target_pos", "target_neg", "view_1", "view_2", "users")}


def _right_aligned(data: SeqData, users: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """(U, W) training sequences, right-aligned (real items at the end), W = longest sequence."""
    width = max(int(lengths.max()), 1)
    return windows(data.flat, data.starts[users], data.starts[users] + lengths, width)


def _slice_bounds(n: np.ndarray, ratio: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Start and length of a random contiguous slice of floor(ratio n) items (>= 0), per row."""
    size = np.floor(ratio * n).astype(np.int64)
    start = (rng.random(len(n)) * np.maximum(n - size, 1)).astype(np.int64)  # uniform 0..n-size-1
    return start, size


def _crop(seqs: np.ndarray, pos: np.ndarray, n: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Keep [start, start + max(size, 1)), moved to the right end (so it is left-padded)."""
    w = seqs.shape[1]
    start, size = _slice_bounds(n, TAO, rng)
    size = np.maximum(size, 1)
    kept = np.where((pos >= start[:, None]) & (pos < (start + size)[:, None]), seqs, 0)
    shift = (n - start - size)[:, None]
    return np.take_along_axis(kept, (np.arange(w)[None] - shift) % w, 1)


def _mask(seqs: np.ndarray, pos: np.ndarray, n: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """floor(0.7 n) distinct positions set to 0: the ones whose random key ranks lowest."""
    keys = np.where(pos >= 0, rng.random(seqs.shape), 2.0)
    ranks = np.empty_like(pos)
    np.put_along_axis(ranks, keys.argsort(1), np.arange(seqs.shape[1])[None], 1)
    return np.where(ranks < np.floor(GAMMA * n).astype(np.int64)[:, None], 0, seqs)


def _reorder(seqs: np.ndarray, pos: np.ndarray, n: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Shuffle [start, start + size): random sort keys inside the slice, the identity outside."""
    start, size = _slice_bounds(n, BETA, rng)
    inside = (pos >= start[:, None]) & (pos < (start + size)[:, None])
    keys = np.where(inside, start[:, None] - 0.5 + rng.random(seqs.shape) * size[:, None], pos)
    return np.take_along_axis(seqs, keys.argsort(1, kind="stable"), 1)


def augment(seqs: np.ndarray, n: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One random view per row of right-aligned `seqs` (U, W) with lengths n -> (U, 50)."""
    u, w = seqs.shape
    op = rng.integers(0, 3, size=u)
    out = np.empty_like(seqs)
    for code, fn in ((CROP, _crop), (MASK, _mask), (REORDER, _reorder)):
        rows = np.flatnonzero(op == code)
        width = max(int(n[rows].max()), 1) if len(rows) else 1  # only as wide as these rows need
        part = seqs[rows, w - width :]
        pos = np.arange(width)[None] - (width - n[rows])[:, None]  # index in the sequence, < 0 on padding
        out[rows] = 0
        out[rows, w - width :] = fn(part, pos, n[rows], rng)
    return _last(out, MAX_LEN)


def _last(x: np.ndarray, length: int) -> np.ndarray:
    """Last `length` columns, left-padded with 0 when x is narrower."""
    if x.shape[1] >= length:
        return np.ascontiguousarray(x[:, -length:])
    return np.pad(x, ((0, 0), (length - x.shape[1], 0)))


def sample_negatives(data: SeqData, users: np.ndarray, shape: tuple[int, int], rng: np.random.Generator,
                     item_size: int) -> np.ndarray:
    """(U, L) uniform ids in 1..item_size-1 that the row's user never interacted with."""
    keys = np.sort(np.repeat(np.arange(data.n_users, dtype=np.int64), np.diff(data.offsets)) * item_size + data.flat)
    neg = rng.integers(1, item_size, size=shape)
    todo = np.ones(shape, dtype=bool)
    while todo.any():
        probe = users[:, None] * item_size + neg
        idx = np.minimum(np.searchsorted(keys, probe), len(keys) - 1)
        todo = keys[idx] == probe  # a positive: draw again there
        neg = np.where(todo, rng.integers(1, item_size, size=shape), neg)
    return neg


def epoch_batches(data: SeqData, rng: np.random.Generator) -> EpochBatches:
    """The whole epoch's training data in the authors' format, in a fresh random user order."""
    users = rng.permutation(data.n_users)
    n = np.maximum(data.ends[users] - 3 - data.starts[users], 0)  # training input lengths
    seqs = _right_aligned(data, users, n)
    nxt = windows(data.flat, data.starts[users] + 1, data.starts[users] + 1 + n, MAX_LEN)
    inp = _last(seqs, MAX_LEN)
    neg = sample_negatives(data, users, inp.shape, rng, data.item_size)
    neg = np.where(nxt > 0, neg, 0)
    return EpochBatches(users, inp, nxt, neg, augment(seqs, n, rng), augment(seqs, n, rng))


#: one epoch of a regime's samples: arrays with one row per sample, named as `Batch`'s fields
Samples = dict[str, np.ndarray]


def _prefix_rows(data: SeqData) -> tuple[np.ndarray, np.ndarray]:
    """User and end of every prefix: target t = 1..n_u of user u (n_u = training length) gives the
    input flat[start_u : start_u + t] and the target flat[start_u + t], as the sequence regime's."""
    n = np.maximum(data.ends - 3 - data.starts, 0)
    users = np.repeat(np.arange(data.n_users, dtype=np.int64), n)
    t = np.arange(int(n.sum()), dtype=np.int64) - np.repeat(np.cumsum(n) - n, n) + 1
    return users, data.starts[users] + t


def _same_target(targets: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """For each row, a random other row with the same target (itself when it is alone)."""
    order = np.argsort(targets, kind="stable")
    sorted_t = targets[order]
    first = np.searchsorted(sorted_t, sorted_t, side="left")
    size = np.searchsorted(sorted_t, sorted_t, side="right") - first
    rank = np.arange(len(order)) - first  # position of the row inside its group
    r = (rng.random(len(order)) * np.maximum(size - 1, 1)).astype(np.int64)
    pick = np.where(size > 1, first + r + (r >= rank), first + rank)  # skips the row itself
    out = np.empty_like(order)
    out[order] = order[pick]
    return out


def prefix_samples(data: SeqData, rng: np.random.Generator, same_target: bool = False) -> Samples:
    """Every prefix of every training sequence (last 50 items) with its next item, shuffled."""
    users, ends = _prefix_rows(data)
    perm = rng.permutation(len(users))
    users, ends = users[perm], ends[perm]
    out = {"users": users, "input_ids": windows(data.flat, data.starts[users], ends), "target_pos": data.flat[ends]}
    if same_target:
        out["view_1"] = out["input_ids"][_same_target(out["target_pos"], rng)]
    return out


def cloze_samples(data: SeqData, rng: np.random.Generator, mask_prob: float, copies: int = 1,
                  mask_last: bool = False) -> Samples:
    """The training part items[:-2] of each user (last 50): `copies` copies of each with every item
    masked with probability mask_prob (the last one when none was) and, with `mask_last`, one more
    copy whose last item alone is masked; all shuffled together. Masked positions hold the mask
    token (item_size - 1) in the input and the item in the target; other targets are 0."""
    n = data.n_users
    perm = rng.permutation(n * (copies + int(mask_last)))
    users, last_only = perm % n, perm >= n * copies  # (N,), (N,)
    seqs = windows(data.flat, data.starts[users], data.ends[users] - 2)  # (N, L)
    mask = (rng.random(seqs.shape) < mask_prob) & (seqs > 0) & ~last_only[:, None]
    mask[:, -1] |= ~mask.any(1)  # every sequence has at least one item (three or more per user)
    inputs = np.where(mask, data.item_size - 1, seqs)
    return {"users": users, "input_ids": inputs, "target_pos": np.where(mask, seqs, 0)}


def pair_samples(data: SeqData, rng: np.random.Generator) -> Samples:
    """(user, item) for every training item (all but each user's last two), shuffled, with one
    uniform negative the user never interacted with."""
    idx = concat_ranges(data.starts, data.ends - 2)
    users = np.repeat(np.arange(data.n_users, dtype=np.int64), data.ends - 2 - data.starts)
    perm = rng.permutation(len(idx))
    users, items = users[perm], data.flat[idx[perm]]
    neg = sample_negatives(data, users, (len(users), 1), rng, data.item_size)[:, 0]
    return {"users": users, "target_pos": items, "target_neg": neg}


def _segments(windows_: np.ndarray, long: np.ndarray, mask_id: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """S3-Rec's segment task on right-aligned windows (S, L): a random segment of 1..n // 2 items
    (rows of one item: none) is masked in view_1, kept alone in view_2 (mask tokens elsewhere) and
    replaced by a random stretch of `long` (the training items of all users) in view_neg."""
    s, w = windows_.shape
    n = (windows_ > 0).sum(1)
    size = np.where(n >= 2, 1 + (rng.random(s) * (n // 2)).astype(np.int64), 0)
    start = (rng.random(s) * (n - size + 1)).astype(np.int64)
    neg_start = (rng.random(s) * (len(long) - size + 1)).astype(np.int64)
    pos = np.arange(w)[None] - (w - n)[:, None]  # index in the sequence, < 0 on padding
    inside = (pos >= start[:, None]) & (pos < (start + size)[:, None])
    real = pos >= 0
    neg_items = long[np.clip(neg_start[:, None] + pos - start[:, None], 0, len(long) - 1)]
    one = (n < 2)[:, None]  # the reference keeps such a sequence as it is in all three views
    masked = np.where(one, windows_, np.where(inside, mask_id, windows_))
    keep = np.where(one, windows_, np.where(inside, windows_, np.where(real, mask_id, 0)))
    neg = np.where(one, windows_, np.where(inside, neg_items, np.where(real, mask_id, 0)))
    return {"view_1": masked, "view_2": keep, "view_neg": neg}


def segment_samples(data: SeqData, rng: np.random.Generator, mask_prob: float) -> Samples:
    """S3-Rec pre-training (`PretrainDataset`): every prefix of each user's items[:-2] (last 50),
    each item masked with probability mask_prob (input_ids; target_pos: the items), one negative
    per position the user never interacted with (target_neg), and the segment views."""
    n = np.maximum(data.ends - 2 - data.starts, 0)
    users = np.repeat(np.arange(data.n_users, dtype=np.int64), n)
    ends = data.starts[users] + np.arange(int(n.sum()), dtype=np.int64) - np.repeat(np.cumsum(n) - n, n) + 1
    perm = rng.permutation(len(users))
    users, ends = users[perm], ends[perm]
    seqs = windows(data.flat, data.starts[users], ends)
    mask_id = data.item_size - 1
    masked = np.where((rng.random(seqs.shape) < mask_prob) & (seqs > 0), mask_id, seqs)
    neg = np.where(seqs > 0, sample_negatives(data, users, seqs.shape, rng, data.item_size), 0)
    long = data.flat[concat_ranges(data.starts, data.ends - 2)]
    return {"users": users, "input_ids": masked, "target_pos": seqs, "target_neg": neg,
            **_segments(seqs, long, mask_id, rng)}


BUILDERS: dict[str, Callable[..., Samples]] = {
    "sequence": lambda data, rng: epoch_batches(data, rng).arrays(),
    "prefixes": prefix_samples,
    "cloze": cloze_samples,
    "pairs": pair_samples,
    "segments": segment_samples,
}


def training_samples(regime: str, data: SeqData, rng: np.random.Generator, options: dict[str, Any]) -> Samples:
    """One epoch of the regime's samples; options are the model's (`RecModel.sample_options`)."""
    if regime not in BUILDERS:
        raise ValueError(f"unknown training-sample regime {regime!r}; known: {', '.join(BUILDERS)}")
    return BUILDERS[regime](data, rng, **options)
