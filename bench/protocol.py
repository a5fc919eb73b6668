"""The evaluation protocol fingerprint: results of different protocols are never compared silently.

Pure Python (no torch): records, reports and gates use it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

SEEN_RULES = ("zero", "exclude")
CUTOFFS = (5, 10, 20)


@dataclass(frozen=True)
class Protocol:
    dataset: str
    dataset_sha256: str
    seen_items: str = "zero"  # "zero": the authors' rule (seen scores set to 0); "exclude": -inf
    split: str = "leave-one-out (valid = 2nd last, test = last item)"
    candidates: str = "all item ids 0..item_size-1 (padding and mask ids included)"
    ties: str = "pessimistic (rank = number of items scoring >= the target)"
    cutoffs: tuple[int, ...] = CUTOFFS
    max_len: int = 50

    def as_dict(self) -> dict[str, object]:
        d = asdict(self)
        d["cutoffs"] = list(self.cutoffs)
        d["hash"] = self.hash()
        return d

    def hash(self) -> str:
        d = asdict(self)
        d["cutoffs"] = list(self.cutoffs)
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]

#: the phases of a training epoch whose wall time every run record carries
PHASES = ("batches", "clustering", "train", "validation")
