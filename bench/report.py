"""`python -m bench report RECORDS...`: tables, significance, claim verdicts, plots. No torch.

The reporter reads records only. Per dataset and protocol fingerprint it builds a table of models
x metrics (mean +- std over seeds), marks the best and the runner-up, marks models significantly
worse than the best (paired t-test over users on seed-averaged per-user metrics, Holm-corrected
over the table), adds cost columns, paired comparisons with bootstrap CIs, failed runs, and the
verdicts of a claims file. Records of different fingerprints are never compared.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench import stats
from bench.claims import Verdict, judge, load_claims
from bench.config import from_namespace, opt
from bench.errors import BenchError
from bench.frame import COST_COLUMNS, best_valid, load_frame, per_user_matrix, time_to_target
from bench.metrics import METRIC_NAMES

HEADLINE = ("HR@5", "NDCG@5", "HR@20", "NDCG@20")
FORMATS = ("md", "tex", "csv", "json")


@dataclass(frozen=True)
class ReportConfig:
    records: tuple[Path, ...] = opt((), help="record files or folders", positional=True)
    format: tuple[str, ...] = opt(("md",), help="comma-separated: md, tex, csv, json")
    out: Path = opt(Path("reports/latest"), help="output folder")
    claims: Path | None = opt(None, help="claims file (TOML); e.g. bench/claims/elcrec.toml")
    reference: str | None = opt(None, help="model whose best validation NDCG@20 is the time-to-target target "
                                "(default: the weakest model, so that every model can reach it)")
    alpha: float = opt(0.05, help="significance level")
    n_boot: int = opt(2000, help="bootstrap replicates")
    seed: int = opt(0, help="seed of the bootstrap")
    plots: bool = opt(True, help="write PNG plots next to the markdown")


@dataclass
class ModelRow:
    model: str
    n: int
    mean: dict[str, float]
    std: dict[str, float]
    cost: dict[str, float]
    worse: dict[str, bool] = field(default_factory=dict)  # significantly worse than the best


@dataclass
class Comparison:
    model: str
    best: str
    metric: str
    rel: float
    low: float
    high: float
    p_t: float
    p_wilcoxon: float
    dz: float
    wtl: tuple[int, int, int]


@dataclass
class Section:
    dataset: str
    protocol: dict[str, Any]
    rows: list[ModelRow]
    comparisons: list[Comparison]
    verdicts: list[Verdict]
    n_tests: int
    target: tuple[str, float] | None
    ok: pd.DataFrame = field(repr=False)


@dataclass
class Report:
    sections: list[Section]
    failed: list[dict[str, Any]]
    notes: list[str]
    alpha: float
    claims_file: str | None


def _seed_mean_per_user(rows: pd.DataFrame, metric: str) -> np.ndarray:
    return per_user_matrix(rows, metric).mean(0)


def _model_rows(ok: pd.DataFrame, target: tuple[str, float] | None) -> list[ModelRow]:
    out = []
    for model, g in ok.groupby("model", sort=True):
        std = g[list(METRIC_NAMES)].std(ddof=1) if len(g) > 1 else pd.Series(math.nan, index=list(METRIC_NAMES))
        cost = {c: float(g[c].mean()) for c in COST_COLUMNS}
        cost["time_to_target_s"] = float(np.nanmean([time_to_target(r, target[1]) for r in g["record"]])) \
            if target and g["record"].map(lambda r: bool(r.get("curve"))).all() else math.nan
        mean = {str(k): float(v) for k, v in g[list(METRIC_NAMES)].mean().items()}
        out.append(ModelRow(str(model), len(g), mean, {str(k): float(v) for k, v in std.items()}, cost))
    return out


def _significance(ok: pd.DataFrame, rows: list[ModelRow], alpha: float) -> int:
    """Marks models significantly worse than the best per metric (Holm over the table)."""
    tests = []
    for metric in METRIC_NAMES:
        best = max(rows, key=lambda r: r.mean[metric])
        b = _seed_mean_per_user(ok[ok.model == best.model], metric)
        for r in rows:
            if r is not best:
                p = stats.paired_t(b, _seed_mean_per_user(ok[ok.model == r.model], metric), "greater").p_value
                tests.append((r, metric, p))
    adjusted = stats.holm([t[2] for t in tests]) if tests else []
    for (r, metric, _), p in zip(tests, adjusted, strict=True):
        r.worse[metric] = bool(p < alpha)
    return len(tests)


def _comparisons(ok: pd.DataFrame, rows: list[ModelRow], cfg: ReportConfig) -> list[Comparison]:
    out = []
    for metric in HEADLINE:
        best = max(rows, key=lambda r: r.mean[metric]).model
        b_all = per_user_matrix(ok[ok.model == best], metric)
        for r in rows:
            if r.model == best:
                continue
            m_all = per_user_matrix(ok[ok.model == r.model], metric)
            rel, lo, hi = stats.hierarchical_bootstrap_ci(m_all, b_all, cfg.n_boot, cfg.seed, cfg.alpha)
            m, b = m_all.mean(0), b_all.mean(0)
            out.append(Comparison(r.model, best, metric, rel, lo, hi, stats.paired_t(m, b).p_value,
                                  stats.wilcoxon(m, b).p_value, stats.cohens_dz(m, b), stats.win_tie_loss(m, b)))
    return out


def _target(ok: pd.DataFrame, reference: str | None) -> tuple[str, float] | None:
    runs = ok[ok["record"].map(lambda r: bool(r.get("curve")))]
    if runs.empty:
        return None
    best = runs.groupby("model")["record"].agg(lambda rs: float(np.nanmean([best_valid(r) for r in rs])))
    model = reference if reference is not None and reference in best.index else str(best.idxmin())
    return model, float(best.loc[model])


def build_report(cfg: ReportConfig) -> Report:
    df = load_frame(list(cfg.records))
    if df.empty:
        raise BenchError(f"no records in {', '.join(map(str, cfg.records))}")
    claims = load_claims(cfg.claims) if cfg.claims else []
    failed = [{"model": r.model, "dataset": r.dataset, "seed": r.seed, "reason": r.reason}
              for r in df[df.status != "ok"].itertuples()]
    ok = df[df.status == "ok"]
    sections, notes = [], []
    for dataset, by_ds in ok.groupby("dataset", sort=True):
        hashes = sorted(by_ds.protocol.unique())
        if len(hashes) > 1:
            notes.append(f"{dataset}: records of {len(hashes)} evaluation protocols are reported in separate "
                         "tables and never compared with each other.")
        for h in hashes:
            part = by_ds[by_ds.protocol == h]
            sections.append(_section(str(dataset), part, claims, cfg))
    return Report(sections, failed, notes, cfg.alpha, str(cfg.claims) if cfg.claims else None)


def _section(dataset: str, ok: pd.DataFrame, claims: list[Any], cfg: ReportConfig) -> Section:
    target = _target(ok, cfg.reference)
    rows = _model_rows(ok, target)
    n_tests = _significance(ok, rows, cfg.alpha) if len(rows) > 1 else 0
    comps = _comparisons(ok, rows, cfg) if len(rows) > 1 else []
    verdicts = [judge(c, ok, cfg.n_boot, cfg.seed, cfg.alpha) for c in claims if c.dataset == dataset]
    proto = dict(ok.iloc[0]["record"]["protocol"])
    return Section(dataset, proto, rows, comps, verdicts, n_tests, target, ok)


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
        recs = list(sec.ok[sec.ok.model == r.model].record)
        prov = [rec.get("provenance") or {} for rec in recs]
        gits = [p.get("git") or {} for p in prov]
        commits = [str(g.get("commit", ""))[:7] + ("+dirty" if g.get("dirty") else "") for g in gits]
        devices = [rec.get("device") or {} for rec in recs]
        machines = [f"{d.get('type', 'cpu')}: {d.get('name') or p.get('cpu') or p.get('machine')}"
                    for p, d in zip(prov, devices, strict=True)]
        table.append([r.model, str(len(recs)), _distinct(commits), _distinct(machines),
                      _distinct([d.get("torch_threads") for d in devices]),
                      _distinct([(p.get("libraries") or {}).get("torch") for p in prov])])
    return table


PROVENANCE_HEADERS = ["model", "runs", "commit", "machine", "torch threads", "torch"]


def significance_caption(sec: Section, alpha: float) -> str:
    return (f"mean ± std over seeds; best in bold, runner-up underlined; † = significantly worse than the best "
            f"(one-sided paired t-test over users on seed-averaged per-user metrics, Holm-corrected over "
            f"{sec.n_tests} comparisons, α = {alpha})")


def verdict_rows(verdicts: list[Verdict]) -> list[list[str]]:
    return [[v.claim.id, f"{v.claim.subject} vs {v.reference}", v.claim.metric, pct(v.claim.claimed),
             pct(v.estimate), f"[{pct(v.low)}, {pct(v.high)}]", fmt_p(v.p_value), v.n, v.verdict, v.reason]
            for v in verdicts]


VERDICT_HEADERS = ["claim", "comparison", "metric", "claimed", "measured", "95% CI", "p", "n", "verdict", "reason"]


def summary_rows(report: Report) -> list[dict[str, Any]]:
    out = []
    for sec in report.sections:
        for r in sec.rows:
            row: dict[str, Any] = {"dataset": sec.dataset, "protocol": sec.protocol.get("hash"), "model": r.model,
                                   "n": r.n}
            row.update({f"{m} mean": r.mean[m] for m in METRIC_NAMES})
            row.update({f"{m} std": r.std[m] for m in METRIC_NAMES})
            row.update(r.cost)
            out.append(row)
    return out


def verdict_dicts(report: Report) -> list[dict[str, Any]]:
    return [{**asdict(v.claim), "reference_model": v.reference, "verdict": v.verdict, "reason": v.reason,
             "estimate": v.estimate, "ci": [v.low, v.high], "p_value": v.p_value, "test": v.test, "n": v.n}
            for s in report.sections for v in s.verdicts]


def cmd_report(ns: argparse.Namespace) -> int:
    from bench.render import write_outputs

    cfg = from_namespace(ReportConfig, ns)
    bad = set(cfg.format) - set(FORMATS)
    if bad:
        raise BenchError(f"unknown format(s) {', '.join(sorted(bad))}; known: {', '.join(FORMATS)}")
    report = build_report(cfg)
    written = write_outputs(report, cfg)
    for path in written:
        print(path)
    if report.failed:
        print(f"{len(report.failed)} failed run(s) listed in the report", file=sys.stderr)
    return 0


def to_json(report: Report) -> str:
    return json.dumps({"summary": summary_rows(report), "claims": verdict_dicts(report), "failed": report.failed,
                       "notes": report.notes}, indent=2, default=float)

