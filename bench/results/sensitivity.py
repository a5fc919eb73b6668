"""Sensitivity grids and the paper's statements about ranges of a setting. No torch.

A grid is found in the records themselves: training runs of one model on one dataset and protocol
whose settings (every hyper-parameter of the model, defaults included: from the record's
`model_config`, or for an older record without one, from the newer records of the same model;
and the training settings as `train.KEY`) differ in exactly one key. Each distinct
value of that key is a point; a point holds one run per seed (the latest where a seed ran twice).
Per point: each metric's seed mean with a 95% t-interval over seeds, the cluster diagnostics (means
over seeds, best-validation weights and initial centres), epochs run and best epoch.

A range claim (`[[sensitivity]]` in a claims file) quotes a statement such as "perform well when
k in [256, 512]" and names its rule, fixed before any data were seen (docs/statistics.md):

- `near-best`: every grid point inside the range is within `margin` of every grid point (hence of
  the best). REPRODUCED when every (inside point, other point) pair's 95% interval of the ratio
  of means lies above 1 - margin (an intersection-union test: each one-sided test at 2.5%, no
  correction needed since all must reject); NOT REPRODUCED when some pair is significantly below
  1 - margin (one-sided at 2.5%, Holm over the pairs); else INCONCLUSIVE.
- `range-matters`: the inside points beat the outside ones by at least `margin`: the ratio of
  the mean over inside points to the mean over outside points (`stats.contrast_ratio`) judged by
  the verdict rule of the project's claims (`claims.decide`) with `margin` as the claimed size.

Both need `min_seeds` seeds at every point (else INCONCLUSIVE); seeds are the unit throughout.
"""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.errors import BenchError
from bench.metrics import METRIC_NAMES
from bench.results import stats
from bench.results.claims import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED, claim_tables, decide, make_claim
from bench.results.frame import per_user_matrix
from bench.results.schema import Record, RunRecord

METRICS = ("HR@5", "NDCG@5", "HR@20", "NDCG@20")  # the report's headline metrics
RULES = ("near-best", "range-matters")
UNSET = "(unset)"  # a key a record does not name (records written before `model_config`)
POSITION_KEYS = ("positions_centres_used", "positions_effective_clusters")
DIAG_KEYS = ("centres_used", "usage_entropy_nats", "effective_clusters", "effective_share")


def settings(rec: Record, defaults: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """Every setting of a training run (None for other records): its model's hyper-parameters and its
    training settings, prefixed `train.`. A record written before `model_config` names only the
    settings its run was given (the preset and `--set`): `defaults` (`model_defaults`) fills in the
    rest, so that it compares with newer records of the same model."""
    if not isinstance(rec, RunRecord) or not rec.config:
        return None
    hp = rec.model_config or {**(defaults or {}), **(rec.config.get("hp") or {})}
    train = asdict(rec.train_config) if rec.train_config is not None else rec.config.get("train") or {}
    return {**hp, **{f"train.{k}": v for k, v in train.items()}}


def model_defaults(records: list[Record]) -> dict[str, Any]:
    """Each hyper-parameter's default as the records holding `model_config` show it: its value in
    runs whose given settings (`config.hp`) do not name it, where all such runs agree (a key whose
    default they do not agree on, or never show, stays unknown). Pass the records of one model."""
    seen: dict[str, dict[str, Any]] = defaultdict(dict)
    for rec in records:
        if isinstance(rec, RunRecord) and rec.model_config and rec.config:
            given = rec.config.get("hp") or {}
            for k, v in rec.model_config.items():
                if k not in given:
                    seen[k][_canon({k: v})] = v
    return {k: next(iter(vals.values())) for k, vals in seen.items() if len(vals) == 1}


def _canon(d: dict[str, Any]) -> str:
    """A hashable form in which 1 and 1.0 agree (a `--set` value may parse as either)."""
    num = {k: float(v) if isinstance(v, int | float) and not isinstance(v, bool) else v for k, v in d.items()}
    return json.dumps(num, sort_keys=True, default=str)


def distinct_settings(records: list[Record]) -> int:
    """How many different settings the training runs among `records` (of one model) have."""
    defaults = model_defaults(records)
    return len({_canon(st) for st in (settings(r, defaults) for r in records) if st is not None})


def label(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


@dataclass
class Point:
    value: Any
    rows: pd.DataFrame = field(repr=False)  # the ok run records, one per seed, in seed order
    n: int
    metrics: dict[str, tuple[float, float, float]]  # metric -> (seed mean, 95% low, 95% high)
    diag: dict[str, float]  # means over seeds, best-validation weights
    diag_init: dict[str, float]  # means over seeds, initial centres
    epochs_run: float
    best_epoch: float  # 1-based
    stops: dict[str, int]


@dataclass
class Grid:
    dataset: str
    model: str
    axis: str
    fixed: dict[str, Any]  # every other setting, the same at every point
    points: list[Point]

    @property
    def numeric(self) -> bool:
        return all(isinstance(p.value, int | float) and not isinstance(p.value, bool) for p in self.points)

    @property
    def clustered(self) -> bool:
        """Whether any run of the grid has cluster diagnostics (a model without intent centres has none)."""
        return any(p.diag or p.diag_init for p in self.points)

    @property
    def log_x(self) -> bool:
        """A numeric axis of positive values spanning a factor 10 or more is drawn on a log scale."""
        vals = [float(p.value) for p in self.points] if self.numeric else []
        return bool(vals) and min(vals) > 0 and max(vals) >= 10 * min(vals)


def _run_diag(rec: RunRecord, key: str) -> dict[str, float] | None:
    """A run's cluster diagnostics under `key` with k; the effective number of clusters is
    exp(usage entropy) and its share of k exp(entropy - log k) where older records lack them."""
    d = rec.diagnostics if key == "diagnostics" else rec.diagnostics_init
    if not d or "usage_entropy_nats" not in d:
        return None
    eff, k = math.exp(d["usage_entropy_nats"]), math.exp(d["max_usage_entropy_nats"])
    out = {"centres_used": d["centres_used"], "usage_entropy_nats": d["usage_entropy_nats"], "k": k,
           "effective_clusters": d.get("effective_clusters", eff),
           "effective_share": d.get("effective_share", eff / k)}
    return out | {name: d[name] for name in POSITION_KEYS if name in d}  # position counts: newer records only


def _diag(recs: list[RunRecord], key: str) -> dict[str, float]:
    """Means over runs of the cluster diagnostics under `key` ({} where no run has them)."""
    rows = [d for d in (_run_diag(r, key) for r in recs) if d is not None]
    keys = (*DIAG_KEYS, "k", *(n for n in POSITION_KEYS if rows and all(n in r for r in rows)))
    return {k: float(np.mean([r[k] for r in rows])) for k in keys} if rows else {}


def diag_values(point: Point, key: str, name: str) -> np.ndarray:
    """Per seed, one cluster diagnostic (e.g. "effective_clusters") under `key` of a point's runs."""
    runs = [_run_diag(r, key) for r in point.rows["record"]]
    return np.array([d[name] for d in runs if d is not None], dtype=np.float64)


def _point(value: Any, rows: pd.DataFrame) -> Point:
    rows = rows.assign(_created=rows["record"].map(lambda r: r.created or "")).sort_values("_created")
    rows = rows.drop_duplicates("seed", keep="last").sort_values("seed")  # a seed run twice: the latest
    recs = list(rows["record"])
    metrics = {m: stats.mean_interval(rows[m].to_numpy(dtype=np.float64)) for m in METRIC_NAMES}
    best = [r.best_epoch + 1 for r in recs if r.best_epoch is not None]
    return Point(value, rows, len(rows), metrics, _diag(recs, "diagnostics"), _diag(recs, "diagnostics_init"),
                 float(np.mean([r.epochs_run or 0 for r in recs])), float(np.mean(best)) if best else math.nan,
                 dict(Counter(str(r.stop_reason) for r in recs)))


def _sort_key(grid_numeric: bool, value: Any) -> tuple[int, Any]:
    if value == UNSET:
        return (0, "")
    return (1, float(value)) if grid_numeric else (1, str(value))


def find_grids(ok: pd.DataFrame, dataset: str) -> list[Grid]:
    """Every one-key grid among the ok training runs of one dataset and protocol (module docstring)."""
    grids: list[Grid] = []
    runs = ok[ok["record"].map(lambda r: settings(r) is not None)]
    # the registry model, not the report's label: the label names the very setting a grid varies
    for model, g in runs.groupby("base_model", sort=True):
        by_setting: dict[str, tuple[dict[str, Any], list[Any]]] = {}
        defaults = model_defaults(list(g["record"]))
        for idx, rec in zip(g.index, g["record"], strict=True):
            st = settings(rec, defaults) or {}
            by_setting.setdefault(_canon(st), (st, []))[1].append(idx)
        if len(by_setting) < 2:
            continue
        for axis in sorted(set().union(*(st for st, _ in by_setting.values()))):
            groups: dict[str, list[tuple[Any, list[Any], dict[str, Any]]]] = defaultdict(list)
            for st, idxs in by_setting.values():
                groups[_canon({k: v for k, v in st.items() if k != axis})].append((st.get(axis, UNSET), idxs, st))
            for members in groups.values():
                if len(members) < 2:
                    continue
                points = [_point(v, g.loc[idxs]) for v, idxs, _ in members]
                grid = Grid(dataset, str(model), axis, {k: v for k, v in members[0][2].items() if k != axis}, points)
                numeric = grid.numeric
                grid.points.sort(key=lambda p: _sort_key(numeric, p.value))
                grids.append(grid)
    return grids


def provenance_line(grid: Grid) -> str:
    """Commits, machines and torch threads of a grid's runs: a report names where its numbers come from."""
    recs = [r for p in grid.points for r in p.rows["record"]]
    gits = [r.provenance.git for r in recs if r.provenance.git is not None]
    commits = sorted({(g.commit or "")[:7] + ("+dirty" if g.dirty else "") for g in gits} - {""})
    machines = sorted({f"{r.device.type or 'cpu'}: {r.device.name}" for r in recs})
    threads = sorted({str(r.device.torch_threads) for r in recs})
    return (f"{len(recs)} runs from commit(s) {', '.join(commits) or '–'} on {', '.join(machines)}, "
            f"{', '.join(threads)} torch thread(s) per run")


def _eff(p: Point) -> str:
    """"1.1 / 2.3 of 32": effective clusters of users' mean-pooled encodings / of real positions."""
    pos = p.diag.get("positions_effective_clusters")
    return f"{p.diag['effective_clusters']:.1f}{'' if pos is None else f' / {pos:.1f}'} of {p.diag['k']:.0f}"


def collapse_note(grid: Grid) -> str:
    """How the effective number of clusters moves along the grid, by users and, where recorded, by
    real sequence positions (a user's mean pools over padding, so users alone overstate a collapse;
    "" without diagnostics)."""
    pts = [p for p in grid.points if p.diag]
    if not pts:
        return ""
    text = ("Effective clusters exp(H) at the best-validation weights, users' mean-pooled encodings / real "
            f"sequence positions (where recorded), {grid.axis} = "
            + "; ".join(f"{label(p.value)}: {_eff(p)}" for p in pts) + ".")
    top = max(pts, key=lambda p: p.diag["effective_clusters"])
    text += (f" Users: at most {top.diag['effective_clusters']:.1f} ({grid.axis} = {label(top.value)}, "
             f"{100 * top.diag['effective_share']:.0f}% of its {top.diag['k']:.0f} centres).")
    by_pos = [p for p in pts if "positions_effective_clusters" in p.diag]
    if by_pos:
        most = max(by_pos, key=lambda p: p.diag["positions_effective_clusters"])
        share = most.diag["positions_effective_clusters"] / most.diag["k"]
        text += (f" Positions: at most {most.diag['positions_effective_clusters']:.1f} ({grid.axis} = "
                 f"{label(most.value)}, {100 * share:.0f}% of its {most.diag['k']:.0f} centres).")
    init = [f"{label(p.value)}: {p.diag_init['effective_clusters']:.1f}" for p in pts if p.diag_init]
    return text + (" At initialisation (users): " + "; ".join(init) + "." if init else "")


# ---------------------------------------------------------------- range claims


@dataclass(frozen=True)
class RangeClaim:
    id: str
    model: str
    axis: str
    range: tuple[float, float]  # inclusive
    rule: str  # one of RULES
    statement: str  # the paper's words
    source: str  # where the paper says it
    dataset: str = "*"  # "*": every dataset with such a grid
    metric: str = "HR@5"
    margin: float = 0.05  # relative: "well" = within 5% of the best; "matters" = by 5% or more
    min_seeds: int = 3


@dataclass
class RangeVerdict:
    claim: RangeClaim
    grid: Grid | None
    verdict: str
    reason: str
    comparison: str = ""
    estimate: float = math.nan  # relative (ratio - 1)
    low: float = math.nan
    high: float = math.nan
    p_value: float = math.nan  # the verdict's own test (see `test`)
    test: str = ""


def load_range_claims(path: Path) -> list[RangeClaim]:
    """The `[[sensitivity]]` tables of a claims file (its `[[claim]]` tables are `claims.load_claims`')."""
    out = []
    for i, c in enumerate(claim_tables(path, "sensitivity"), 1):
        claim = make_claim(RangeClaim, {**c, "range": tuple(c.get("range", ()))}, path, f"sensitivity claim {i}")
        _check(path, claim)
        out.append(claim)
    return out


def _check(path: Path, c: RangeClaim) -> None:
    lo_hi = len(c.range) == 2 and all(isinstance(v, int | float) for v in c.range) and c.range[0] <= c.range[1]
    problems = {"rule must be " + " or ".join(RULES): c.rule not in RULES, "range must be [low, high]": not lo_hi,
                f"metric must be one of {', '.join(METRIC_NAMES)}": c.metric not in METRIC_NAMES,
                "margin must be in (0, 1)": not 0 < c.margin < 1, "min_seeds must be at least 2": c.min_seeds < 2}
    bad = [what for what, wrong in problems.items() if wrong]
    if bad:
        raise BenchError(f"{path}: sensitivity claim {c.id}: {'; '.join(bad)}")


def matches(claim: RangeClaim, grid: Grid) -> bool:
    return (claim.model, claim.axis) == (grid.model, grid.axis) and claim.dataset in (
        "*", grid.dataset, grid.dataset.split(":")[0])


def judge_range(claim: RangeClaim, grid: Grid) -> RangeVerdict:
    """The claim's verdict on one grid (rules: module docstring and docs/statistics.md)."""
    lo, hi = claim.range
    inside = [p for p in grid.points if grid.numeric and lo <= float(p.value) <= hi]
    outside = [p for p in grid.points if p not in inside]
    if not inside or (claim.rule == "range-matters" and not outside) or len(grid.points) < 2:
        where = "no grid point inside the range" if not inside else "no grid point outside the range"
        return RangeVerdict(claim, grid, INCONCLUSIVE, where)
    mats = {id(p): per_user_matrix(p.rows, claim.metric) for p in grid.points}
    v = _near_best(claim, grid, inside, mats) if claim.rule == "near-best" else \
        _range_matters(claim, grid, inside, outside, mats)
    few = min(grid.points, key=lambda p: p.n)
    if few.n < claim.min_seeds:
        v.verdict, v.reason = INCONCLUSIVE, (f"too few seeds ({few.n} < {claim.min_seeds} at {grid.axis} = "
                                             f"{label(few.value)}); {v.reason}")
    return v


def _near_best(claim: RangeClaim, grid: Grid, inside: list[Point], mats: dict[int, np.ndarray]) -> RangeVerdict:
    floor = 1 - claim.margin
    pairs = [(x, y) for x in inside for y in grid.points if y is not x]
    ests = [stats.seed_ratio(mats[id(x)], mats[id(y)]) for x, y in pairs]
    p_ok = [e.p_above(floor) for e in ests]  # H0: ratio <= 1 - margin, per pair
    p_bad = stats.holm([e.p_below(floor) for e in ests])  # H0: ratio >= 1 - margin, Holm over the pairs
    i = int(np.argmin([e.interval()[0] for e in ests]))  # the weakest pair: lowest lower bound
    (x, y), est = pairs[i], ests[i]
    lo, hi = est.interval()
    a = grid.axis
    v = RangeVerdict(claim, grid, "", "", f"{a} = {label(x.value)} vs {a} = {label(y.value)} (weakest of "
                     f"{len(pairs)} pairs)", est.ratio - 1, lo - 1, hi - 1, max(p_ok),
                     f"intersection-union of {len(pairs)} one-sided t tests on seed means (H0: ratio ≤ "
                     f"{floor:g}); against: Holm over the same pairs (H0: ratio ≥ {floor:g})")
    j = int(np.argmin(p_bad))
    if max(p_ok) < 0.025:
        v.verdict, v.reason = REPRODUCED, (f"every point inside is within {claim.margin:.0%} of every grid point "
                                           "(each pair's 95% lower bound above " f"{floor:g})")
    elif p_bad[j] < 0.025:
        bx, by = pairs[j]
        v.verdict, v.reason = NOT_REPRODUCED, (f"{a} = {label(bx.value)} is significantly more than "
                                               f"{claim.margin:.0%} below {a} = {label(by.value)} (Holm-adjusted "
                                               f"p {p_bad[j]:.3g})")
    else:
        v.verdict, v.reason = INCONCLUSIVE, (f"no pair is significantly more than {claim.margin:.0%} apart, and not "
                                             f"every pair is shown to be within {claim.margin:.0%}")
    return v


def _range_matters(claim: RangeClaim, grid: Grid, inside: list[Point], outside: list[Point],
                   mats: dict[int, np.ndarray]) -> RangeVerdict:
    est = stats.contrast_ratio([mats[id(p)] for p in inside], [mats[id(p)] for p in outside])
    lo, hi = est.interval()
    verdict, why = decide(lo - 1, hi - 1, claim.margin)
    names = ", ".join(label(p.value) for p in inside)
    return RangeVerdict(claim, grid, verdict, f"{why} (claimed size: the margin, {claim.margin:.0%})",
                        f"mean over {grid.axis} in {{{names}}} vs the {len(outside)} other point(s)",
                        est.ratio - 1, lo - 1, hi - 1, est.p_above(1 + claim.margin / 3),
                        f"Welch t on seed means of each point plus the shared per-user variance (df {est.df:.1f}); "
                        f"p tests H0: advantage ≤ {claim.margin / 3:.1%}")


def judge_grids(claims: list[RangeClaim], grids: list[Grid]) -> list[RangeVerdict]:
    return [judge_range(c, g) for c in claims for g in grids if matches(c, g)]


def grid_dict(grid: Grid) -> dict[str, Any]:
    """A grid for summary.json: its axis, fixed settings and per point the numbers of the report."""
    def point(p: Point) -> dict[str, Any]:
        return {"value": p.value, "seeds": [int(s) for s in p.rows["seed"]], "n": p.n,
                "metrics": {m: dict(zip(("mean", "low", "high"), v, strict=True)) for m, v in p.metrics.items()},
                "diagnostics": p.diag, "diagnostics_init": p.diag_init, "epochs_run": p.epochs_run,
                "best_epoch": p.best_epoch, "stop_reasons": p.stops}

    return {"dataset": grid.dataset, "model": grid.model, "axis": grid.axis, "fixed": grid.fixed,
            "points": [point(p) for p in grid.points]}


def verdict_dict(v: RangeVerdict) -> dict[str, Any]:
    c = v.claim
    return {"id": c.id, "statement": c.statement, "source": c.source, "rule": c.rule, "metric": c.metric,
            "range": list(c.range), "margin": c.margin, "dataset": v.grid.dataset if v.grid else c.dataset,
            "model": c.model, "axis": c.axis, "comparison": v.comparison, "estimate": v.estimate,
            "ci": [v.low, v.high], "p_value": v.p_value, "test": v.test, "verdict": v.verdict, "reason": v.reason}


def plot_captions(grid: Grid, i: int) -> tuple[str, ...]:
    """The captions (the report's plot keys) of a section's i-th grid: metrics, and cluster usage
    where the grid's runs have clusters."""
    head = f"sensitivity {i + 1}: {grid.model}, {grid.axis}"
    return (f"{head}, metrics", f"{head}, cluster usage") if grid.clustered else (f"{head}, metrics",)


def fixed_text(grid: Grid) -> str:
    model = ", ".join(f"{k} {label(v)}" for k, v in grid.fixed.items() if not k.startswith("train."))
    train = ", ".join(f"{k[6:]} {label(v)}" for k, v in grid.fixed.items() if k.startswith("train."))
    return f"model: {model or '–'}; training: {train or '–'}"


def _ci(m: tuple[float, float, float]) -> str:
    mean, lo, hi = m
    return f"{mean:.4f} [{lo:.4f}, {hi:.4f}]" if lo == lo else f"{mean:.4f}"


def metric_rows(grid: Grid) -> list[list[str]]:
    return [[label(p.value), str(p.n), *(_ci(p.metrics[m]) for m in METRICS)] for p in grid.points]


def cluster_rows(grid: Grid) -> list[list[str]]:
    def f(d: dict[str, float], key: str, fmt: str) -> str:
        return format(d[key], fmt) if key in d else "–"

    def clusters(p: Point) -> list[str]:
        return [*([] if _axis_is_k(grid) else [f(p.diag, "k", ".0f")]), f(p.diag, "centres_used", ".1f"),
                f(p.diag, "usage_entropy_nats", ".2f"), f(p.diag, "effective_clusters", ".1f"),
                f(p.diag, "effective_share", ".1%"), f(p.diag, "positions_centres_used", ".1f"),
                f(p.diag, "positions_effective_clusters", ".1f"), f(p.diag_init, "effective_clusters", ".1f")]

    return [[label(p.value), *(clusters(p) if grid.clustered else []), f"{p.epochs_run:.0f}", f"{p.best_epoch:.0f}",
             ", ".join(f"{n} {r}" for r, n in sorted(p.stops.items()))] for p in grid.points]


def _axis_is_k(grid: Grid) -> bool:
    """Whether the grid's setting is the number of centres itself (then no separate k column)."""
    return grid.numeric and all(math.isclose(p.diag.get("k", -1.0), float(p.value)) for p in grid.points)


def cluster_headers(grid: Grid) -> list[str]:
    clusters = [*([] if _axis_is_k(grid) else ["k"]), "centres used", "usage entropy (nats)", "effective clusters",
                "share of k", "centres used (positions)", "effective (positions)", "effective at init"]
    return [grid.axis, *(clusters if grid.clustered else []), "epochs run", "best epoch", "stopped by"]


RANGE_HEADERS = ["claim", "statement", "rule", "metric", "comparison", "measured", "95% CI", "p", "verdict", "reason"]
RANGE_LEGEND = (
    "Rules fixed before the runs (docs/statistics.md), seeds the unit, margin δ (5% unless stated): near-best = "
    "every point inside the range is within δ of every grid point: REPRODUCED when every such pair's 95% lower "
    "bound of the ratio of means exceeds 1 − δ (intersection-union test), NOT REPRODUCED when some pair is "
    "significantly below 1 − δ (Holm over the pairs), else INCONCLUSIVE; measured = the weakest pair. "
    "range-matters = the mean over the points inside beats the mean over the points outside by δ: the project's "
    "claim rule with δ as the claimed size. Fewer than 3 seeds at any point: INCONCLUSIVE.")


def range_rows(verdicts: list[RangeVerdict]) -> list[list[str]]:
    def pct(x: float) -> str:
        return "–" if x != x else f"{100 * x:+.1f}%"

    return [[v.claim.id, f"“{v.claim.statement}” ({v.claim.source})", v.claim.rule, v.claim.metric, v.comparison,
             pct(v.estimate), f"[{pct(v.low)}, {pct(v.high)}]", "–" if v.p_value != v.p_value else f"{v.p_value:.3g}",
             f"**{v.verdict}**", v.reason] for v in verdicts]
