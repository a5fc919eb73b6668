"""PNG plots next to the markdown report (matplotlib, no display needed). No torch."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from bench.protocol import PHASES
from bench.results import stats
from bench.results.frame import curve, epoch_times
from bench.results.report import Report, Section
from bench.results.schema import Measured, Record
from bench.results.sensitivity import METRICS, Grid, diag_values, label, plot_captions


def _trained(sec: Section) -> pd.DataFrame:
    """The section's training runs (records with a validation curve)."""
    return sec.ok[sec.ok["record"].map(lambda r: bool(curve(r)))]


def _save(fig: Figure, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _curves(runs: pd.DataFrame, ax: plt.Axes, dataset: str) -> None:
    for model, g in runs.groupby("model"):
        curves = [np.array([c.valid["NDCG@20"] for c in curve(r)]) for r in g["record"]]
        n = min(map(len, curves))
        m = np.stack([c[:n] for c in curves])
        x = np.arange(n)
        ax.plot(x, m.mean(0), label=f"{model} (n={len(m)})")
        ax.fill_between(x, m.min(0), m.max(0), alpha=0.2)
    ax.set(xlabel="epoch", ylabel="validation NDCG@20", title=f"{dataset}: validation (mean, band = min-max)")


def _phases(runs: pd.DataFrame, ax: plt.Axes, dataset: str) -> None:
    models = sorted(runs.model.unique())
    bottom = np.zeros(len(models))
    for phase in PHASES:
        vals = np.array([np.mean([np.mean([c.seconds[phase] for c in curve(r)])
                                  for r in runs[runs.model == m]["record"]]) for m in models])
        ax.bar(models, vals, bottom=bottom, label=phase)
        bottom += vals
    ax.set(ylabel="seconds per epoch", title=f"{dataset}: time per epoch by phase")


def _scatter(runs: pd.DataFrame, ax: plt.Axes, dataset: str) -> None:
    for model, g in runs.groupby("model"):
        t = [float(np.mean(epoch_times(r))) for r in g["record"]]
        ax.errorbar(np.mean(t), g["NDCG@10"].mean(), xerr=np.std(t), yerr=g["NDCG@10"].std(ddof=0), fmt="o",
                    label=str(model))
    ax.set(xlabel="seconds per epoch", ylabel="test NDCG@10", title=f"{dataset}: quality vs cost")


def _timeline(rec: Record) -> dict[str, Any] | None:
    sampled = rec.memory.sampled if isinstance(rec, Measured) else None
    return sampled.timeline if sampled else None


def _memory(runs: pd.DataFrame, ax: plt.Axes, dataset: str) -> None:
    """Resident memory (and GPU memory where sampled) over one epoch of each model's first run with a
    timeline: the paper's memory claim is an average over training, which a peak cannot show."""
    for model, g in runs.groupby("model"):
        tl = next((t for t in map(_timeline, g.sort_values("seed")["record"]) if t), None)
        if tl is None:
            continue
        line = ax.plot(tl["t"], tl["rss_mb"], label=f"{model} RSS (epoch {tl['epoch']})")[0]
        gpu = [np.nan if v is None else v for v in tl.get("gpu_allocated_mb") or []]
        if gpu and not np.all(np.isnan(gpu)):
            ax.plot(tl["t"], gpu, ls="--", color=line.get_color(), label=f"{model} GPU allocated")
    ax.set(xlabel="seconds into the epoch", ylabel="MB", title=f"{dataset.split(':')[0]}: memory over one epoch")


# caption, drawing function, file name prefix, figure width (inches)
_RUN_PLOTS = (("validation curves", _curves, "curves", 6.0), ("time per epoch by phase", _phases, "phases", 6.0),
              ("quality vs cost", _scatter, "scatter", 5.0), ("memory over one epoch", _memory, "memory", 6.0))


def _claim_diffs(sec: Section, out: Path) -> dict[str, str]:
    made = {}
    for v in sec.verdicts:
        if v.diffs is None:
            continue
        fig, ax = plt.subplots(figsize=(5, 3.2))
        nz = v.diffs[v.diffs != 0]
        ax.hist(nz, bins=60)
        ax.axvline(0, color="k", lw=0.8)
        ax.set(xlabel=f"{v.claim.metric}: {v.claim.subject} − {v.reference} per user (non-zero only)",
               ylabel="users", title=f"{v.claim.id}: {len(nz)} of {len(v.diffs)} users differ")
        name = f"claim-{v.claim.id}.png"
        _save(fig, out / name)
        made[f"per-user differences, {v.claim.id}"] = name
    return made


def make_plots(report: Report, out: Path) -> dict[str, dict[str, str]]:
    """Writes the plots; returns {section key: {caption: file name}} for the markdown to link."""
    result: dict[str, dict[str, str]] = {}
    for sec in report.sections:
        key = f"{sec.dataset}/{sec.protocol.hash}"
        stem = f"{sec.dataset.split(':')[0]}-{sec.protocol.hash}"
        made: dict[str, str] = {}
        runs = _trained(sec)
        for caption, draw, prefix, width in _RUN_PLOTS if not runs.empty else ():
            if draw is _memory and not any(map(_timeline, runs["record"])):
                continue  # records of older code carry no memory timeline
            fig, ax = plt.subplots(figsize=(width, 3.6))
            draw(runs, ax, sec.dataset)
            ax.legend()
            made[caption] = f"{prefix}-{stem}.png"
            _save(fig, out / made[caption])
        made.update(_claim_diffs(sec, out))
        made.update(sensitivity_plots(sec, out, stem))
        result[key] = made
    return result


def _x(grid: Grid) -> np.ndarray:
    """Positions of a grid's points: their values on a numeric axis, else 0, 1, ..."""
    return np.array([float(p.value) for p in grid.points]) if grid.numeric else np.arange(len(grid.points), dtype=float)


def _axis(ax: plt.Axes, grid: Grid, ranges: list[tuple[float, float]]) -> None:
    """Log scale where the grid spans a factor 10, ticks at the points, claimed ranges shaded."""
    if grid.log_x:
        ax.set_xscale("log")
    ax.set_xticks(_x(grid), [label(p.value) for p in grid.points])
    ax.minorticks_off()
    for lo, hi in ranges:
        ax.axvspan(lo, hi, color="tab:green", alpha=0.08, lw=0)
    ax.set_xlabel(grid.axis)


def _series(ax: plt.Axes, grid: Grid, bands: list[tuple[float, float, float]], style: str, text: str | None = None,
            color: str | None = None) -> None:
    """Means with their 95% bands: a line and a shaded band on a numeric axis; on a categorical one
    (no order between the settings) markers with error bars."""
    x = _x(grid)
    mean, lo, hi = (np.array([b[i] for b in bands]) for i in range(3))
    if grid.numeric:
        line = ax.plot(x, mean, style, label=text, color=color)[0]
        ax.fill_between(x, lo, hi, color=line.get_color(), alpha=0.18, lw=0)
        return
    err = np.nan_to_num(np.abs(np.stack([mean - lo, hi - mean])))
    ax.errorbar(x, mean, yerr=err, fmt=style[0], capsize=4, label=text, color=color)


def _grid_metrics(sec: Section, grid: Grid) -> Figure:
    """Each headline metric against the setting: seed mean, 95% t band over seeds, the seeds as dots."""
    ranges = sorted({v.claim.range for v in sec.ranges if v.grid is grid})
    fig, axes = plt.subplots(2, 2, figsize=(8, 5.6), sharex=True)
    x = _x(grid)
    for ax, metric in zip(axes.flat, METRICS, strict=True):
        _series(ax, grid, [p.metrics[metric] for p in grid.points], "o-", color="tab:blue")
        for xi, p in zip(x, grid.points, strict=True):
            ax.plot(np.full(p.n, xi), p.rows[metric], ".", color="k", alpha=0.35, ms=4)
        ax.set_ylabel(f"test {metric}")
        _axis(ax, grid, ranges)
    shaded = "; shaded: the claimed range" if ranges else ""
    fig.suptitle(f"{grid.dataset.split(':')[0]}, {grid.model}: test metrics vs {grid.axis} (seed mean, 95% t "
                 f"interval over seeds{shaded})", fontsize=9)
    return fig


def _grid_clusters(grid: Grid) -> Figure:
    """Effective clusters (best-validation weights and initial centres) and centres used against the
    setting, with k for scale: how far the centres collapse."""
    fig, ax = plt.subplots(figsize=(6, 3.8))
    for key, name, style, text in (("diagnostics", "effective_clusters", "o-", "effective clusters exp(H)"),
                                   ("diagnostics", "centres_used", "s--", "centres used"),
                                   ("diagnostics_init", "effective_clusters", "^:", "effective clusters at init")):
        bands = [stats.mean_interval(diag_values(p, key, name)) for p in grid.points]
        if not all(math.isnan(b[0]) for b in bands):
            _series(ax, grid, bands, style, text)
    ax.plot(_x(grid), [p.diag.get("k", math.nan) for p in grid.points], "_" if not grid.numeric else "-",
            color="grey", lw=0.8, ms=20, label="k (all centres)")
    ks = [p.diag["k"] for p in grid.points if "k" in p.diag]
    if ks and max(ks) >= 10 * min(ks):
        ax.set_yscale("log")
    _axis(ax, grid, [])
    ax.set(ylabel="centres", title=f"{grid.model}: cluster usage vs {grid.axis} (mean, 95% t band over seeds)")
    ax.legend(fontsize=7)
    return fig


def sensitivity_plots(sec: Section, out: Path, stem: str) -> dict[str, str]:
    """Two PNGs per grid of the section; {caption: file name} with `plot_captions`' captions."""
    made = {}
    for i, grid in enumerate(sec.grids):
        captions = plot_captions(grid, i)
        base = f"sensitivity-{stem}-{grid.model}-{re.sub(r'[^A-Za-z0-9]+', '_', grid.axis)}-{i + 1}"
        figures = [(_grid_metrics(sec, grid), "metrics")] + ([(_grid_clusters(grid), "clusters")]
                                                              if grid.clustered else [])
        for caption, (fig, suffix) in zip(captions, figures, strict=True):
            _save(fig, out / f"{base}-{suffix}.png")
            made[caption] = f"{base}-{suffix}.png"
    # a grid renumbered or gone (records added a grid before it) leaves plots no report shows
    for old in out.glob(f"sensitivity-{stem}-*.png"):
        if old.name not in made.values():
            old.unlink()
    return made
