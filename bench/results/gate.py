"""`python -m bench gate`: fail CI on significant regressions, never on noise. No torch.

For every (model, dataset) in the baseline:
- quality fails only when a one-sided test on seed means (`stats.seed_ratio`: Welch's t over
  seeds plus the per-user variance the seeds share) finds the current mean significantly below
  (1 - `--max-quality-drop`) x the baseline's;
- cost fails only when a one-sided Welch t on the logs of run-level mean epoch times finds the
  current runs significantly slower than `--max-cost-ratio` x the baseline's (runs, not epochs,
  are the unit: a machine's speed drifts between runs; interleave the runs of the two sides).
Each side needs `--min-seeds` seeds (runs); with fewer nothing is tested and nothing fails: a
drop or slowdown beyond the limit is then inconclusive. The p-values of all tested checks are
Holm-corrected together, so the gate's overall false-failure rate is at most `--alpha`
(docs/statistics.md has its calibration). Different protocol fingerprints make quality
inconclusive; a different machine is warned about.
Exit codes: 0 pass, 1 regression, 2 usage error, 3 inconclusive.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.config import from_namespace, opt
from bench.errors import BenchError
from bench.results import stats
from bench.results.frame import epoch_times, load_frame, per_user_matrix
from bench.results.records import read_records, save_copies

PASS, FAIL, INCONCLUSIVE = "pass", "REGRESSION", "inconclusive"


@dataclass(frozen=True)
class GateConfig:
    baseline: Path = opt(help="baseline records folder (or file)")
    current: Path = opt(help="current records folder (or file)")
    max_quality_drop: float = opt(0.05, help="tolerated relative drop of the metric (0.05 = 5%)")
    max_cost_ratio: float = opt(1.5, help="tolerated ratio of current to baseline epoch time")
    alpha: float = opt(0.05, help="overall false-failure rate (Holm over all tested checks)")
    min_seeds: int = opt(3, help="seeds (runs) per side below which nothing is tested or fails")
    metric: str = opt("NDCG@10", help="quality metric (per-user arrays are compared)")
    update_baseline: bool = opt(False, help="replace the baseline by the current records, then exit 0")


@dataclass(frozen=True)
class Check:
    outcome: str
    sentence: str
    p: float = math.nan  # raw p-value of a test still to be Holm-corrected; nan: settled already
    over_limit: bool = False
    fail: str = ""
    ok: str = ""


def _judged(ch: Check, p_adj: float, alpha: float) -> Check:
    """Regression only when significant after Holm; beyond the limit but not significant is inconclusive."""
    ps = f"p = {ch.p:.2g}, Holm-adjusted {p_adj:.2g}"
    if p_adj < alpha:
        return Check(FAIL, f"{ch.sentence}; {ch.fail} ({ps}).")
    return Check(INCONCLUSIVE if ch.over_limit else PASS, f"{ch.sentence}; {ch.ok} ({ps}).")


def _untested(head: str, over_limit: bool, n: int, cfg: GateConfig) -> Check:
    why = f"not tested: {n} seed(s) (run(s)) on a side, fewer than {cfg.min_seeds}"
    return Check(INCONCLUSIVE if over_limit else PASS, f"{head}; {why}.")


def quality_p(base: np.ndarray, cur: np.ndarray, max_drop: float) -> tuple[float, stats.LogRatio]:
    """One-sided p of H0: mean(cur) >= (1 - max_drop) mean(base), on (seeds, users) arrays, seeds the unit."""
    est = stats.seed_ratio(cur, base)
    return est.p_below(1 - max_drop), est


def cost_p(base: list[np.ndarray], cur: list[np.ndarray], max_ratio: float) -> tuple[float, stats.LogRatio]:
    """One-sided p of H0: current runs are at most `max_ratio` x slower (Welch on log run means)."""
    est = stats.run_ratio(cur, base)
    return est.p_above(max_ratio), est


def quality_check(name: str, base: pd.DataFrame, cur: pd.DataFrame, cfg: GateConfig) -> Check:
    b, c = per_user_matrix(base, cfg.metric), per_user_matrix(cur, cfg.metric)
    if b.shape[1] != c.shape[1]:
        return Check(INCONCLUSIVE, f"{name} {cfg.metric}: baseline has {b.shape[1]} users, current {c.shape[1]}: "
                                   "not comparable.")
    mb, mc = float(b.mean()), float(c.mean())
    drop = (mb - mc) / mb if mb else 0.0
    head = (f"{name} {cfg.metric}: baseline {mb:.4f}, current {mc:.4f} (drop {100 * drop:.1f}%, "
            f"limit {100 * cfg.max_quality_drop:.1f}%, {len(b)}+{len(c)} seeds)")
    over = drop > cfg.max_quality_drop
    if min(len(b), len(c)) < max(cfg.min_seeds, 2):
        return _untested(head, over, min(len(b), len(c)), cfg)
    p, _ = quality_p(b, c, cfg.max_quality_drop)
    return Check(PASS, head, p, over, "the drop is significantly beyond the limit (seed means)",
                 "no drop significantly beyond the limit (seed means)")


def cost_check(name: str, base: pd.DataFrame, cur: pd.DataFrame, cfg: GateConfig) -> Check:
    x = [t for t in (epoch_times(r) for r in base["record"]) if len(t)]
    y = [t for t in (epoch_times(r) for r in cur["record"]) if len(t)]
    if not x or not y:
        return Check(PASS, f"{name} cost: no epoch times (eval records): nothing to compare.")
    mx, my = float(np.mean([t.mean() for t in x])), float(np.mean([t.mean() for t in y]))
    ratio = my / mx
    head = (f"{name} epoch time: baseline {mx:.2f} s, current {my:.2f} s per epoch (mean of run means; ratio "
            f"{ratio:.2f}, limit {cfg.max_cost_ratio:.2f}, {len(x)}+{len(y)} runs)")
    over = ratio > cfg.max_cost_ratio
    if min(len(x), len(y)) < max(cfg.min_seeds, 2):
        return _untested(head, over, min(len(x), len(y)), cfg)
    p, _ = cost_p(x, y, cfg.max_cost_ratio)
    test = "by Welch's t on log run means"
    return Check(PASS, head, p, over, f"significantly slower than the limit {test}",
                 f"not significantly slower than the limit {test}")


def settle(checks: list[Check], alpha: float) -> list[Check]:
    """Holm over the tested checks: the chance that any of them fails falsely is at most alpha."""
    tested = [i for i, ch in enumerate(checks) if not math.isnan(ch.p)]
    adjusted = stats.holm([checks[i].p for i in tested]) if tested else []
    out = list(checks)
    for i, p in zip(tested, adjusted, strict=True):
        out[i] = _judged(checks[i], p, alpha)
    return out


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
        c_all = _counterpart(cur, b, str(model), str(dataset), warnings)
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
    return settle(checks, cfg.alpha), warnings


def _counterpart(cur: pd.DataFrame, b: pd.DataFrame, model: str, dataset: str, warnings: list[str]) -> pd.DataFrame:
    """The current records of a baseline model: the same model with the same settings, else (a
    changed setting is what a gate is often asked about) the one variant of the same registry model."""
    same = cur[(cur.model == model) & (cur.dataset == dataset)]
    if not same.empty:
        return same
    kin = cur[(cur.base_model == b.base_model.iloc[0]) & (cur.dataset == dataset)]
    if kin.model.nunique() != 1:
        return same
    warnings.append(f"{model}/{dataset}: compared with {kin.model.iloc[0]}: the settings differ")
    return kin


def update_baseline(cfg: GateConfig) -> None:
    """Replaces the baseline folder by a copy of the current records and their sidecars."""
    recs = read_records([cfg.current])
    if not recs:
        raise BenchError(f"{cfg.current}: no records to make a baseline of")
    target = cfg.baseline
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
    save_copies(recs, tmp)
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
    n_tested = sum("Holm-adjusted" in ch.sentence for ch in checks)
    print(f"{n_tested} check(s) tested, Holm-corrected: overall false-failure rate <= {cfg.alpha}")
    outcomes = {ch.outcome for ch in checks}
    code = 1 if FAIL in outcomes else 3 if INCONCLUSIVE in outcomes else 0
    print({0: "gate: pass", 1: "gate: regression", 3: "gate: inconclusive"}[code])
    return code

