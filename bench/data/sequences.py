"""User sequences in CSR form and the vectorised index helpers of the leave-one-out protocol. No torch."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

MAX_LEN = 50  # the authors' maximum sequence length


def concat_ranges(starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Indices of [starts[u], ends[u]) for every u, concatenated (vectorised)."""
    lengths = np.maximum(ends - starts, 0)
    offsets = np.repeat(np.cumsum(lengths) - lengths, lengths)
    return np.repeat(starts, lengths) + np.arange(lengths.sum()) - offsets


def train_counts(data: SeqData) -> np.ndarray:
    """Interaction counts of every item over the training part (all but each user's last two items)."""
    return np.bincount(data.flat[concat_ranges(data.starts, data.ends - 2)], minlength=data.item_size)


def windows(flat: np.ndarray, start: np.ndarray, end: np.ndarray, length: int = MAX_LEN) -> np.ndarray:
    """Left-padded windows: row u holds the last `length` items of flat[start[u]:end[u]]."""
    idx = end[:, None] - length + np.arange(length)[None]  # (U, L)
    valid = idx >= start[:, None]
    return np.where(valid, flat[np.clip(idx, 0, None)], 0)


@dataclass(frozen=True)
class SeqData:
    """All user sequences of one dataset in CSR form (user u: flat[offsets[u]:offsets[u+1]])."""

    name: str
    sha256: str
    flat: np.ndarray  # (N,) int64 item ids
    offsets: np.ndarray  # (U+1,) int64
    labels: np.ndarray | None = None  # (U,) planted intent of each user (synthetic only)

    @staticmethod
    def from_sequences(name: str, sha: str, seqs: list[np.ndarray], labels: np.ndarray | None = None) -> SeqData:
        offsets = np.zeros(len(seqs) + 1, dtype=np.int64)
        offsets[1:] = np.cumsum([len(s) for s in seqs])
        return SeqData(name, sha, np.concatenate(seqs).astype(np.int64), offsets, labels)

    @property
    def n_users(self) -> int:
        return len(self.offsets) - 1

    @cached_property
    def max_item(self) -> int:
        return int(self.flat.max())

    @property
    def item_size(self) -> int:
        """Embedding rows: ids 0 (padding) .. max_item, plus the authors' mask token."""
        return self.max_item + 2

    @property
    def starts(self) -> np.ndarray:
        return self.offsets[:-1]

    @property
    def ends(self) -> np.ndarray:
        return self.offsets[1:]

    def eval_split(self, stage: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Leave-one-out: (inputs (U, 50), targets (U,), history end (U,)) for "valid" or "test".

        test: target = last item, input and seen items = all before it; valid: the same one step
        earlier. The seen items of user u are flat[starts[u]:history_end[u]].
        """
        if stage not in ("valid", "test"):
            raise ValueError(stage)
        hist_end = self.ends - (1 if stage == "test" else 2)
        return windows(self.flat, self.starts, hist_end), self.flat[hist_end], hist_end

    def train_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """Training sequences: items except the last three, as (start, end) into `flat`."""
        return self.starts, self.ends - 3

    def stats(self) -> dict[str, int]:
        return {"users": self.n_users, "items": self.max_item, "interactions": len(self.flat)}
