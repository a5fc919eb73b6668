"""`python -m bench gate`: fail CI on significant regressions, never on noise. No torch.

For every (model, dataset) in the baseline:
- quality fails only when a one-sided paired t-test over users (per-user metric averaged over
  seeds) finds a drop significantly larger than `--max-quality-drop` (relative to the baseline);
- cost fails only when a one-sided Mann-Whitney test finds the current epoch times significantly
  above `--max-cost-ratio` x the baseline's.
A drop or slowdown beyond the limit that is not significant is inconclusive. Different protocol
fingerprints make quality inconclusive; a different machine is warned about.
Exit codes: 0 pass, 1 regression, 2 usage error, 3 inconclusive.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench import stats
from bench.config import from_namespace, opt
from bench.errors import BenchError
from bench.frame import epoch_times, load_frame, per_user_matrix
from bench.records import RECORDS_FILE, read_records

PASS, FAIL, INCONCLUSIVE = "pass", "REGRESSION", "inconclusive"


@dataclass(frozen=True)
class GateConfig:
    baseline: Path = opt(help="baseline records folder (or file)")
    current: Path = opt(help="current records folder (or file)")
    max_quality_drop: float = opt(0.05, help="tolerated relative drop of the metric (0.05 = 5%)")
    max_cost_ratio: float = opt(1.5, help="tolerated ratio of current to baseline epoch time")
    alpha: float = opt(0.05, help="significance level of both tests")
    metric: str = opt("NDCG@10", help="quality metric (per-user arrays are compared)")
    update_baseline: bool = opt(False, help="replace the baseline by the current records, then exit 0")


@dataclass(frozen=True)
class Check:
    outcome: str
    sentence: str


def _judged(head: str, p: float, alpha: float, over_limit: bool, fail: str, ok: str) -> Check:
    """Regression only when significant; beyond the limit but not significant is inconclusive."""
    if p < alpha:
        return Check(FAIL, f"{head}; {fail} (p = {p:.2g}).")
    return Check(INCONCLUSIVE if over_limit else PASS, f"{head}; {ok} (p = {p:.2g}).")


def quality_check(name: str, base: pd.DataFrame, cur: pd.DataFrame, cfg: GateConfig) -> Check:
    b = per_user_matrix(base, cfg.metric).mean(0)
    c = per_user_matrix(cur, cfg.metric).mean(0)
    if b.shape != c.shape:
        return Check(INCONCLUSIVE, f"{name} {cfg.metric}: baseline has {len(b)} users, current {len(c)}: "
                                   "not comparable.")
    mb, mc = float(b.mean()), float(c.mean())
    drop = (mb - mc) / mb if mb else 0.0
    # H1: mean(b - c) > D * mean(b), i.e. the drop exceeds the tolerated one
    p = stats.paired_t(b - c - cfg.max_quality_drop * mb, np.zeros_like(b), "greater").p_value
    head = (f"{name} {cfg.metric}: baseline {mb:.4f}, current {mc:.4f} (drop {100 * drop:.1f}%, "
            f"limit {100 * cfg.max_quality_drop:.1f}%)")
    return _judged(head, p, cfg.alpha, drop > cfg.max_quality_drop, "the drop is significantly beyond the limit",
                   "no drop significantly beyond the limit")


def cost_check(name: str, base: pd.DataFrame, cur: pd.DataFrame, cfg: GateConfig) -> Check:
    x = np.concatenate([epoch_times(r) for r in base["record"]] or [np.zeros(0)])
    y = np.concatenate([epoch_times(r) for r in cur["record"]] or [np.zeros(0)])
    if len(x) == 0 or len(y) == 0:
        return Check(PASS, f"{name} cost: no epoch times (eval records): nothing to compare.")
    ratio = float(np.median(y) / np.median(x))
    p = stats.mann_whitney(y, cfg.max_cost_ratio * x, "greater").p_value
    head = (f"{name} epoch time: baseline median {np.median(x):.2f} s, current {np.median(y):.2f} s "
            f"(ratio {ratio:.2f}, limit {cfg.max_cost_ratio:.2f})")
    test = "by a Mann-Whitney test"
    return _judged(head, p, cfg.alpha, ratio > cfg.max_cost_ratio, f"significantly slower than the limit {test}",
                   f"not significantly slower than the limit {test}")


def _values(df: pd.DataFrame, column: str) -> set[Any]:
    """The distinct known values of a column (none where the frame lacks it: no records); whole floats
    as ints (pandas turns an int column with a missing value into floats)."""
    if column not in df:
        return set()
    return {int(v) if isinstance(v, float) and v.is_integer() else v for v in df[column].dropna()}


def run_checks(cfg: GateConfig) -> tuple[list[Check], list[str]]:
    base, cur = load_frame([cfg.baseline]), load_frame([cfg.current])
    if base.empty:
        raise BenchError(f"{cfg.baseline}: no baseline records")
    checks, warnings = [], []
    if _values(base, "machine") != _values(cur, "machine"):
        warnings.append(f"the baseline ran on {sorted(_values(base, 'machine'))}, the current records on "
                        f"{sorted(_values(cur, 'machine'))}: cost comparisons are across machines")
    if _values(base, "threads") != _values(cur, "threads"):
        warnings.append(f"the baseline ran with {sorted(_values(base, 'threads'))} torch threads per run, the current "
                        f"records with {sorted(_values(cur, 'threads'))}: costs differ, and CPU metrics are not "
                        "bit-comparable (some float sums follow the thread count)")
    if _values(base, "kernels") != _values(cur, "kernels"):
        warnings.append(f"the baseline's training passes ran {sorted(_values(base, 'kernels'))} kernels, the current "
                        f"records' {sorted(_values(cur, 'kernels'))}: costs differ, and CPU metrics are not "
                        "bit-comparable (float sums in another order)")
    for (model, dataset), b in base[base.status == "ok"].groupby(["model", "dataset"]):
        name = f"{model}/{dataset}"
        c_all = cur[(cur.model == model) & (cur.dataset == dataset)]
        c = c_all[c_all.status == "ok"]
        if c.empty:
            why = "; ".join(str(r) for r in c_all.reason.dropna()) or "no current record"
            checks.append(Check(FAIL if len(c_all) else INCONCLUSIVE, f"{name}: no finished current run ({why})."))
            continue
        if set(b.protocol) != set(c.protocol):
            warnings.append(f"{name}: protocol fingerprint {sorted(set(c.protocol))} differs from the baseline's "
                            f"{sorted(set(b.protocol))}")
            checks.append(Check(INCONCLUSIVE, f"{name}: different evaluation protocols: quality not compared."))
        else:
            checks.append(quality_check(name, b, c, cfg))
        checks.append(cost_check(name, b, c, cfg))
    return checks, warnings


def update_baseline(cfg: GateConfig) -> None:
    """Replaces the baseline folder by a copy of the current records and their sidecars."""
    recs = read_records([cfg.current])
    if not recs:
        raise BenchError(f"{cfg.current}: no records to make a baseline of")
    target = cfg.baseline
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
    lines = []
    for rec in recs:
        src_dir = Path(rec.pop("_dir"))
        if rec.get("per_user_file"):
            (tmp / rec["per_user_file"]).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src_dir / rec["per_user_file"], tmp / rec["per_user_file"])
        lines.append(json.dumps(rec, sort_keys=True))
    (tmp / RECORDS_FILE).write_text("\n".join(lines) + "\n")
    if target.exists():
        old = target.with_name(f".{target.name}.old")
        os.replace(target, old)
        os.replace(tmp, target)
        shutil.rmtree(old)
    else:
        os.replace(tmp, target)


def cmd_gate(ns: argparse.Namespace) -> int:
    cfg = from_namespace(GateConfig, ns)
    if cfg.update_baseline:
        update_baseline(cfg)
        print(f"baseline {cfg.baseline} replaced by the records of {cfg.current}")
        return 0
    checks, warnings = run_checks(cfg)
    for w in warnings:
        print(f"warning: {w}")
    for ch in checks:
        print(f"[{ch.outcome}] {ch.sentence}")
    outcomes = {ch.outcome for ch in checks}
    code = 1 if FAIL in outcomes else 3 if INCONCLUSIVE in outcomes else 0
    print({0: "gate: pass", 1: "gate: regression", 3: "gate: inconclusive"}[code])
    return code

