"""PNG plots next to the markdown report (matplotlib, no display needed). No torch."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from bench.frame import epoch_times
from bench.protocol import PHASES
from bench.report import Report, Section


def _trained(sec: Section) -> pd.DataFrame:
    """The section's training runs (records with a validation curve)."""
    return sec.ok[sec.ok["record"].map(lambda r: bool(r.get("curve")))]


def _save(fig: Figure, path: Path) -> bool:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _curves(sec: Section, path: Path) -> bool:
    runs = _trained(sec)
    if runs.empty:
        return False
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for model, g in runs.groupby("model"):
        curves = [np.array([c["valid_NDCG@20"] for c in r["curve"]]) for r in g["record"]]
        n = min(map(len, curves))
        m = np.stack([c[:n] for c in curves])
        x = np.arange(n)
        ax.plot(x, m.mean(0), label=f"{model} (n={len(m)})")
        ax.fill_between(x, m.min(0), m.max(0), alpha=0.2)
    ax.set(xlabel="epoch", ylabel="validation NDCG@20", title=f"{sec.dataset}: validation (mean, band = min-max)")
    ax.legend()
    return _save(fig, path)


def _phases(sec: Section, path: Path) -> bool:
    runs = _trained(sec)
    if runs.empty:
        return False
    models = sorted(runs.model.unique())
    fig, ax = plt.subplots(figsize=(6, 3.6))
    bottom = np.zeros(len(models))
    for phase in PHASES:
        vals = np.array([np.mean([np.mean([c["seconds"][phase] for c in r["curve"]])
                                  for r in runs[runs.model == m]["record"]]) for m in models])
        ax.bar(models, vals, bottom=bottom, label=phase)
        bottom += vals
    ax.set(ylabel="seconds per epoch", title=f"{sec.dataset}: time per epoch by phase")
    ax.legend()
    return _save(fig, path)


def _scatter(sec: Section, path: Path) -> bool:
    runs = _trained(sec)
    if runs.empty:
        return False
    fig, ax = plt.subplots(figsize=(5, 3.6))
    for model, g in runs.groupby("model"):
        t = [float(np.mean(epoch_times(r))) for r in g["record"]]
        ax.errorbar(np.mean(t), g["NDCG@10"].mean(), xerr=np.std(t), yerr=g["NDCG@10"].std(ddof=0), fmt="o",
                    label=str(model))
    ax.set(xlabel="seconds per epoch", ylabel="test NDCG@10", title=f"{sec.dataset}: quality vs cost")
    ax.legend()
    return _save(fig, path)


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
        key = f"{sec.dataset}/{sec.protocol.get('hash')}"
        stem = f"{sec.dataset.split(':')[0]}-{sec.protocol.get('hash')}"
        made: dict[str, str] = {}
        for caption, fn, name in (("validation curves", _curves, f"curves-{stem}.png"),
                                  ("time per epoch by phase", _phases, f"phases-{stem}.png"),
                                  ("quality vs cost", _scatter, f"scatter-{stem}.png")):
            if fn(sec, out / name):
                made[caption] = name
        made.update(_claim_diffs(sec, out))
        result[key] = made
    return result
