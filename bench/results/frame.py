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

COST_COLUMNS = ("epoch_mean_s", "train_total_s", "time_to_best_s", "peak_rss_mb", "peak_gpu_mb")


def _row(rec: dict[str, Any]) -> dict[str, Any]:
    timing, memory = rec.get("timing") or {}, rec.get("memory") or {}
    gpu = memory.get("gpu_peak_by_phase") or {}
    proto = rec.get("protocol") or {}
    row = {
        "id": rec.get("id"), "kind": rec.get("kind"), "status": rec.get("status"), "model": variant(rec),
        "base_model": rec.get("model"),
        "dataset": rec.get("dataset"), "seed": rec.get("seed"), "reason": rec.get("reason"),
        "protocol": proto.get("hash"), "seen_items": proto.get("seen_items"),
        "dataset_sha256": proto.get("dataset_sha256"), "config_hash": rec.get("config_hash"),
        "epochs_run": rec.get("epochs_run"), "stop_reason": rec.get("stop_reason"),
        "epoch_mean_s": timing.get("epoch_mean_s"), "train_total_s": timing.get("train_total_s"),
        "time_to_best_s": timing.get("time_to_best_s"), "peak_rss_mb": memory.get("peak_rss_mb"),
        "peak_gpu_mb": max((v["reserved"] for v in gpu.values()), default=np.nan) / 2**20 if gpu else np.nan,
        "host": (rec.get("provenance") or {}).get("host"),
        "machine": _machine(rec),
        "threads": (rec.get("device") or {}).get("torch_threads"),
        "kernels": (rec.get("device") or {}).get("kernels"),
        "record": rec,
    }
    row.update({m: (rec.get("metrics") or {}).get(m, np.nan) for m in METRIC_NAMES})
    return row


def variant(rec: dict[str, Any]) -> str:
    """The model as the report names it: its registry name when it ran with the dataset's preset,
    else the name with the settings that differ, e.g. "sasrec_ce[prefixes=true]" or "elcrec[k=64]".
    Runs of one model under different settings are different models to compare, never seeds of one
    (a claim about "elcrec" is a claim about its preset). Epochs and patience are the protocol's."""
    from bench.presets import preset  # a dict of settings, no torch

    model, spec = rec.get("model"), rec.get("config")
    if not isinstance(spec, dict) or not isinstance(spec.get("hp"), dict):
        return str(model)
    base = preset(str(rec.get("dataset")), str(model))
    diff = {k: v for k, v in spec["hp"].items() if k not in base or base[k] != v}
    diff.update({k: v for k, v in (spec.get("train") or {}).items() if k not in ("epochs", "patience")})
    if not diff:
        return str(model)
    text = {k: v if isinstance(v, str) else json.dumps(v) for k, v in diff.items()}  # init=random, prefixes=true
    return f"{model}[{','.join(f'{k}={v}' for k, v in sorted(text.items()))}]"


def _machine(rec: dict[str, Any]) -> str:
    prov = rec.get("provenance") or {}
    dev = rec.get("device") or {}
    return f"{prov.get('machine')}/{prov.get('cpu_count')} cpus/{dev.get('type', 'cpu')}:{dev.get('name', '')}"


def load_frame(paths: Sequence[str | Path]) -> pd.DataFrame:
    """One row per record of the given record files or folders (failed runs included)."""
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


def epoch_times(rec: dict[str, Any]) -> np.ndarray:
    """Per-epoch wall seconds (all phases) of a run record."""
    return np.array([sum(c["seconds"].values()) for c in rec.get("curve") or []], dtype=np.float64)


def time_to_target(rec: dict[str, Any], target: float) -> float:
    """Training wall time until validation NDCG@20 first reaches `target` (nan if never)."""
    for c in rec.get("curve") or []:
        if c["valid_NDCG@20"] >= target:
            return float(c["elapsed"])
    return float("nan")


def best_valid(rec: dict[str, Any]) -> float:
    return max((c["valid_NDCG@20"] for c in rec.get("curve") or []), default=float("nan"))
