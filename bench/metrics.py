"""Ranking metrics from per-user ranks (pure numpy, no torch)."""

from __future__ import annotations

import numpy as np

from bench.protocol import CUTOFFS

METRIC_NAMES = (*tuple(f"{m}@{k}" for k in CUTOFFS for m in ("HR", "NDCG")), "MRR")


def per_user_metrics(ranks: np.ndarray, cutoffs: tuple[int, ...] = CUTOFFS) -> dict[str, np.ndarray]:
    """1-based ranks (U,) -> per-user arrays: HR@k (0/1), NDCG@k (1/log2(rank+1) if rank <= k), MRR."""
    ranks = np.asarray(ranks, dtype=np.float64)
    gain = 1.0 / np.log2(ranks + 1.0)
    out: dict[str, np.ndarray] = {}
    for k in cutoffs:
        hit = ranks <= k
        out[f"HR@{k}"] = hit.astype(np.float64)
        out[f"NDCG@{k}"] = np.where(hit, gain, 0.0)
    out["MRR"] = 1.0 / ranks
    return out


def summarise(per_user: dict[str, np.ndarray]) -> dict[str, float]:
    """Means over users, in METRIC_NAMES order where present."""
    return {k: float(np.mean(per_user[k])) for k in METRIC_NAMES if k in per_user}
