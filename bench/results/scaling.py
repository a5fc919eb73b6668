"""The scaling study's numbers: cost against users on log-log axes, slopes with CIs, and verdicts on
scaling claims. From records of kind "scaling" (`bench.perf.scaling`) only; no torch here.

A fit is the OLS line of log(cost) on log(users) over every measured (scale, repeat) point of a model:
the slope is the exponent of cost ~ users^slope (1: linear), its 95% CI the t interval with n - 2
degrees of freedom. Two models' slopes are compared by their difference (independent fits, Welch-
Satterthwaite df); their cost ratio by the slope of log(subject / reference) over the points where
both were measured (same scale and repeat). A quantity below `FLOOR_S` at every size (a hook that does
nothing) gets no fit: there is no such work to scale.

Scaling claims (a claim file's `[[claim]]` tables with `kind = "scaling"`) name a subject, a reference,
a metric, a statistic (`slope_difference`: reference's slope minus subject's, positive when the
subject's cost grows more slowly; `ratio_slope`: minus the slope of log(subject / reference), positive
when the subject's advantage grows with users) and a `margin`, the smallest effect the claim's words
need. With [lo, hi] the 95% CI of that effect (docs/statistics.md, "Scaling claims"):
REPRODUCED lo > margin; SMALLER THAN CLAIMED 0 < lo and hi < margin (the direction holds, by less than
the margin); NOT REPRODUCED hi < margin and lo <= 0 (no effect that matters, or the other way);
INCONCLUSIVE otherwise, or with fewer than 3 sizes, or sizes spanning less than `min_span`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import special

from bench.errors import BenchError
from bench.results.claims import (
    INCONCLUSIVE,
    NOT_REPRODUCED,
    NOT_RUNNABLE,
    REPRODUCED,
    SMALLER,
    claim_tables,
    make_claim,
)

FLOOR_S = 1e-3  # seconds: below this at every size, a phase does no work worth a fit
STATISTICS = ("slope_difference", "ratio_slope")


POINTS_FILE = "points.jsonl"  # the scaling study's measurements: its own JSON lines, not run records


def append_point(out: Path, point: dict[str, Any]) -> dict[str, Any]:
    """Appends one measured point (a plain JSON object with id, created and provenance) under an
    exclusive lock, as run records are appended; returns it."""

    from bench.fileio import now
    from bench.results.schema import new_id

    point = {"id": new_id(), "created": now(), **point}
    _append(out, [point])
    return point


def _append(out: Path, points: list[dict[str, Any]]) -> None:
    """Points as JSON lines at the end of the study's file, under an exclusive lock."""
    import fcntl

    out.mkdir(parents=True, exist_ok=True)
    with open(out / POINTS_FILE, "ab") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        f.write("".join(json.dumps(p, sort_keys=True, allow_nan=True) + "\n" for p in points).encode())


def restore_points(copy: Path, out: Path) -> int:
    """Appends to `out` the points of a report's committed copy (`copy`, `<report>/records`) that it
    lacks (by id), so that a study on a fresh clone measures only what no machine has; returns how many."""
    have = {p.get("id") for p in read_points(out)}
    missing = [p for p in read_points(copy) if p.get("id") not in have]
    if missing:
        _append(out, missing)
    return len(missing)


def read_points(out: Path) -> list[dict[str, Any]]:
    """The points of a study folder ([] without any); a torn last line (a kill mid-write) is skipped."""
    path = out / POINTS_FILE
    if not path.exists():
        return []
    points = []
    for line in path.read_text().splitlines():
        try:
            points.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return [p for p in points if p.get("kind") == "scaling"]


def _get(*path: str) -> Callable[[dict[str, Any]], float]:
    def get(rec: dict[str, Any]) -> float:
        node: Any = rec
        for k in path:
            node = node.get(k) if isinstance(node, dict) else None
        return float(node) if isinstance(node, (int, float)) else math.nan

    return get


def _gpu_peak(rec: dict[str, Any]) -> float:
    phases = (rec.get("memory") or {}).get("gpu_peak_mb") or {}
    return max((p["allocated"] for p in phases.values()), default=math.nan)


@dataclass(frozen=True)
class Metric:
    label: str
    unit: str
    get: Callable[[dict[str, Any]], float]
    extrapolated: bool = False


METRICS: dict[str, Metric] = {
    "epoch_s": Metric("per-epoch training time (epoch start + batches + training)", "s", _get("seconds", "epoch"),
                      True),
    "train_s": Metric("training steps per epoch", "s", _get("seconds", "train_extrapolated"), True),
    "epoch_start_s": Metric("epoch-start work at every epoch (epoch-1 hook)", "s", _get("seconds", "epoch_start")),
    "init_s": Metric("first epoch start (epoch-0 hook: ELCRec's one-off initialisation)", "s", _get("seconds", "init")),
    "batches_s": Metric("building the epoch's training samples", "s", _get("seconds", "batches")),
    "eval_s": Metric("validation pass", "s", _get("seconds", "eval_extrapolated"), True),
    "generate_s": Metric("data generation (not a model cost)", "s", _get("seconds", "generate")),
    "peak_rss_mb": Metric("peak RSS of the process", "MiB", _get("memory", "peak_rss_mb")),
    "gpu_peak_mb": Metric("peak GPU memory allocated", "MiB", _gpu_peak),
}


@dataclass(frozen=True)
class Fit:
    slope: float
    intercept: float
    se: float
    df: float
    n: int
    low: float
    high: float
    r2: float
    users: tuple[int, int]  # smallest and largest users fitted
    machines: int = 1  # machines the points came from (one intercept each)

    def predict(self, users: float) -> float:
        return math.exp(self.intercept + self.slope * math.log(users))


def _t(df: float) -> float:
    return float(special.stdtrit(df, 0.975)) if df > 0 else math.nan


def loglog_fit(users: np.ndarray, values: np.ndarray, machines: np.ndarray | None = None) -> Fit | None:
    """OLS of log(values) on log(users), positive finite values only; None with fewer than 3 points or
    fewer than 2 distinct sizes. Points from several machines (`machines`: one label per point) get
    one intercept per machine and a common slope, estimated within machines: a machine twice as fast
    shifts its points, not the slope. The intercept returned is the machine with the most points'."""
    users, values = np.asarray(users, float), np.asarray(values, float)
    labels = np.asarray(machines if machines is not None else [""] * len(users), dtype=object)
    ok = np.isfinite(values) & (values > 0) & (users > 0)
    x, y, g = np.log(users[ok]), np.log(values[ok]), labels[ok]
    groups = sorted(set(g), key=lambda m: (-int((g == m).sum()), str(m)))
    xc, yc = x.copy(), y.copy()
    for m in groups:  # centre within each machine
        xc[g == m] -= x[g == m].mean()
        yc[g == m] -= y[g == m].mean()
    df = len(x) - 1 - len(groups)
    sxx = float((xc**2).sum())
    if df < 1 or sxx <= 0:
        return None
    slope = float((xc * yc).sum() / sxx)
    main = g == groups[0]
    intercept = float(y[main].mean() - slope * x[main].mean())
    resid = yc - slope * xc
    se = math.sqrt(float((resid**2).sum()) / df / sxx)
    syy = float((yc**2).sum())
    r2 = 1 - float((resid**2).sum()) / syy if syy > 0 else 1.0
    h = _t(df) * se
    return Fit(slope, intercept, se, df, len(x), slope - h, slope + h, r2,
               (int(users[ok].min()), int(users[ok].max())), len(groups))


@dataclass(frozen=True)
class Difference:
    """A difference of slopes (or a ratio's slope) with its 95% CI."""

    estimate: float
    se: float
    df: float
    low: float
    high: float
    n: str


def slope_difference(a: Fit, b: Fit) -> Difference:
    """a.slope - b.slope, independent fits, Welch-Satterthwaite degrees of freedom."""
    var = a.se**2 + b.se**2
    df = var**2 / (a.se**4 / a.df + b.se**4 / b.df) if var > 0 else math.inf
    est, h = a.slope - b.slope, _t(df) * math.sqrt(var) if var > 0 else 0.0
    return Difference(est, math.sqrt(var), df, est - h, est + h, f"{a.n}+{b.n} points")


def scaling_records(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The latest record of every (settings, scale, repeat) point: the ok one where there is one."""
    best: dict[tuple[str, float, int], dict[str, Any]] = {}
    for rec in sorted((r for r in records if r.get("kind") == "scaling"), key=lambda r: r.get("created", "")):
        k = (rec["config_hash"], float(rec["scale"]), int(rec["repeat"]))
        if rec["status"] == "ok" or best.get(k, {}).get("status") != "ok":
            best[k] = rec
    return sorted(best.values(), key=lambda r: (r["model"], r["scale"], r["repeat"]))


def machine_of(rec: dict[str, Any]) -> str:
    """Which machine measured a point: CPU (with family and model where recorded), cores, device."""
    prov, dev = rec.get("provenance") or {}, rec.get("device") or {}
    return f"{prov.get('cpu')}/{prov.get('cpu_count')} cores/{dev.get('type', 'cpu')}:{dev.get('name', '')}"


def series(recs: list[dict[str, Any]], model: str, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """(users, values) of a model's ok points."""
    ok = [r for r in recs if r["model"] == model and r["status"] == "ok"]
    return np.array([r["users"] for r in ok], float), np.array([METRICS[metric].get(r) for r in ok], float)


def model_fit(recs: list[dict[str, Any]], model: str, metric: str) -> Fit | None:
    """The log-log fit (within machines, where points come from several), or None where there are
    too few points or the phase does no work (below FLOOR_S)."""
    users, values = series(recs, model, metric)
    if METRICS[metric].unit == "s" and not np.any(values >= FLOOR_S):
        return None
    machines = np.array([machine_of(r) for r in recs if r["model"] == model and r["status"] == "ok"], dtype=object)
    return loglog_fit(users, values, machines)


def ratio_slope(recs: list[dict[str, Any]], subject: str, reference: str, metric: str) -> Fit | None:
    """Fit of log(subject / reference) over the (scale, repeat) points both measured: slope 0 when the
    ratio does not move with users, negative when the subject's cost falls behind the reference's."""
    def by_point(model: str) -> dict[tuple[float, int, str], tuple[int, float]]:
        return {(r["scale"], r["repeat"], machine_of(r)): (r["users"], METRICS[metric].get(r)) for r in recs
                if r["model"] == model and r["status"] == "ok"}

    s, r = by_point(subject), by_point(reference)
    both = sorted(set(s) & set(r))  # a pair measured on one machine only
    users = np.array([s[k][0] for k in both], float)
    ratio = np.array([s[k][1] / r[k][1] if r[k][1] > 0 else math.nan for k in both])
    return loglog_fit(users, ratio, np.array([k[2] for k in both], dtype=object))


@dataclass(frozen=True)
class ScalingClaim:
    id: str
    subject: str
    reference: str
    metric: str
    statistic: str
    source: str
    margin: float = 0.05
    min_span: float = 10.0  # the fitted sizes must span at least this factor in users
    check: str = "paper"
    kind: str = "scaling"
    runnable: bool = True
    not_runnable: str = ""


def load_scaling_claims(path: Path) -> list[ScalingClaim]:
    """The `kind = "scaling"` claims of a claim file (others are left to `bench report`)."""
    out = []
    for i, c in enumerate(claim_tables(path), 1):
        if c.get("kind") != "scaling":
            continue
        claim = make_claim(ScalingClaim, c, path, f"claim {i}")
        if claim.metric not in METRICS or claim.statistic not in STATISTICS or not claim.margin > 0:
            raise BenchError(f"{path}: claim {claim.id}: metric one of {', '.join(METRICS)}, statistic one of "
                             f"{', '.join(STATISTICS)}, margin > 0")
        out.append(claim)
    return out


def decide_slope(low: float, high: float, margin: float) -> tuple[str, str]:
    """The verdict on an effect (positive as claimed) from its 95% CI and the claim's margin."""
    if low > margin:
        return REPRODUCED, f"the CI lies above the margin {margin:g}"
    if high < margin and low > 0:
        return SMALLER, f"the effect is in the claimed direction, but the CI lies below the margin {margin:g}"
    if high < margin:
        return NOT_REPRODUCED, f"the CI rules out an effect of the margin {margin:g} or more"
    return INCONCLUSIVE, f"the CI holds the margin {margin:g}"


@dataclass(frozen=True)
class ScalingVerdict:
    claim: ScalingClaim
    verdict: str
    reason: str
    estimate: float = math.nan
    low: float = math.nan
    high: float = math.nan
    n: str = ""


def _effect(claim: ScalingClaim, recs: list[dict[str, Any]]) -> tuple[Difference | None, str]:
    """The claim's effect (positive as claimed) with its CI, or None and why not."""
    if claim.statistic == "ratio_slope":
        f = ratio_slope(recs, claim.subject, claim.reference, claim.metric)
        if f is None:
            return None, "fewer than 3 points where both models were measured"
        return Difference(-f.slope, f.se, f.df, -f.high, -f.low, f"{f.n} paired points"), _span(f)
    s, r = model_fit(recs, claim.subject, claim.metric), model_fit(recs, claim.reference, claim.metric)
    if s is None or r is None:
        return None, f"no fit for {claim.subject if s is None else claim.reference} (fewer than 3 points)"
    return slope_difference(r, s), _span(s, r)


def _span(*fits: Fit) -> str:
    """The narrowest span of users (largest / smallest fitted) of the fits, as text."""
    return f"{min(f.users[1] / f.users[0] for f in fits):.3g}"


def judge_scaling(claim: ScalingClaim, recs: list[dict[str, Any]]) -> ScalingVerdict:
    if not claim.runnable:
        return ScalingVerdict(claim, NOT_RUNNABLE, claim.not_runnable)
    eff, span = _effect(claim, recs)
    if eff is None:
        return ScalingVerdict(claim, INCONCLUSIVE, span)
    verdict, why = decide_slope(eff.low, eff.high, claim.margin)
    if float(span) < claim.min_span:
        verdict, why = INCONCLUSIVE, f"the sizes span {span}x in users, fewer than the claim's {claim.min_span:g}x"
    return ScalingVerdict(claim, verdict, why, eff.estimate, eff.low, eff.high, eff.n)


def line_through_largest(measured: list[tuple[int, float]], users: float, base: float = 0.0) -> float | None:
    """A quantity at `users` from (users, value) pairs: the straight line through the two largest user
    counts (the largest value at each; never decreasing); from one pair, `base` plus the rest in
    proportion to users; None without any. Memory and wall time are a fixed part plus a part linear in
    users, and the fixed part's share shrinks as users grow: the largest sizes say the most about the next."""
    by_users: dict[int, float] = {}
    for u, v in measured:
        by_users[u] = max(v, by_users.get(u, v))
    pts = sorted(by_users.items())
    if not pts:
        return None
    if len(pts) == 1:
        return base + (pts[0][1] - base) * users / pts[0][0]
    (u1, v1), (u2, v2) = pts[-2:]
    return v2 + max(0.0, (v2 - v1) / (u2 - u1)) * (users - u2)


def linear_memory(recs: list[dict[str, Any]], model: str) -> tuple[float, float] | None:
    """(MiB at 0 users, MiB per user) of the peak RSS through the two largest sizes (`line_through_largest`);
    None with fewer than 2 sizes."""
    users, peak = series(recs, model, "peak_rss_mb")
    if len(np.unique(users)) < 2:
        return None
    pairs = [(int(u), float(p)) for u, p in zip(users, peak, strict=True)]
    at_zero = line_through_largest(pairs, 0.0)
    at_top = line_through_largest(pairs, float(users.max()))
    assert at_zero is not None and at_top is not None
    return at_zero, (at_top - at_zero) / float(users.max())


#: the worker's phases in the order they run
PHASES = ("generate", "model", "init", "epoch_start", "batches", "warmup", "train", "eval")


def peak_phase(rec: dict[str, Any]) -> str:
    """The phase that raised the process's high-water mark the most. The allocator keeps freed memory
    (bench.runner.WORKER_ENV), so every phase starts at the level the ones before it reached, and the
    phase whose own growth was largest is the one that sets the size that fits."""
    mem = rec.get("memory") or {}
    phases = mem.get("phase_peak_rss_mb") or {}
    if not phases:
        return "?"
    level, best, grew = mem.get("rss_start_mb", 0.0), "?", -1.0
    for p in (*PHASES, *(q for q in phases if q not in PHASES)):
        if p in phases:
            if phases[p] - level > grew:
                best, grew = p, phases[p] - level
            level = max(level, phases[p])
    return best


def fit_limits(recs: list[dict[str, Any]], model: str, ram_mb: float) -> dict[str, Any]:
    """What fits: the largest measured scale, the smallest that did not fit and why, the phase that added
    most to the peak at the largest, and the users at which the linear memory fit reaches the machine's RAM."""
    mine = [r for r in recs if r["model"] == model]
    ok = [r for r in mine if r["status"] == "ok"]
    bad = sorted((r for r in mine if r["status"] in ("too_big", "out_of_memory")), key=lambda r: r["scale"])
    out: dict[str, Any] = {"largest_ok_scale": max((r["scale"] for r in ok), default=None),
                           "largest_ok_users": max((r["users"] for r in ok), default=None),
                           "not_fit": ({"scale": bad[0]["scale"], "status": bad[0]["status"],
                                        "reason": bad[0].get("reason", "")} if bad else None)}
    if ok:
        top = max(ok, key=lambda r: (r["scale"], r["memory"]["peak_rss_mb"]))
        out["peak_phase"], out["peak_rss_mb"] = peak_phase(top), top["memory"]["peak_rss_mb"]
    lin = linear_memory(recs, model)
    if lin is not None and lin[1] > 0:
        out["mb_base"], out["mb_per_user"] = lin
        out["users_at_ram"] = (ram_mb - lin[0]) / lin[1]
    return out
