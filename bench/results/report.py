"""`python -m bench report RECORDS...`: tables, significance, claim verdicts and plots. No torch.

The reporter reads records only. Per dataset and protocol fingerprint it builds a table of models
x metrics (mean +- std over seeds), marks the best and the runner-up, marks models significantly
worse than the best (two-sided tests of every pair of models on seed means, `stats.seed_ratio`,
Holm-corrected over the table; none below `--min-seeds` seeds a model), shows each model's
measured seed-to-seed spread, adds cost columns, paired comparisons with intervals whose unit is
the seed, failed runs, and the verdicts of a claims file (what they mean: `bench.results.claims`; their
calibration: docs/statistics.md). Records of different fingerprints are never compared.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.config import opt
from bench.errors import BenchError
from bench.metrics import METRIC_NAMES
from bench.results import stats
from bench.results.claims import (
    INCONCLUSIVE,
    PAIRED_VALUES,
    Verdict,
    judge,
    leader,
    load_claims,
    paired_epochs,
    time_to_target_ratio,
)
from bench.results.frame import COST_COLUMNS, best_valid, curve, load_frame, per_user_matrix, time_to_target
from bench.results.published import Beside, beside, load_published, published_path
from bench.results.schema import CodeVersion, CostRecord, EvalRecord, Measured, RecordedProtocol, RunRecord
from bench.results.sensitivity import (
    Grid,
    RangeClaim,
    RangeVerdict,
    distinct_settings,
    find_grids,
    grid_dict,
    judge_grids,
    load_range_claims,
    verdict_dict,
)

HEADLINE = ("HR@5", "NDCG@5", "HR@20", "NDCG@20")
FORMATS = ("md", "tex", "csv", "json")


@dataclass(frozen=True)
class ReportConfig:
    records: tuple[Path, ...] = opt((), help="record files or folders", positional=True)
    format: tuple[str, ...] = opt(("md",), help="comma-separated: md, tex, csv, json")
    out: Path = opt(Path("reports/latest"), help="output folder")
    claims: Path | None = opt(None, help="claims file (TOML); e.g. bench/claims/elcrec.toml")
    published: Path | None = opt(None, help="published numbers (TOML) shown beside ours, e.g. "
                                 "bench/claims/published.toml (default: the file the claims file names)")
    reference: str | None = opt(None, help="model whose best validation NDCG@20 is the time-to-target target "
                                "(default: the weakest model, so that every model can reach it)")
    alpha: float = opt(0.05, help="significance level of the daggers (family-wise, Holm)")
    min_seeds: int = opt(3, help="seeds a model needs before a dagger marks it")
    plots: bool = opt(True, help="write PNG plots next to the markdown")
    datasets: tuple[str, ...] = opt((), help="comma-separated datasets to report (default: every dataset in the "
                                    "records)")


@dataclass
class ModelRow:
    model: str
    n: int
    mean: dict[str, float]
    std: dict[str, float]
    cost: dict[str, float]
    worse: dict[str, bool] = field(default_factory=dict)  # significantly worse than the best
    spread: dict[str, float] = field(default_factory=dict)  # measured seed-to-seed spread (relative sd)


@dataclass
class Comparison:
    model: str
    best: str
    metric: str
    rel: float
    low: float
    high: float
    p_t: float  # two-sided, on seed means (one seed a side: over users, these seeds only)
    scope: str
    seeds: tuple[int, int]  # (model, best)
    p_wilcoxon: float
    dz: float
    wtl: tuple[int, int, int]


@dataclass
class Section:
    dataset: str
    protocol: RecordedProtocol
    rows: list[ModelRow]
    comparisons: list[Comparison]
    verdicts: list[Verdict]
    n_tests: int
    target: tuple[str, float] | None
    ok: pd.DataFrame = field(repr=False)
    paired: list[Any] = field(default_factory=list)  # PairedCost of the paired cost benchmark
    grids: list[Grid] = field(default_factory=list)  # one-setting grids of a model (bench.results.sensitivity)
    ranges: list[RangeVerdict] = field(default_factory=list)  # the range claims judged on them
    published: list[Beside] = field(default_factory=list)  # our seed means beside published numbers
    untested: list[str] = field(default_factory=list)  # models left out of the † tests: too few seeds


@dataclass
class Report:
    sections: list[Section]
    failed: list[dict[str, Any]]
    notes: list[str]
    alpha: float
    claims_file: str | None
    unjudged: list[Verdict] = field(default_factory=list)  # claims not runnable here, or without records
    unjudged_ranges: list[RangeClaim] = field(default_factory=list)  # range claims without a grid here


def _seed_mean_per_user(rows: pd.DataFrame, metric: str) -> np.ndarray:
    return per_user_matrix(rows, metric).mean(0)


def _model_rows(ok: pd.DataFrame, target: tuple[str, float] | None) -> list[ModelRow]:
    out = []
    for model, g in ok.groupby("model", sort=True):
        std = g[list(METRIC_NAMES)].std(ddof=1) if len(g) > 1 else pd.Series(math.nan, index=list(METRIC_NAMES))
        cost = {c: float(g[c].mean()) for c in COST_COLUMNS}
        cost["time_to_target_s"] = float(np.nanmean([time_to_target(r, target[1]) for r in g["record"]])) \
            if target and g["record"].map(lambda r: bool(curve(r))).all() else math.nan
        mean = {str(k): float(v) for k, v in g[list(METRIC_NAMES)].mean().items()}
        out.append(ModelRow(str(model), len(g), mean, {str(k): float(v) for k, v in std.items()}, cost))
    return out


def _leader(rows: list[ModelRow], metric: str, min_seeds: int) -> str:
    """`claims.leader` over the table's rows: the best on `metric` among models with `min_seeds` seeds."""
    return leader(pd.Series({r.model: r.mean[metric] for r in rows}), pd.Series({r.model: r.n for r in rows}),
                  min_seeds)


def _significance(ok: pd.DataFrame, rows: list[ModelRow], alpha: float, min_seeds: int) -> tuple[int, list[str]]:
    """Marks models significantly worse than the best tested model per metric: every pair tested
    two-sided (the best is chosen after looking, so only a family over all pairs stays honest), Holm
    over the table. Models with fewer than `min_seeds` seeds (an evaluated checkpoint, a first seed)
    are left out of the tests and never marked. Returns the number of tests and the models left out
    (none when nothing is tested)."""
    tested = [r for r in rows if r.n >= max(min_seeds, 2)]
    if len(tested) < 2:
        return 0, []
    tests = []
    for metric in METRIC_NAMES:
        mats = {r.model: per_user_matrix(ok[ok.model == r.model], metric) for r in tested}
        tests += [(metric, a, b, p) for (a, b), p in stats.pairwise_p(mats).items()]
    adjusted = stats.holm([t[3] for t in tests]) if tests else []
    by_name = {r.model: r for r in tested}
    best = {m: _leader(tested, m, 0) for m in METRIC_NAMES}
    for (metric, a, b, _), p in zip(tests, adjusted, strict=True):
        if p < alpha and best[metric] in (a, b):
            by_name[b if best[metric] == a else a].worse[metric] = True
    return len(tests), [r.model for r in rows if r.model not in by_name]


def _comparisons(ok: pd.DataFrame, rows: list[ModelRow], cfg: ReportConfig) -> list[Comparison]:
    out = []
    for metric in HEADLINE:
        best = _leader(rows, metric, max(cfg.min_seeds, 2))
        b_all = per_user_matrix(ok[ok.model == best], metric)
        for r in rows:
            if r.model == best:
                continue
            m_all = per_user_matrix(ok[ok.model == r.model], metric)
            est = stats.seed_ratio(m_all, b_all)
            lo, hi = est.interval(cfg.alpha)
            m, b = m_all.mean(0), b_all.mean(0)
            out.append(Comparison(r.model, best, metric, est.ratio - 1, lo - 1, hi - 1, est.p_two_sided(), est.scope,
                                  (est.n_subject, est.n_reference), stats.wilcoxon(m, b).p_value,
                                  stats.cohens_dz(m, b), stats.win_tie_loss(m, b)))
    return out


def _spread(ok: pd.DataFrame, rows: list[ModelRow]) -> None:
    """Each model's seed-to-seed spread of its true mean, measured from its runs (headline metrics)."""

    for r in rows:
        for metric in HEADLINE:
            r.spread[metric] = stats.seed_spread(per_user_matrix(ok[ok.model == r.model], metric))


def _target(ok: pd.DataFrame, reference: str | None) -> tuple[str, float] | None:
    runs = ok[ok["record"].map(lambda r: bool(curve(r)))]
    if runs.empty:
        return None
    best = runs.groupby("model")["record"].agg(lambda rs: float(np.nanmean([best_valid(r) for r in rs])))
    model = reference if reference is not None and reference in best.index else str(best.idxmin())
    return model, float(best.loc[model])


def build_report(cfg: ReportConfig) -> Report:
    df = load_frame(list(cfg.records))
    if cfg.datasets:  # a study's own datasets, where the records it compares with hold others too
        df = df[df.dataset.map(lambda d: str(d).split(":")[0] in cfg.datasets)]
    if df.empty:
        raise BenchError(f"no records in {', '.join(map(str, cfg.records))}"
                         + (f" of {', '.join(cfg.datasets)}" if cfg.datasets else ""))
    claims = load_claims(cfg.claims) if cfg.claims else []
    ranges = load_range_claims(cfg.claims) if cfg.claims else []
    pub_file = cfg.published or (published_path(cfg.claims) if cfg.claims else None)
    published = load_published(pub_file) if pub_file else []
    failed = [{"model": r.model, "dataset": r.dataset, "seed": r.seed, "reason": r.reason}
              for r in df[df.status != "ok"].itertuples()]
    ok = df[df.status == "ok"]
    costs, ok = ok[ok.kind == "cost"], _checkpoints_apart(ok[ok.kind != "cost"])  # cost: the paired benchmark's
    sections, notes = [], []
    for dataset, by_ds in ok.groupby("dataset", sort=True):
        hashes = sorted(by_ds.protocol.unique())
        if len(hashes) > 1:
            notes.append(f"{dataset}: records of {len(hashes)} evaluation protocols are reported in separate "
                         "tables and never compared with each other.")
        for h in hashes:
            part = by_ds[by_ds.protocol == h]
            sections.append(_section(str(dataset), part, claims, cfg, costs[costs.dataset == dataset]))
            sections[-1].published = beside(part, str(dataset), published)
            sections[-1].ranges = judge_grids(ranges, sections[-1].grids)
            notes += _pooled_notes(sections[-1])
    judged = {v.claim.id for sec in sections for v in sec.verdicts}
    unjudged = [_unjudged(c, costs) for c in claims if c.id not in judged]
    report = Report(sections, failed, notes, cfg.alpha, str(cfg.claims) if cfg.claims else None, unjudged)
    report.unjudged_ranges = [c for c in ranges if all(v.claim is not c for s in sections for v in s.ranges)]
    return report


def _checkpoints_apart(ok: pd.DataFrame) -> pd.DataFrame:
    """Evaluated checkpoints of a model that also has training runs under the same dataset and
    protocol are named `model[checkpoint]`: a released checkpoint is not one more seed of our
    training, and a claim about the model is judged on the runs."""
    if ok.empty:
        return ok
    both = ok.groupby(["dataset", "protocol", "model"])["kind"].transform(lambda k: {"run", "eval"} <= set(k))
    ok = ok.copy()
    ok.loc[both.astype(bool) & (ok.kind == "eval"), "model"] += "[checkpoint]"
    return ok


def _pooled_notes(sec: Section) -> list[str]:
    """A row of the main table whose records hold several settings (defaults that changed between
    code versions, say: the label names only what differs from the preset): say so."""
    out = []
    for model, rows in sec.ok.groupby("model", sort=True):
        n = distinct_settings(list(rows.record))
        if n > 1:
            out.append(f"{sec.dataset}: {model}'s records hold {n} settings that its name does not tell apart; its "
                       "row in the main table pools them.")
    return out


def _unjudged(claim: Any, costs: pd.DataFrame) -> Verdict:
    """A claim of a dataset without training or evaluation records: not runnable here, judged on the
    paired cost benchmark alone (a per-epoch cost claim), or not run."""
    if not claim.runnable:
        return judge(claim, costs.iloc[:0])
    mine = costs[costs.dataset == claim.dataset]
    if claim.kind == "cost" and claim.metric in PAIRED_VALUES and claim.reference != "runner-up":
        v = judge(claim, costs.iloc[:0], mine)
        if "paired" in v.test:
            return v
    latest = paired_epochs(mine, claim.subject, claim.reference) if claim.metric == "gpu_memory" else None
    if latest is not None:  # the latest benchmark's, as the time claims
        rss = ", ".join(f"{r.model} {r.memory.rss_avg_mb:.0f} / {r.memory.peak_rss_mb:.0f} MB" for r in mine["record"]
                        if r.pair == latest[2].pair and r.model in (claim.subject, claim.reference))
        return Verdict(claim, claim.reference, INCONCLUSIVE, "needs a GPU: the paired cost benchmark ran on "
                       f"{latest[2].device.name or 'CPU'} (average / peak RSS during training: {rss})",
                       why="needs a GPU")
    return Verdict(claim, claim.reference, "NOT RUN", f"no records of {claim.dataset}")


def _section(dataset: str, ok: pd.DataFrame, claims: list[Any], cfg: ReportConfig,
             costs: pd.DataFrame | None = None) -> Section:
    target = _target(ok, cfg.reference)
    rows = _model_rows(ok, target)
    n_tests, untested = _significance(ok, rows, cfg.alpha, cfg.min_seeds) if len(rows) > 1 else (0, [])
    comps = _comparisons(ok, rows, cfg) if len(rows) > 1 else []
    _spread(ok, rows)
    verdicts = [judge(c, ok, costs) for c in claims if c.dataset == dataset and c.runnable]
    sec = Section(dataset, ok.iloc[0]["record"].protocol, rows, comps, verdicts, n_tests, target, ok)
    sec.untested = untested
    sec.paired = _paired_costs(ok, costs)
    sec.grids = find_grids(ok, dataset)
    return sec


@dataclass
class PairedCost:
    """A pair of the paired cost benchmark: per-epoch cost ratio, and time to the reference's best
    validation NDCG@20 relative to the reference's (from the training runs, per seed)."""

    subject: str
    reference: str
    rounds: int
    per_epoch: stats.LogRatio
    to_target: stats.LogRatio | None
    to_target_note: str
    load: tuple[float, float]
    machine: str
    gpu_memory: stats.LogRatio | None = None  # average GPU memory ratio over the rounds (CUDA only)


def _paired_costs(ok: pd.DataFrame, costs: pd.DataFrame | None) -> list[PairedCost]:
    """One row per `bench cost` benchmark and compared model, oldest first: benchmarks on other
    machines stand side by side (a claim is judged on the latest)."""
    out: list[PairedCost] = []
    if costs is None or costs.empty:
        return out
    subjects = [r for r in costs["record"] if isinstance(r, CostRecord) and r.model == r.models[0]]
    for rec in sorted(subjects, key=lambda r: r.created or ""):  # one entry per pair: its subject's record
        for ref in rec.models[1:]:
            pair = paired_epochs(costs, rec.model, ref, rec.pair)
            if pair is None:
                continue
            est = stats.paired_ratio(pair[0], pair[1])
            tt, note = time_to_target_ratio(ok[ok.model == rec.model], ok[ok.model == ref], est)
            loads = [e.loadavg_before[0] for e in rec.epochs]
            mem = paired_epochs(costs, rec.model, ref, rec.pair, value="gpu_avg_mb")
            out.append(PairedCost(rec.model, ref, len(pair[0]), est, tt, note, (min(loads), max(loads)),
                                  f"{rec.device.name}, {rec.device.torch_threads} threads",
                                  stats.paired_ratio(mem[0], mem[1]) if mem else None))
    return out


# ---------------------------------------------------------------- rendering


def fmt(x: float, digits: int = 4) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def pct(x: float) -> str:
    return "–" if math.isnan(x) else f"{100 * x:+.1f}%"


def fmt_p(p: float) -> str:
    return "–" if math.isnan(p) else ("<1e-4" if p < 1e-4 else f"{p:.4f}")


def _cell(r: ModelRow, metric: str, rank: int, bold: tuple[str, str], under: tuple[str, str], dagger: str) -> str:
    s = fmt(r.mean[metric])
    if not math.isnan(r.std[metric]):
        s += f" ± {fmt(r.std[metric])}"
    if rank == 0:
        s = f"{bold[0]}{s}{bold[1]}"
    elif rank == 1:
        s = f"{under[0]}{s}{under[1]}"
    return s + (dagger if r.worse.get(metric) else "")


def quality_table(sec: Section, bold: tuple[str, str], under: tuple[str, str], dagger: str) -> list[list[str]]:
    order = {m: sorted(sec.rows, key=lambda r: -r.mean[m]) for m in METRIC_NAMES}
    table = []
    for r in sec.rows:
        cells = [_cell(r, m, order[m].index(r), bold, under, dagger) for m in METRIC_NAMES]
        table.append([r.model, str(r.n), *cells])
    return table


def cost_table(sec: Section) -> list[list[str]]:
    keys = ("epoch_mean_s", "train_total_s", "time_to_best_s", "time_to_target_s", "peak_rss_mb", "peak_gpu_mb")
    return [[r.model, *(fmt(r.cost[k], 1) for k in keys)] for r in sec.rows]


COST_HEADERS = ["model", "s/epoch", "train s", "to best s", "to target s", "peak RSS MB", "peak GPU MB"]


def _distinct(values: list[Any]) -> str:
    """The distinct values, sorted, comma-separated; "–" when none is known."""
    known = sorted({str(v) for v in values if v is not None and v != ""})
    return ", ".join(known) or "–"


def provenance_table(sec: Section) -> list[list[str]]:
    """Per model, where its runs come from: commits (+dirty), machines, torch threads per run, torch.
    Costs are only comparable on one machine and thread count, and CPU metrics are bit-identical only
    at the same commit and thread count."""
    table = []
    for r in sec.rows:
        recs = [rec for rec in sec.ok[sec.ok.model == r.model].record if isinstance(rec, Measured)]
        commits = [_commit(rec.provenance.git) for rec in recs]
        machines = [m for rec in recs for m in _machines(rec)]
        table.append([r.model, str(len(recs)), _distinct(commits), _distinct(machines),
                      _distinct([rec.device.torch_threads for rec in recs]),
                      _distinct([rec.provenance.libraries.get("torch") for rec in recs])])
    return table


def _machines(rec: Measured) -> list[str]:
    """The device(s) a record's run trained on: each stretch's where it was resumed."""
    segments = rec.segments if isinstance(rec, RunRecord) else None
    if segments:
        return [str(seg.get("device")) for seg in segments]
    return [f"{rec.device.type or 'cpu'}: {rec.device.name or rec.provenance.cpu or rec.provenance.machine}"]


def machine_warnings(records: list[Any]) -> list[str]:
    """One warning per run that trained on more than one device (resumed elsewhere): its epoch
    times, time to best and training time mix machines of other speeds."""
    out = []
    for rec in records:
        segments = rec.segments if isinstance(rec, RunRecord) else None
        if segments and len({seg.get("device") for seg in segments}) > 1:
            parts = [f"from epoch {seg.get('from_epoch', 0) + 1} on {seg.get('device')}" for seg in segments]
            out.append(f"{rec.model} s{rec.seed} trained on more than one machine ({'; '.join(parts)}): its times "
                       "are no one machine's")
    return out


def _commit(git: CodeVersion | None) -> str:
    """`abc1234+dirty`; "" for a record of code before code versions were recorded."""
    return "" if git is None else str(git.commit)[:7] + ("+dirty" if git.dirty else "")


PROVENANCE_HEADERS = ["model", "runs", "commit", "machine", "torch threads", "torch"]

RUN_METRICS = ("HR@5", "NDCG@5", "HR@10", "NDCG@10", "HR@20", "NDCG@20")


def run_rows(sec: Section) -> list[dict[str, Any]]:
    """One dict per training run: how it trained (epochs, best epoch counted from 1, why it stopped),
    its test metrics, how alike its users' scoring vectors are (mean cosine; near 1: a collapse) and,
    for intent models, the centres its users use. Empty without training runs (evaluations only)."""
    runs = sorted(((m, r) for m, r in zip(sec.ok.model, sec.ok.record, strict=True) if isinstance(r, RunRecord)),
                  key=lambda mr: (mr[0], mr[1].seed or 0))
    return [{"dataset": sec.dataset, "model": m, "seed": r.seed, "epochs": r.epochs_run,
             "best_epoch": (r.best_epoch or 0) + 1, "stop_reason": r.stop_reason,
             **{k: r.metrics.get(k, math.nan) for k in RUN_METRICS},
             **_users(r)} for m, r in runs]


def _users(r: RunRecord | EvalRecord) -> dict[str, Any]:
    """How alike the users' scoring vectors are, and how many centres they use (intent models)."""
    diag = r.diagnostics or {}
    return {"users_mean_cosine": (r.representation or {}).get("mean_cosine", math.nan),
            "centres_used": diag.get("centres_used"), "effective_clusters": diag.get("effective_clusters", math.nan),
            "positions_centres_used": diag.get("positions_centres_used"),
            "positions_effective_clusters": diag.get("positions_effective_clusters", math.nan)}


def _user_cells(d: dict[str, Any]) -> list[str]:
    """Users' cosine; centres used and effective clusters as "by users / by positions" (– where a
    record of older code has no position counts)."""
    def count(x: Any) -> str:
        return "–" if x is None else str(int(x))

    used = count(d["centres_used"])
    if d["positions_centres_used"] is not None:
        used += f" / {count(d['positions_centres_used'])}"
    eff = fmt(d["effective_clusters"], 2)
    if d["positions_effective_clusters"] == d["positions_effective_clusters"]:  # not nan
        eff += f" / {fmt(d['positions_effective_clusters'], 1)}"
    return [fmt(d["users_mean_cosine"], 3), used, eff]


def runs_table(sec: Section) -> list[list[str]]:
    return [[d["model"], str(d["seed"]), str(d["epochs"]), str(d["best_epoch"]), str(d["stop_reason"]),
             *(fmt(d[k]) for k in RUN_METRICS), *_user_cells(d)] for d in run_rows(sec)]


USER_HEADERS = ["users' cosine", "centres used", "effective clusters"]
RUN_HEADERS = ["model", "seed", "epochs", "best epoch", "stopped by", *RUN_METRICS, *USER_HEADERS]


def eval_rows(sec: Section) -> list[dict[str, Any]]:
    """One dict per evaluated checkpoint (`bench eval`): its file, test metrics and users."""
    evals = sorted(((m, r) for m, r in zip(sec.ok.model, sec.ok.record, strict=True) if isinstance(r, EvalRecord)),
                   key=lambda mr: (mr[0], str(mr[1].checkpoint)))
    return [{"dataset": sec.dataset, "model": m, "checkpoint": Path(str(r.checkpoint)).name,
             **{k: r.metrics.get(k, math.nan) for k in RUN_METRICS}, **_users(r)} for m, r in evals]


def evals_table(sec: Section) -> list[list[str]]:
    return [[d["model"], d["checkpoint"], *(fmt(d[k]) for k in RUN_METRICS), *_user_cells(d)]
            for d in eval_rows(sec)]


EVAL_HEADERS = ["model", "checkpoint", *RUN_METRICS, *USER_HEADERS]


def published_table(sec: Section) -> tuple[list[str], list[list[str]]]:
    """Headers and rows: per model and source, each published metric as "ours / published: ours ÷
    published − 1 [95% t interval over our seeds]"."""
    metrics = [m for m in METRIC_NAMES if any(b.metric == m for b in sec.published)]
    rows: dict[tuple[str, str], dict[str, Beside]] = {}
    for b in sec.published:
        rows.setdefault((b.model, b.source), {})[b.metric] = b
    table = []
    for (model, source), cells in rows.items():
        n = next(iter(cells.values())).seeds
        table.append([model, str(n), source, *(_beside_cell(cells.get(m)) for m in metrics)])
    return ["model", "seeds", "published by", *metrics], table


def _beside_cell(b: Beside | None) -> str:
    if b is None:
        return "–"
    ci = f" [{pct(b.low)}, {pct(b.high)}]" if b.low == b.low else ""
    return f"{fmt(b.ours)} / {fmt(b.published)}: {pct(b.rel)}{ci}"


def significance_caption(sec: Section, alpha: float) -> str:
    if not sec.n_tests:
        return ("mean ± std over seeds; best in bold, runner-up underlined; no † marks: fewer seeds per model than "
                "the tests need (seeds are the unit of inference; docs/statistics.md)")
    left_out = f"; not tested, too few seeds: {', '.join(sec.untested)}" if sec.untested else ""
    return (f"mean ± std over seeds; best in bold, runner-up underlined; † = significantly worse than the best "
            f"model with enough seeds to be tested (two-sided tests of every pair of models on seed means, "
            f"Holm-corrected over {sec.n_tests} comparisons, α = {alpha}; calibration in docs/statistics.md)"
            f"{left_out}")


def spread_table(sec: Section) -> list[list[str]]:
    """Per model, the measured seed-to-seed spread of its true mean (relative sd) per headline metric."""
    return [[r.model, str(r.n), *(pct_plain(r.spread.get(m, math.nan)) for m in HEADLINE)] for r in sec.rows]


SPREAD_HEADERS = ["model", "seeds", *HEADLINE]


def pct_plain(x: float) -> str:
    return "–" if math.isnan(x) else f"{100 * x:.1f}%"


def verdict_rows(verdicts: list[Verdict]) -> list[list[str]]:
    return [[v.claim.id, f"{v.claim.subject} vs {v.reference}",
             v.claim.metric + (" (lower)" if v.claim.direction == "lower" else ""), pct(v.claim.claimed),
             pct(v.estimate), f"[{pct(v.low)}, {pct(v.high)}]", fmt_p(v.p_value), pct_plain(v.detectable),
             "–" if v.seeds_needed is None else str(v.seeds_needed), v.n, v.verdict, v.reason]
            for v in verdicts]


VERDICT_HEADERS = ["claim", "comparison", "metric", "claimed", "measured", "95% CI", "p (≤ ⅓ claim)",
                   "detectable", "seeds needed", "n", "verdict", "reason"]
CHECK_TITLES = {"paper": "the paper's own numbers", "released-checkpoints": "the released checkpoints (a separate "
                "check: the claimed sizes are what the authors' released seed-1 checkpoints score)",
                "transfer": "transfer to other domains (not the paper's claims: its Beauty effect sizes, asked of "
                "other domains)"}
VERDICT_LEGEND = (
    "Claimed and measured sizes are in the claimed direction (\"(lower)\": lower is the claim). "
    "Verdicts (c = the claimed size, 95% CI of the effect in the claimed direction, seeds the unit): "
    "REPRODUCED = the CI excludes c/3 and holds c; SMALLER THAN CLAIMED = the CI excludes c; NOT REPRODUCED = "
    "the CI excludes c/3 and does not exclude zero, or lies below zero; INCONCLUSIVE = the CI holds c and reaches "
    "c/3, or too few seeds, or not the paper's protocol; THESE SEEDS ONLY (...) = one seed (run) a side, the "
    "interval is over users and says nothing of other seeds. p tests H0: effect ≤ c/3 (the REPRODUCED test). "
    "A null effect is called REPRODUCED at most 2.5% of the time, a third of the claim at most 2.5%; the "
    "calibration tables are in docs/statistics.md. Detectable = the smallest effect a two-sided test at α 0.05 "
    "finds with 80% power on this evidence; seeds needed = seeds per model for 80% power of REPRODUCED at c.")


def summary_rows(report: Report) -> list[dict[str, Any]]:
    out = []
    for sec in report.sections:
        for r in sec.rows:
            row: dict[str, Any] = {"dataset": sec.dataset, "protocol": sec.protocol.hash, "model": r.model,
                                   "n": r.n}
            row.update({f"{m} mean": r.mean[m] for m in METRIC_NAMES})
            row.update({f"{m} std": r.std[m] for m in METRIC_NAMES})
            row.update(r.cost)
            row.update({f"{m} seed spread": r.spread.get(m, math.nan) for m in HEADLINE})
            out.append(row)
    return out


def verdict_dicts(report: Report) -> list[dict[str, Any]]:
    return [{**asdict(v.claim), "reference_model": v.reference, "verdict": v.verdict, "reason": v.reason,
             "estimate": v.estimate, "ci": [v.low, v.high], "p_value": v.p_value, "p_value_test": "H0: effect <= "
             "claimed / 3", "p_zero": v.p_zero, "test": v.test, "n": v.n, "detectable": v.detectable,
             "seeds_needed": v.seeds_needed, "power_note": v.power_note, "why": v.why}
            for v in [*(v for s in report.sections for v in s.verdicts), *report.unjudged]]


def to_json(report: Report) -> str:
    sens = {"grids": [grid_dict(g) for s in report.sections for g in s.grids],
            "claims": [verdict_dict(v) for s in report.sections for v in s.ranges],
            "unjudged": [c.id for c in report.unjudged_ranges]}
    runs = [row for s in report.sections for row in run_rows(s)]
    evals = [row for s in report.sections for row in eval_rows(s)]
    published = [{"dataset": s.dataset, "protocol": s.protocol.hash, **asdict(b)} for s in report.sections
                 for b in s.published]
    return json.dumps({"summary": summary_rows(report), "claims": verdict_dicts(report), "failed": report.failed,
                       "notes": report.notes, "sensitivity": sens, "runs": runs, "evaluations": evals,
                       "published": published},
                      indent=2, default=_json_default)


def _json_default(x: Any) -> Any:
    """numpy scalars as numbers; anything else (a tuple-valued setting) as text."""
    return x.item() if isinstance(x, np.generic) else str(x)

