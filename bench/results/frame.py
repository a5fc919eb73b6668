"""Records as a pandas DataFrame, and the per-run arrays reports need. No torch.

    >>> from bench.results.frame import load_frame
    >>> df = load_frame(["runs/latest"])          # one row per record
    >>> df[df.status == "ok"].groupby("model")["NDCG@10"].mean()
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.metrics import METRIC_NAMES
from bench.results.records import load_per_user, read_records
from bench.results.schema import (
    Attempt,
    CostRecord,
    CurvePoint,
    Device,
    Evaluated,
    FailureRecord,
    Measured,
    Memory,
    Record,
    RecordedProtocol,
    RunRecord,
    Timing,
)
from bench.spec import PROFILES

COST_COLUMNS = ("epoch_mean_s", "train_total_s", "time_to_best_s", "peak_rss_mb", "peak_gpu_mb")


def _row(rec: Record) -> dict[str, Any]:
    """One record as flat columns; a part the record's kind lacks reads as an empty one."""
    run = rec if isinstance(rec, RunRecord) else None
    timing = run.timing if run else Timing()
    memory = rec.memory if isinstance(rec, Measured) else Memory()
    dev = rec.device if isinstance(rec, Measured) else Device()
    proto = rec.protocol if isinstance(rec, Evaluated) else RecordedProtocol()
    gpu = memory.gpu_peak_by_phase
    row = {
        "id": rec.id, "kind": rec.kind, "status": rec.status, "model": variant(rec), "base_model": rec.model,
        "dataset": rec.dataset, "seed": rec.seed, "reason": rec.reason if isinstance(rec, FailureRecord) else None,
        "protocol": proto.hash, "seen_items": proto.seen_items, "dataset_sha256": proto.dataset_sha256,
        "config_hash": rec.config_hash if isinstance(rec, Attempt | CostRecord) else None,
        "epochs_run": run.epochs_run if run else None, "stop_reason": run.stop_reason if run else None,
        "epoch_mean_s": timing.epoch_mean_s, "train_total_s": timing.train_total_s,
        "time_to_best_s": timing.time_to_best_s, "peak_rss_mb": memory.peak_rss_mb,
        "peak_gpu_mb": max((v["reserved"] for v in gpu.values()), default=np.nan) / 2**20 if gpu else np.nan,
        "host": rec.provenance.host, "machine": _machine(rec.provenance.machine, rec.provenance.cpu_count, dev),
        "threads": dev.torch_threads, "kernels": dev.kernels, "record": rec,
    }
    metrics = rec.metrics if isinstance(rec, Evaluated) else {}
    row.update({m: metrics.get(m, np.nan) for m in METRIC_NAMES})
    return row


# a profile's own training settings, (key, value): the smoke profile's batch size 64
PROFILE_SETTINGS = {(k, json.dumps(v)) for prof in PROFILES.values() for k, v in prof.train.items()}


def variant(rec: Record) -> str:
    """The model as the report names it: its registry name when it ran with the dataset's preset,
    else the name with the settings that differ, e.g. "sasrec_ce[prefixes=true]" or "elcrec[k=64]".
    Runs of one model under different settings are different models to compare, never seeds of one
    (a claim about "elcrec" is a claim about its preset). Epochs, patience and a profile's own
    training settings (the smoke profile's batch size) are the protocol's."""
    from bench.presets import preset  # a dict of settings, no torch

    spec = rec.config if isinstance(rec, Attempt) else {}
    if not isinstance(spec.get("hp"), dict):
        return str(rec.model)
    base = preset(str(rec.dataset), str(rec.model))
    diff = {k: v for k, v in spec["hp"].items() if k not in base or base[k] != v}
    protocol = [(k, v) for k, v in (spec.get("train") or {}).items()
                if k in ("epochs", "patience") or (k, json.dumps(v)) in PROFILE_SETTINGS]
    diff.update({k: v for k, v in (spec.get("train") or {}).items() if (k, v) not in protocol})
    if not diff:
        return str(rec.model)
    text = {k: v if isinstance(v, str) else json.dumps(v) for k, v in diff.items()}  # init=random, prefixes=true
    return f"{rec.model}[{','.join(f'{k}={v}' for k, v in sorted(text.items()))}]"


def _machine(machine: str | None, cpus: int | None, dev: Device) -> str:
    return f"{machine}/{cpus} cpus/{dev.type or 'cpu'}:{dev.name or ''}"


def load_frame(paths: Sequence[str | Path]) -> pd.DataFrame:
    """One row per record of the given record files or folders (failed runs included); the typed
    record itself is in the `record` column."""
    recs = read_records([Path(p) for p in paths])
    df = pd.DataFrame([_row(r) for r in recs])
    if df.empty:
        return pd.DataFrame(columns=["id", "kind", "status", "model", "dataset", "seed", "protocol", "record"])
    df["seed"] = df["seed"].fillna(0).astype(int)
    return df


def per_user_matrix(rows: pd.DataFrame, metric: str) -> np.ndarray:
    """(runs, users) per-user values of `metric`, one row per record, in seed order."""
    rows = rows.sort_values("seed")
    return np.stack([load_per_user(r)[metric] for r in rows["record"]])


def curve(rec: Record) -> tuple[CurvePoint, ...]:
    """A training run's validation curve; none for the other kinds (an eval record has no training)."""
    return rec.curve if isinstance(rec, RunRecord) else ()


def epoch_times(rec: Record) -> np.ndarray:
    """Per-epoch wall seconds (all phases) of a run record."""
    return np.array([sum(c.seconds.values()) for c in curve(rec)], dtype=np.float64)


def time_to_target(rec: Record, target: float) -> float:
    """Training wall time until validation NDCG@20 first reaches `target` (nan if never)."""
    for c in curve(rec):
        if c.valid["NDCG@20"] >= target:
            return float(c.elapsed)
    return float("nan")


def best_valid(rec: Record) -> float:
    return max((c.valid["NDCG@20"] for c in curve(rec)), default=float("nan"))
