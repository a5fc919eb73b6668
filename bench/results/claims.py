"""Declarative claims (TOML) and their verdicts, from records only. No torch.

A claim: subject model, reference model (as the paper names it, or "runner-up": the best other
model in the records with `min_seeds` seeds, better ones with fewer named in the reason), dataset,
metric, direction, claimed relative size, minimum seeds, and where the paper says it (table, cell,
the paper's two numbers). `check` separates the paper's claims from other checks (e.g. the released
checkpoints); `runnable = false` lists a claim this machine cannot judge (no data, no model), with
the reason.

The effect e is measured in the claimed direction (positive = as claimed) with a 95% interval
[lo, hi] whose unit is the seed (`stats.seed_ratio`; cost: the run, `stats.run_ratio`). With c
the claimed size the verdicts are (docs/statistics.md has their calibration):

- REPRODUCED: lo > c/3 and hi >= c: the effect is significantly larger than a third of the
  claim (one-sided test at 2.5%) and the claimed size is inside the interval. A null effect is
  called REPRODUCED at most 2.5% of the time, an effect of a third of the claim at most 2.5%.
- SMALLER THAN CLAIMED: hi < c (and not NOT REPRODUCED): the claimed size is ruled out.
- NOT REPRODUCED: hi < 0 (significantly the other way), or hi < c/3 with lo <= 0 (no effect
  detected, and anything beyond a third of the claim ruled out). A true effect of the claimed
  size is called SMALLER THAN CLAIMED or NOT REPRODUCED at most 2.5% of the time.
- INCONCLUSIVE: the interval holds the claimed size and reaches down to c/3; or too few seeds
  (fewer than `min_seeds` but more than one a side), or runs that are not the paper's protocol.
- THESE SEEDS ONLY (...): one seed (run) on a side: the interval is over users (epochs) and says
  nothing about another seed; the bracket holds what the same rule says of these seeds ("the
  other way" where the interval lies wholly below zero).
The p-value reported is that of the verdict's own test, H0: e <= c/3.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd

from bench.errors import BenchError
from bench.results import stats
from bench.results.frame import best_valid, curve, epoch_times, per_user_matrix, time_to_target
from bench.results.schema import CostRecord, Measured, Record, RunRecord

C = TypeVar("C")
COST_METRICS = ("epoch_time", "train_time", "time_to_target", "gpu_memory")
CHECKS = ("paper", "released-checkpoints", "transfer")
DEFAULT_CLAIMS = Path(__file__).parents[1] / "claims" / "elcrec.toml"
REPRODUCED, SMALLER, NOT_REPRODUCED, INCONCLUSIVE = "REPRODUCED", "SMALLER THAN CLAIMED", "NOT REPRODUCED", \
    "INCONCLUSIVE"
NOT_RUNNABLE = "NOT RUNNABLE"
# what a one-seed result is called, per verdict of the same rule: never a verdict on the models
THESE_SEEDS = {REPRODUCED: "THESE SEEDS ONLY (as large as claimed)", SMALLER: "THESE SEEDS ONLY (smaller than claimed)",
               NOT_REPRODUCED: "THESE SEEDS ONLY (no effect)", INCONCLUSIVE: "THESE SEEDS ONLY (inconclusive)"}
OTHER_WAY = "THESE SEEDS ONLY (the other way)"  # one seed a side, the interval wholly against the claim


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
    check: str = "paper"  # which check the claim belongs to: the paper's own numbers, or another source
    table: str = ""  # where the paper says it, e.g. "Table 1"
    cell: str = ""  # e.g. "Beauty, NDCG@5"
    paper_subject: float = math.nan  # the paper's number for the subject ...
    paper_reference: float = math.nan  # ... and for the reference
    runnable: bool = True
    not_runnable: str = ""  # why not, when runnable = false


@dataclass
class Verdict:
    claim: Claim
    reference: str
    verdict: str
    reason: str
    estimate: float = math.nan
    low: float = math.nan
    high: float = math.nan
    p_value: float = math.nan  # the verdict's own test: H0 effect <= claimed / 3
    p_zero: float = math.nan  # two-sided, H0 no effect (as the paper's t-tests)
    test: str = ""
    n: str = ""
    detectable: float = math.nan  # smallest effect detectable at alpha 0.05 with 80% power
    seeds_needed: int | None = None  # seeds per model for 80% power of REPRODUCED at the claimed size
    power_note: str = ""
    why: str = ""  # a few words on why a verdict is INCONCLUSIVE, for the report's glance table
    diffs: np.ndarray | None = field(default=None, repr=False)  # per-user differences, for plots


def claim_tables(path: Path, table: str = "claim") -> list[dict[str, Any]]:
    """The `[[table]]` entries of a claims file; an unreadable file is a one-line BenchError."""
    try:
        raw = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise BenchError(f"{path}: cannot read claims ({e})") from None
    return list(raw.get(table, []))


def make_claim(cls: type[C], fields: dict[str, Any], path: Path, where: str) -> C:
    """A claim dataclass from one table; a missing or unknown key is a one-line BenchError."""
    try:
        return cls(**fields)
    except TypeError as e:
        raise BenchError(f"{path}: {where}: {e}") from None


def load_claims(path: Path) -> list[Claim]:
    claims = []
    for i, c in enumerate(claim_tables(path), 1):
        if c.get("kind") == "scaling":  # judged by the scaling study's report (bench.results.scaling)
            continue
        claim = make_claim(Claim, c, path, f"claim {i}")
        _validate(path, claim)
        claims.append(claim)
    return claims


def _validate(path: Path, claim: Claim) -> None:
    if claim.direction not in ("higher", "lower") or claim.kind not in ("quality", "cost"):
        raise BenchError(f"{path}: claim {claim.id}: direction must be higher|lower, kind quality|cost")
    if claim.kind == "cost" and claim.metric not in COST_METRICS:
        raise BenchError(f"{path}: claim {claim.id}: cost metric must be one of {', '.join(COST_METRICS)}")
    if claim.check not in CHECKS:
        raise BenchError(f"{path}: claim {claim.id}: check must be one of {', '.join(CHECKS)}")
    if not claim.runnable and not claim.not_runnable:
        raise BenchError(f"{path}: claim {claim.id}: runnable = false needs a not_runnable reason")


def decide(low: float, high: float, claimed: float) -> tuple[str, str]:
    """Verdict and reason from the 95% interval [low, high] of the effect in the claimed direction
    (the rules and their error rates are in the module docstring)."""
    third = claimed / 3
    if high < 0:
        return NOT_REPRODUCED, "the effect is significant in the other direction"
    if high < third and low <= 0:
        return NOT_REPRODUCED, "no effect detected, and the CI rules out a third of the claimed size"
    if high < claimed:
        return SMALLER, "the CI excludes the claimed size"
    if low > third:
        return REPRODUCED, "the CI holds the claimed size and excludes a third of it"
    return INCONCLUSIVE, "the CI holds the claimed size and reaches down to a third of it"


def _effect(est: stats.LogRatio, direction: str) -> tuple[float, float, float]:
    """(estimate, low, high) of the relative effect in the claimed direction."""
    lo, hi = est.interval()
    if direction == "higher":
        return est.ratio - 1, lo - 1, hi - 1
    return 1 - est.ratio, 1 - hi, 1 - lo


def _p_third(est: stats.LogRatio, claimed: float, direction: str) -> float:
    """p-value of H0: effect <= claimed / 3, from the same t statistic as the interval."""
    if direction == "higher":
        return est.p_above(1 + claimed / 3)
    return est.p_below(1 - claimed / 3)


def quality_decision(s: np.ndarray, r: np.ndarray, claimed: float, direction: str = "higher"
                     ) -> tuple[str, stats.LogRatio]:
    """The verdict rule on (seeds, users) arrays, without the seed-count and protocol conditions:
    what the report and the calibration both run."""
    est = stats.seed_ratio(s, r)
    _, lo, hi = _effect(est, direction)
    return decide(lo, hi, claimed)[0], est


def leader(means: pd.Series, seeds: pd.Series, min_seeds: int, higher: bool = True) -> str:
    """The best model by mean among those with `min_seeds` seeds (among all where none has them):
    one lucky seed, or one evaluated checkpoint, is not what others are measured against."""
    enough = means[seeds >= min_seeds]
    pool = enough if not enough.empty else means
    return str(pool.idxmax() if higher else pool.idxmin())


def _reference(claim: Claim, ok: pd.DataFrame) -> tuple[str | None, str]:
    """The reference model and, for "runner-up", a note naming the models it passed over."""
    if claim.reference != "runner-up":
        return claim.reference, ""
    metric = claim.metric if claim.kind == "quality" else "NDCG@10"
    # the best *other* model: not the subject under other settings, nor its evaluated checkpoint
    base = ok.get("base_model", ok.model)
    rows = ok[(ok.model != claim.subject) & (base != claim.subject.split("[")[0])]
    others = rows.groupby("model").agg(mean=(metric, "mean"), seeds=("seed", "nunique"))
    if others.empty:
        return None, ""
    lower = claim.direction == "lower" and claim.kind != "cost"
    others = others.sort_values("mean", ascending=lower)
    ref = leader(others["mean"], others["seeds"], claim.min_seeds, higher=not lower)
    if not (others.seeds >= claim.min_seeds).any():
        return ref, f"no other model has {claim.min_seeds} seeds: judged against the best by mean"
    ahead = others.loc[:ref].iloc[:-1]
    if ahead.empty:
        return ref, ""
    named = ", ".join(f"{m} ({mean:.4f}, {n} seed{'s' * (n != 1)})"
                      for m, mean, n in zip(ahead.index, ahead["mean"], ahead["seeds"], strict=True))
    return ref, (f"judged against the best model with {claim.min_seeds} seeds or more; ahead of it by mean "
                 f"{metric}, with fewer seeds: {named}")


def judge(claim: Claim, ok: pd.DataFrame, costs: pd.DataFrame | None = None) -> Verdict:
    """The verdict of one claim on the ok records of one dataset and protocol (95% intervals: the
    verdict rules are calibrated at that level). `costs`: records of the paired cost benchmark
    (`bench cost`), which judge a per-epoch cost claim where they hold both models."""
    if not claim.runnable:
        return Verdict(claim, claim.reference, NOT_RUNNABLE, claim.not_runnable)
    ref, note = _reference(claim, ok)
    v = _judge(claim, ok, costs, ref)
    if note:
        v.reason = f"{v.reason}; {note}" if v.reason else note
    return v


def _judge(claim: Claim, ok: pd.DataFrame, costs: pd.DataFrame | None, ref: str | None) -> Verdict:
    if claim.kind == "cost" and claim.metric in PAIRED_VALUES and ref:
        pairs = [paired_epochs(costs, claim.subject, ref, pair_id, PAIRED_VALUES[claim.metric])
                 for pair_id in cost_pairs(costs)]
        judged = [(_judge_paired_cost(claim, ref, *pair), pair[2]) for pair in pairs if pair is not None]
        if judged:
            return _with_earlier(judged[0][0], judged[1:])
    subj = ok[ok.model == claim.subject]
    refs = ok[ok.model == ref] if ref else ok.iloc[:0]
    if subj.empty or refs.empty:
        missing = claim.subject if subj.empty else (ref or "a reference model")
        return Verdict(claim, ref or "-", INCONCLUSIVE, f"no records of {missing}", why="no records")
    if claim.kind == "quality":
        return _judge_quality(claim, ref or "", subj, refs)
    return _judge_cost(claim, ref or "", subj, refs)


PAIRED_VALUES = {"epoch_time": "epoch_s", "gpu_memory": "gpu_avg_mb"}  # cost metric -> `CostEpoch` field


def paired_epochs(costs: pd.DataFrame | None, subject: str, reference: str, pair_id: str | None = None,
                  value: str = "epoch_s") -> tuple[np.ndarray, np.ndarray, CostRecord] | None:
    """The per-round epoch seconds (or another `CostEpoch` field, `value`; warm-up rounds left out)
    of the latest `bench cost` pair that measured it for both models (or of the pair `pair_id`), and
    that pair's subject record; None without one (GPU memory: without a benchmark on a GPU)."""
    recs = _cost_records(costs)
    for pair in cost_pairs(costs) if pair_id is None else [pair_id]:
        by_model = {r.model: r for r in recs if r.pair == pair}
        if subject in by_model and reference in by_model:
            a, b = ({e.round: getattr(e, value) for e in by_model[m].epochs if not e.warmup}
                    for m in (subject, reference))
            rounds = sorted(k for k in set(a) & set(b) if a[k] is not None and b[k] is not None)
            if len(rounds):
                return np.array([a[k] for k in rounds]), np.array([b[k] for k in rounds]), by_model[subject]
    return None


def _cost_records(costs: pd.DataFrame | None) -> list[CostRecord]:
    return [] if costs is None or costs.empty else [r for r in costs["record"] if isinstance(r, CostRecord)]


def cost_pairs(costs: pd.DataFrame | None) -> list[str]:
    """The `bench cost` pairs of `costs`, newest first."""
    recs = _cost_records(costs)
    return sorted({r.pair for r in recs}, key=lambda p: max(r.created for r in recs if r.pair == p), reverse=True)


def _with_earlier(latest: Verdict, earlier: list[tuple[Verdict, CostRecord]]) -> Verdict:
    """The latest benchmark's verdict, its reason naming what each earlier benchmark says: a cost
    ratio holds for the machine it was measured on, and another CPU may give another verdict."""
    if earlier:
        each = "; ".join(f"{v.verdict} on {_device(rec)} ({v.estimate:+.1%} [{v.low:+.1%}, {v.high:+.1%}])"
                         for v, rec in earlier)
        same = sum(v.verdict == latest.verdict for v, _ in earlier)
        latest.reason += f"; the same on {same} of the {len(earlier)} earlier benchmark(s): {each}"
    return latest


def _device(rec: Measured) -> str:
    """"cpu: AMD EPYC, 2 threads": a per-epoch cost holds for the device it was measured on."""
    dev = rec.device
    return f"{_known(dev.type)}: {_known(dev.name)}, {_known(dev.torch_threads)} threads"


def _known(v: Any) -> str:
    return "?" if v is None else str(v)


def _judge_paired_cost(claim: Claim, ref: str, s: np.ndarray, r: np.ndarray, rec: CostRecord) -> Verdict:
    est = stats.paired_ratio(s, r)
    e, lo, hi = _effect(est, claim.direction)
    loads = [e_.loadavg_before[0] for e_ in rec.epochs]
    v = Verdict(claim, ref, "", "", e, lo, hi, _p_third(est, claim.claimed, claim.direction), est.p_two_sided(),
                n=f"{len(s)} paired rounds (bench cost on {_device(rec)}, load average {min(loads):.2f}-"
                  f"{max(loads):.2f})")
    what = "average GPU memory of interleaved epochs" if claim.metric == "gpu_memory" else "interleaved epochs"
    v.test = f"t over the paired rounds' log ratios of {what} (bench cost)"
    _power_note(v, est, None, None)
    _settle(v, claim, est.scope, len(s), "")  # rounds are the unit: min_seeds of them
    return v


def time_to_target_ratio(subj: pd.DataFrame, refs: pd.DataFrame, cost: stats.LogRatio | None
                   ) -> tuple[stats.LogRatio | None, str]:
    """Time for the subject to reach the reference's best validation NDCG@20, relative to the
    reference's own time to it, per seed: (epochs the subject needs / epochs the reference needs)
    x the paired per-epoch cost ratio, with the variances of both added. Returns (estimate or None,
    a note: seeds used, seeds where the subject never got there)."""
    s_runs = {int(rec.seed): rec for rec in subj["record"] if curve(rec)}
    r_runs = {int(rec.seed): rec for rec in refs["record"] if curve(rec)}
    logs, never = [], []
    for seed in sorted(set(s_runs) & set(r_runs)):
        target = best_valid(r_runs[seed])
        reached = [c.epoch for c in curve(s_runs[seed]) if c.valid["NDCG@20"] >= target]
        if not reached:
            never.append(seed)
            continue
        logs.append(math.log((reached[0] + 1) / (int(r_runs[seed].best_epoch) + 1)))
    note = f"{len(logs)} seed(s)" + (f"; never reached in seed(s) {', '.join(map(str, never))}" if never else "")
    if not logs or cost is None:
        return None, note + ("" if cost is not None else "; no paired per-epoch cost")
    d = np.array(logs)
    epochs = stats.LogRatio(float(d.mean()), float(d.std(ddof=1)) / math.sqrt(len(d)) if len(d) > 1 else math.nan,
                            len(d) - 1.0 if len(d) > 1 else math.nan, "seeds" if len(d) > 1 else "these seeds",
                            len(d), len(d))
    return stats.product_ratio(epochs, cost), note


def _log_margin(claim: Claim) -> float:
    """The log-ratio distance between the claimed size and a third of it (what REPRODUCED must resolve)."""
    c = claim.claimed
    return math.log((1 + c) / (1 + c / 3)) if claim.direction == "higher" else math.log((1 - c / 3) / (1 - c))


def _power_note(v: Verdict, est: stats.LogRatio, s: np.ndarray | None, r: np.ndarray | None) -> None:
    """What the evidence can detect: the smallest effect at alpha 0.05 with 80% power, and (quality,
    >= 2 seeds a side) how many seeds per model would make REPRODUCED likely at the claimed size."""
    v.detectable = math.expm1(stats.detectable(est))
    if s is None or r is None:
        return
    if est.scope != "seeds":
        v.power_note = "seed spread unmeasured (one seed a side): run at least 2 seeds per model to size the need"
        return
    v.seeds_needed = stats.seeds_needed(s, r, _log_margin(v.claim))
    have = min(len(s), len(r))
    if v.seeds_needed is None:
        v.power_note = "more seeds would not settle it: the per-user variance of this test set alone is too large"
    elif v.seeds_needed > have:
        v.power_note = (f"more seeds would settle it: about {v.seeds_needed} per model give 80% power at the "
                        "claimed size")
    else:
        v.power_note = f"{have} seeds per model suffice for 80% power at the claimed size (about {v.seeds_needed})"


def _judge_quality(claim: Claim, ref: str, subj: pd.DataFrame, refs: pd.DataFrame) -> Verdict:
    s, r = per_user_matrix(subj, claim.metric), per_user_matrix(refs, claim.metric)
    est = stats.seed_ratio(s, r)
    e, lo, hi = _effect(est, claim.direction)
    v = Verdict(claim, ref, "", "", e, lo, hi, _p_third(est, claim.claimed, claim.direction), est.p_two_sided(),
                n=f"{len(s)}+{len(r)} seeds x {s.shape[1]} users", diffs=s.mean(0) - r.mean(0))
    v.test = (f"Welch t on seed means plus the shared per-user variance (df {est.df:.1f})" if est.scope == "seeds"
              else "Fieller's t over users, one seed a side: these seeds only")
    _power_note(v, est, s, r)
    _settle(v, claim, est.scope, min(len(s), len(r)), _cut_short(claim, subj, refs))
    return v


def _settle(v: Verdict, claim: Claim, scope: str, n: int, cut: str) -> None:
    """The verdict from the interval, then the conditions that overrule it."""
    base, why = decide(v.low, v.high, claim.claimed)
    if cut:
        v.verdict, v.reason, v.why = INCONCLUSIVE, cut, "not the paper's protocol"
    elif scope != "seeds" or n < 2:
        v.verdict = OTHER_WAY if v.high < 0 else THESE_SEEDS[base]
        v.reason = f"{why}, for these seeds only (one seed or run a side)"
    elif n < claim.min_seeds:
        v.verdict, v.reason = INCONCLUSIVE, f"too few seeds ({n} < {claim.min_seeds}); {why}"
        v.why = f"{n} of the {claim.min_seeds} seeds a verdict needs"
    else:
        v.verdict, v.reason = base, why
        v.why = "the CI holds both the claim and a third of it" if base == INCONCLUSIVE else ""
    if v.verdict == INCONCLUSIVE and v.power_note and not cut:
        v.reason += f"; {v.power_note}"


def _cut_short(claim: Claim, *frames: pd.DataFrame) -> str:
    """Why the training runs are not the paper's protocol ("" if they are, or are checkpoints)."""
    for df in frames:
        for rec in df["record"]:
            if not isinstance(rec, RunRecord) or rec.stop_reason != "max_epochs":
                continue
            budget = rec.train_config.epochs if rec.train_config else claim.protocol_epochs
            if budget < claim.protocol_epochs:
                return (f"{rec.model} was trained for {rec.epochs_run} epochs and stopped by the epoch "
                        f"budget, not by early stopping: not the paper's protocol ({claim.protocol_epochs} epochs)")
    return ""


def avg_gpu_mb(rec: Record) -> float:
    """Average GPU memory of a run (MB): the largest phase of `memory.gpu_avg_by_phase` (written
    by GPU runs; the paper's Table 2 reports average, not peak, memory); nan where absent."""
    phases = rec.memory.gpu_avg_by_phase.values() if isinstance(rec, Measured) else ()
    return max((p["reserved"] for p in phases), default=math.nan) / 2**20


def _cost_groups(claim: Claim, rows: pd.DataFrame, target: float) -> list[np.ndarray]:
    groups = []
    for rec in rows["record"]:
        if claim.metric == "epoch_time":
            g = epoch_times(rec)
        elif claim.metric == "train_time":
            total = rec.timing.train_total_s if isinstance(rec, RunRecord) else None
            g = np.array([np.nan if total is None else total])
        elif claim.metric == "time_to_target":
            g = np.array([time_to_target(rec, target)])
        else:
            g = np.array([avg_gpu_mb(rec)])
        if len(g) and np.all(np.isfinite(g)):
            groups.append(g)
    return groups


def _judge_cost(claim: Claim, ref: str, subj: pd.DataFrame, refs: pd.DataFrame) -> Verdict:
    bests = [b for b in (best_valid(r) for r in refs["record"]) if not np.isnan(b)]
    target = float(np.mean(bests)) if bests else float("nan")
    s, r = _cost_groups(claim, subj, target), _cost_groups(claim, refs, target)
    if not bests:
        return Verdict(claim, ref, INCONCLUSIVE, "no training records (eval records carry no cost)",
                       why="no training records")
    if not s or not r:
        why = {"gpu_memory": "needs a GPU: no average GPU memory (memory.gpu_avg_by_phase) in the records",
               "time_to_target": "the subject never reached the reference's best validation NDCG@20 "
               f"({target:.4f})"}.get(claim.metric, "no cost measurements")
        return Verdict(claim, ref, INCONCLUSIVE, why, why=why.split(":")[0])
    est = stats.run_ratio(s, r)
    e, lo, hi = _effect(est, claim.direction)
    v = Verdict(claim, ref, "", "", e, lo, hi, _p_third(est, claim.claimed, claim.direction), est.p_two_sided(),
                n=f"{len(s)}+{len(r)} runs, {sum(map(len, s + r))} values")
    v.test = ("Welch t on the logs of run means" if est.scope == "seeds"
              else "Welch t on log values within one run a side: these runs only")
    _power_note(v, est, None, None)
    _settle(v, claim, est.scope, min(len(s), len(r)), "")
    return v
