"""Declarative claims (TOML) and their verdicts, from records only. No torch.

A claim: subject model, reference (a model, or "runner-up": the best other model on the claim's
metric), dataset, metric, direction, claimed relative size, minimum seeds, source. The effect is
measured in the claimed direction (positive = as claimed); its CI decides:

- REPRODUCED: the CI excludes zero and its far end reaches the claimed size;
- PARTIAL: the CI excludes zero but lies wholly short of the claimed size;
- NOT REPRODUCED: the CI lies wholly short of the claimed size and includes zero, or the effect
  is significant the other way;
- INCONCLUSIVE: too few seeds, or the CI includes both zero and the claimed size.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from bench import stats
from bench.errors import BenchError
from bench.frame import best_valid, epoch_times, per_user_matrix, time_to_target

COST_METRICS = ("epoch_time", "train_time", "time_to_target", "gpu_memory")
DEFAULT_CLAIMS = Path(__file__).parent / "claims" / "elcrec.toml"


@dataclass(frozen=True)
class Claim:
    id: str
    subject: str
    reference: str
    dataset: str
    metric: str
    direction: str
    claimed: float
    source: str
    min_seeds: int = 3
    kind: str = "quality"
    protocol_epochs: int = 300  # a training run cut by a smaller epoch budget is not the paper's protocol


@dataclass
class Verdict:
    claim: Claim
    reference: str
    verdict: str
    reason: str
    estimate: float = math.nan
    low: float = math.nan
    high: float = math.nan
    p_value: float = math.nan
    test: str = ""
    n: str = ""
    diffs: np.ndarray | None = field(default=None, repr=False)  # per-user differences, for plots


def load_claims(path: Path) -> list[Claim]:
    try:
        raw = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise BenchError(f"{path}: cannot read claims ({e})") from None
    claims = []
    for i, c in enumerate(raw.get("claim", []), 1):
        try:
            claim = Claim(**c)
        except TypeError as e:
            raise BenchError(f"{path}: claim {i}: {e}") from None
        if claim.direction not in ("higher", "lower") or claim.kind not in ("quality", "cost"):
            raise BenchError(f"{path}: claim {claim.id}: direction must be higher|lower, kind quality|cost")
        if claim.kind == "cost" and claim.metric not in COST_METRICS:
            raise BenchError(f"{path}: claim {claim.id}: cost metric must be one of {', '.join(COST_METRICS)}")
        claims.append(claim)
    return claims


def decide(low: float, high: float, claimed: float) -> tuple[str, str]:
    """Verdict and reason from the CI [low, high] of the effect in the claimed direction."""
    if high < 0:
        return "NOT REPRODUCED", "the effect is significant in the other direction"
    if low > 0:
        if high >= claimed:
            return "REPRODUCED", "the CI excludes zero and reaches the claimed size"
        return "PARTIAL", "the CI excludes zero but lies wholly short of the claimed size"
    if high < claimed:
        return "NOT REPRODUCED", "the CI includes zero and lies wholly short of the claimed size"
    return "INCONCLUSIVE", "the CI includes both zero and the claimed size"


def _reference(claim: Claim, ok: pd.DataFrame) -> str | None:
    if claim.reference != "runner-up":
        return claim.reference
    metric = claim.metric if claim.kind == "quality" else "NDCG@10"
    others = ok[ok.model != claim.subject].groupby("model")[metric].mean()
    if others.empty:
        return None
    return str(others.idxmax() if claim.direction == "higher" or claim.kind == "cost" else others.idxmin())


def judge(claim: Claim, ok: pd.DataFrame, n_boot: int = 2000, seed: int = 0, alpha: float = 0.05) -> Verdict:
    """The verdict of one claim on the ok records of one dataset and protocol."""
    ref = _reference(claim, ok)
    subj = ok[ok.model == claim.subject]
    refs = ok[ok.model == ref] if ref else ok.iloc[:0]
    if subj.empty or refs.empty:
        missing = claim.subject if subj.empty else (ref or "a reference model")
        return Verdict(claim, ref or "-", "INCONCLUSIVE", f"no records of {missing}")
    if claim.kind == "quality":
        return _judge_quality(claim, ref or "", subj, refs, n_boot, seed, alpha)
    return _judge_cost(claim, ref or "", subj, refs, n_boot, seed, alpha)


def _judge_quality(claim: Claim, ref: str, subj: pd.DataFrame, refs: pd.DataFrame, n_boot: int, seed: int,
                   alpha: float) -> Verdict:
    s, r = per_user_matrix(subj, claim.metric), per_user_matrix(refs, claim.metric)
    sign = 1.0 if claim.direction == "higher" else -1.0
    point, lo, hi = stats.hierarchical_bootstrap_ci(s, r, n_boot, seed, alpha)
    est = sign * point
    lo, hi = sorted((sign * lo, sign * hi))
    n_seeds = min(len(s), len(r))
    diffs = s.mean(0) - r.mean(0)
    v = Verdict(claim, ref, "", "", est, lo, hi, n=f"{len(s)}+{len(r)} seeds x {s.shape[1]} users", diffs=diffs)
    cut = _cut_short(claim, subj, refs)
    if n_seeds == 1:
        res = stats.paired_t(s[0], r[0])
        v.p_value, v.test = res.p_value, "paired t-test over users (one seed)"
        v.verdict, why = decide(lo, hi, claim.claimed)
        v.reason = f"{why}; rests on one seed per model (per-user test)"
        if cut:
            v.verdict, v.reason = "INCONCLUSIVE", cut
        return v
    common = sorted(set(subj.seed) & set(refs.seed))
    if len(common) >= 2:
        means = [np.array([df[df.seed == x][claim.metric].mean() for x in common]) for df in (subj, refs)]
        res = stats.paired_t(means[0], means[1])
        v.p_value, v.test = res.p_value, f"paired t-test over {len(common)} seed means"
    if n_seeds < claim.min_seeds or cut:
        v.verdict, v.reason = "INCONCLUSIVE", cut or f"too few seeds ({n_seeds} < {claim.min_seeds})"
        return v
    v.verdict, v.reason = decide(lo, hi, claim.claimed)
    return v


def _cut_short(claim: Claim, *frames: pd.DataFrame) -> str:
    """Why the training runs are not the paper's protocol ("" if they are, or are checkpoints)."""
    for df in frames:
        for rec in df["record"]:
            budget = (rec.get("train_config") or {}).get("epochs", claim.protocol_epochs)
            if rec.get("kind") == "run" and rec.get("stop_reason") == "max_epochs" and budget < claim.protocol_epochs:
                return (f"{rec['model']} was trained for {rec.get('epochs_run')} epochs and stopped by the epoch "
                        f"budget, not by early stopping: not the paper's protocol ({claim.protocol_epochs} epochs)")
    return ""


def _cost_groups(claim: Claim, rows: pd.DataFrame, target: float) -> list[np.ndarray]:
    groups = []
    for rec in rows["record"]:
        if claim.metric == "epoch_time":
            g = epoch_times(rec)
        elif claim.metric == "train_time":
            g = np.array([(rec.get("timing") or {}).get("train_total_s", np.nan)])
        elif claim.metric == "time_to_target":
            g = np.array([time_to_target(rec, target)])
        else:
            gpu = ((rec.get("memory") or {}).get("gpu_peak_by_phase") or {}).values()
            g = np.array([max((p["reserved"] for p in gpu), default=np.nan) / 2**20])
        if len(g) and np.all(np.isfinite(g)):
            groups.append(g)
    return groups


def _judge_cost(claim: Claim, ref: str, subj: pd.DataFrame, refs: pd.DataFrame, n_boot: int, seed: int,
                alpha: float) -> Verdict:
    bests = [b for b in (best_valid(r) for r in refs["record"]) if not np.isnan(b)]
    target = float(np.mean(bests)) if bests else float("nan")
    s, r = _cost_groups(claim, subj, target), _cost_groups(claim, refs, target)
    if not bests:
        return Verdict(claim, ref, "INCONCLUSIVE", "no training records (eval records carry no cost)")
    if not s or not r:
        why = {"gpu_memory": "no GPU measurements (CPU runs)", "time_to_target": "the subject never reached the "
               f"reference's best validation NDCG@20 ({target:.4f})"}.get(claim.metric, "no cost measurements")
        return Verdict(claim, ref, "INCONCLUSIVE", why)
    point, lo, hi = stats.bootstrap_ratio_ci(s, r, n_boot, seed, alpha)
    v = Verdict(claim, ref, "", "", -point, -hi, -lo, n=f"{len(s)}+{len(r)} runs, {sum(map(len, s + r))} values")
    res = stats.mann_whitney(np.concatenate(s), np.concatenate(r))
    v.p_value, v.test = res.p_value, res.name
    if min(len(s), len(r)) < claim.min_seeds:
        v.verdict, v.reason = "INCONCLUSIVE", f"too few runs ({min(len(s), len(r))} < {claim.min_seeds})"
    else:
        v.verdict, v.reason = decide(v.low, v.high, claim.claimed)
    return v
