"""The scaling study's report: `<report>/report.md`, `points.csv`, `summary.json`, `scaling.png`, and a copy of
the records (`<report>/records/points.jsonl`), so the folder is self-contained. No torch here."""

from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from bench.fileio import write_atomic
from bench.results.codeversion import describe
from bench.results.scaling import (
    FLOOR_S,
    METRICS,
    POINTS_FILE,
    Fit,
    ScalingVerdict,
    fit_limits,
    judge_scaling,
    load_scaling_claims,
    machine_of,
    model_fit,
    peak_phase,
    ratio_slope,
    read_points,
    scaling_records,
    slope_difference,
)
from bench.results.schema import CodeVersion

FIT_METRICS = ("epoch_s", "train_s", "epoch_start_s", "init_s", "batches_s", "eval_s", "peak_rss_mb", "gpu_peak_mb")
GIB = 1024.0


def _ci(low: float, high: float, digits: int = 3) -> str:
    return f"[{low:+.{digits}f}, {high:+.{digits}f}]" if math.isfinite(low) else "(no CI)"


def _fit_cell(f: Fit | None) -> str:
    if f is None:
        return "–"
    within = f", within {f.machines} machines" if f.machines > 1 else ""
    return f"{f.slope:.3f} [{f.low:.3f}, {f.high:.3f}], n={f.n}, R²={f.r2:.3f}{within}"


def _models(recs: list[dict[str, Any]]) -> list[str]:
    return list(dict.fromkeys(r["model"] for r in recs))


def _pairs(recs: list[dict[str, Any]], verdicts: list[ScalingVerdict]) -> list[tuple[str, str]]:
    """(subject, reference) pairs to compare: the claims', else the first model against each other."""
    pairs = list(dict.fromkeys((v.claim.subject, v.claim.reference) for v in verdicts))
    models = _models(recs)
    return pairs or [(models[0], m) for m in models[1:]]


def _code(point: dict[str, Any]) -> str:
    """The code a point ran, as the run reports name it."""
    git = (point.get("provenance") or {}).get("git")
    return describe(CodeVersion.from_json(git) if git else None)


def machine_lines(recs: list[dict[str, Any]], settings: dict[str, Any]) -> list[str]:
    """Commit(s), machine and settings, as the report's setup section says them."""
    ok = [r for r in recs if r["status"] == "ok"] or recs
    codes = sorted({_code(r) for r in recs})
    cpus = sorted({f"{r['provenance']['cpu']} ({r['provenance']['cpu_count']} cores)" for r in recs})
    ram = sorted({f"{r['machine']['ram_mb'] / GIB:.1f} GiB" for r in recs if "machine" in r})
    devices = sorted({f"{r['device']['type']}: {r['device']['name']}, {r['device']['torch_threads']} torch threads"
                      + (f", kernels {r['device']['kernels']}" if r["device"].get("kernels") else "") for r in ok
                      if "device" in r})
    torch_v = sorted({str(r["provenance"]["libraries"].get("torch")) for r in recs})
    several = (" (**points from several machines**: each fit has one intercept per machine and a slope "
               "within machines; a ratio pairs points of one machine)") if len({machine_of(r) for r in ok}) > 1 else ""
    lines = [f"- code: {', '.join(codes)}" + (" (**points from different code**)" if len(codes) > 1 else ""),
             f"- machine{several}: {'; '.join(cpus)}, RAM {', '.join(ram) or '?'}; torch {', '.join(torch_v)}",
             f"- device: {'; '.join(devices) or '?'}"]
    keys = ("models", "scales", "repeats", "batches", "warmup", "eval_users", "batch_size", "threads", "seed",
            "data_seed", "shape", "intents", "set", "memory_limit_gb", "memory_reserve_gb", "timeout")
    text = {k: ", ".join(map(str, v)) if isinstance(v, list) else str(v) for k, v in settings.items()}
    lines.append("- settings: " + "; ".join(f"{k} {text[k] or '-'}" for k in keys if k in text))
    return lines


def data_lines(recs: list[dict[str, Any]]) -> list[str]:
    ok = [r for r in recs if r["status"] == "ok"]
    shapes = sorted({r["data"]["shape"] for r in ok})
    items = sorted({r["data"]["items"] for r in ok})
    warn = " (**points from different shapes**)" if len(shapes) > 1 else ""
    return [f"- data: Beauty-shaped synthetic sets (`beauty-like`, shape: {', '.join(shapes) or '?'}{warn}): "
            "Beauty's sequence-length and item-popularity distributions with planted intents; the users scale "
            "(scale x 22,363), the items stay at Beauty's 12,101 (largest item id in the sets: "
            f"{', '.join(map(str, items)) or '?'})"]


def extrapolation_lines(recs: list[dict[str, Any]]) -> list[str]:
    ok = [r for r in recs if r["status"] == "ok"]
    if not ok:
        return []
    timed = sorted({r["extrapolation"]["train_batches_timed"] for r in ok})
    evals = sorted({r["extrapolation"]["eval_users"] for r in ok})
    return ["- **extrapolated**: the training time per epoch (marked \\*) is the time of "
            f"{', '.join(map(str, timed))} training batches (after untimed warm-up batches) times the epoch's "
            "batches (users / batch size); the validation time (\\*) is that of the first "
            f"{', '.join(map(str, evals))} users times users / those. Measured whole: data generation, both "
            "epoch-start hooks (embedding pass + k-means where the model has one), building the epoch's "
            "training samples, and the memory (peak RSS of each phase; peak GPU memory on CUDA)."]


def verdict_rows(verdicts: list[ScalingVerdict]) -> list[str]:
    rows = ["| claim | metric | statistic (as claimed > 0) | estimate [95% CI] | margin | verdict | why |",
            "|---|---|---|---|---|---|---|"]
    for v in verdicts:
        c = v.claim
        est = f"{v.estimate:+.3f} {_ci(v.low, v.high)}, {v.n}" if math.isfinite(v.estimate) else "–"
        rows.append(f"| {c.id}: {c.subject} vs {c.reference} | {c.metric} | {c.statistic} | {est} | {c.margin:g} | "
                    f"**{v.verdict}** | {v.reason} |")
    return rows + [""] + [f"- {v.claim.id}: {v.claim.source}" for v in verdicts]


def fit_rows(recs: list[dict[str, Any]]) -> list[str]:
    models = _models(recs)
    rows = ["| cost | " + " | ".join(models) + " |", "|---|" + "---|" * len(models)]
    for m in FIT_METRICS:
        fits = [model_fit(recs, model, m) for model in models]
        if any(f is not None for f in fits):
            star = " \\*" if METRICS[m].extrapolated else ""
            rows.append(f"| {METRICS[m].label}{star} | " + " | ".join(_fit_cell(f) for f in fits) + " |")
    return rows


def comparison_rows(recs: list[dict[str, Any]], pairs: list[tuple[str, str]]) -> list[str]:
    """Per pair and metric: the reference's slope minus the subject's, and the slope of their ratio."""
    rows = ["| pair | cost | reference's slope - subject's [95% CI] | slope of subject / reference [95% CI] |",
            "|---|---|---|---|"]
    for s, r in pairs:
        for m in ("epoch_s", "init_s", "epoch_start_s", "peak_rss_mb", "gpu_peak_mb"):
            fs, fr, rat = model_fit(recs, s, m), model_fit(recs, r, m), ratio_slope(recs, s, r, m)
            if fs is None and fr is None:
                continue
            diff = slope_difference(fr, fs) if fs is not None and fr is not None else None
            d = f"{diff.estimate:+.3f} {_ci(diff.low, diff.high)}" if diff else "– (no work on one side)"
            q = f"{rat.slope:+.3f} {_ci(rat.low, rat.high)}" if rat is not None else "–"
            rows.append(f"| {s} vs {r} | {METRICS[m].label} | {d} | {q} |")
    return rows


PHASE_WHAT = {"generate": "data generation", "model": "building the model",
              "init": "the epoch-0 hook (embedding pass over all users + k-means)",
              "epoch_start": "the epoch-1 hook (work repeated every epoch)",
              "batches": "the epoch's training samples, built whole (bench.batches)",
              "warmup": "training steps", "train": "training steps", "eval": "validation"}


def limit_lines(recs: list[dict[str, Any]], ram_mb: float) -> list[str]:
    """The largest size that fits, per model and for all, and what limits it."""
    lines, largest = [], []
    for m in _models(recs):
        lim = fit_limits(recs, m, ram_mb)
        largest.append(lim["largest_ok_scale"] or 0.0)
        if lim["largest_ok_scale"] is None:
            lines.append(f"- {m}: no point measured")
            continue
        what = PHASE_WHAT.get(lim["peak_phase"], lim["peak_phase"])
        text = (f"- {m}: largest measured {lim['largest_ok_scale']:g}x ({lim['largest_ok_users']:,} users), peak RSS "
                f"{lim['peak_rss_mb'] / GIB:.2f} GiB, most of it added by {what}")
        if "mb_per_user" in lim:
            text += (f"; peak RSS ~ {lim['mb_base']:.0f} MiB + {lim['mb_per_user'] * 1024:.2f} KiB per user, which "
                     f"reaches this machine's {ram_mb / GIB:.1f} GiB at ~{lim['users_at_ram']:,.0f} users "
                     f"({lim['users_at_ram'] / 22363:.0f}x Beauty)")
        if lim["not_fit"]:
            nf = lim["not_fit"]
            text += f"; {nf['scale']:g}x did not fit ({nf['status'].replace('_', ' ')}: {nf['reason']})"
        lines.append(text)
    both = min(largest) if largest else 0.0
    head = f"**Largest size measured for every model: {both:g}x Beauty's users ({round(both * 22363):,}).**"
    return [head, "", *lines]


def memory_lines(recs: list[dict[str, Any]]) -> list[str]:
    """Generation's peak against the rest of the process's (the issue: generation needs less than training)."""
    ok = [r for r in recs if r["status"] == "ok"]
    if not ok:
        return []
    worst = max(ok, key=lambda r: _gen_share(r))
    per_phase = all(r["memory"].get("per_phase_peaks", False) for r in ok)
    verdict = "yes" if _gen_share(worst) <= 1.0 else "**no**"
    note = "" if per_phase else " (peaks are cumulative here: the kernel did not let the high-water mark be reset)"
    return [f"Generation's peak RSS at most the peak of the phases after it, at every point: {verdict} (largest "
            f"ratio {_gen_share(worst):.2f}, {worst['model']} at {worst['scale']:g}x){note}."]


def _gen_share(rec: dict[str, Any]) -> float:
    phases = dict(rec["memory"]["phase_peak_rss_mb"])
    gen = phases.pop("generate", math.nan)
    return gen / max(phases.values()) if phases else math.nan


def point_rows(recs: list[dict[str, Any]]) -> list[str]:
    """Per model and scale, the median over the ok repeats; the statuses of the others."""
    cols = ("epoch_s", "train_s", "epoch_start_s", "init_s", "batches_s", "eval_s", "generate_s")
    star = {True: " \\*", False: ""}
    head = [f"{METRICS[c].label.split(' (')[0]}{star[METRICS[c].extrapolated]} (s)" for c in cols]
    rows = ["| model | scale | users | interactions | " + " | ".join(head) + " | peak RSS (GiB) | peak phase | "
            "points |",
            "|---|---|---|---|" + "---|" * (len(cols) + 3)]
    groups: dict[tuple[str, float], list[dict[str, Any]]] = defaultdict(list)
    for r in recs:
        groups[(r["model"], r["scale"])].append(r)
    for (m, scale), rs in sorted(groups.items()):
        ok = [r for r in rs if r["status"] == "ok"]
        status = ", ".join(f"{s.replace('_', ' ')} x{sum(r['status'] == s for r in rs)}"
                           for s in sorted({r["status"] for r in rs}))
        cells = [_median(ok, c, 1.0) for c in cols] + [_median(ok, "peak_rss_mb", 1 / GIB)]
        inter = f"{ok[0]['data']['interactions']:,}" if ok else "–"
        rows.append(f"| {m} | {scale:g}x | {rs[0]['users']:,} | {inter} | " + " | ".join(cells)
                    + f" | {peak_phase(ok[-1]) if ok else '–'} | {status} |")
    return rows


def _median(ok: list[dict[str, Any]], metric: str, factor: float) -> str:
    vals = [METRICS[metric].get(r) * factor for r in ok]
    vals = [v for v in vals if math.isfinite(v)]
    return f"{float(np.median(vals)):.3g}" if vals else "–"


def plot(recs: list[dict[str, Any]], path: Path) -> None:
    """Log-log panels: per-epoch time, epoch-start work (every epoch: filled; epoch 0: hollow), peak RSS."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    panels = ((("epoch_s", "o"),), (("epoch_start_s", "o"), ("init_s", "^")), (("peak_rss_mb", "o"),))
    titles = ("per-epoch training time (s, extrapolated)", "epoch-start work (s): every epoch o, epoch 0 ^",
              "peak RSS (MiB)")
    for ax, panel, title in zip(axes, panels, titles, strict=True):
        for i, model in enumerate(_models(recs)):
            for metric, marker in panel:
                _plot_series(ax, recs, model, metric, marker, f"C{i}")
        ax.set(xscale="log", yscale="log", xlabel="users", title=title)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_series(ax: Any, recs: list[dict[str, Any]], model: str, metric: str, marker: str, colour: str) -> None:
    from bench.results.scaling import series

    users, values = series(recs, model, metric)
    keep = np.isfinite(values) & (values > 0)
    if not keep.any() or (METRICS[metric].unit == "s" and not np.any(values[keep] >= FLOOR_S)):
        return  # nothing measured, or a hook that does no work
    fit = model_fit(recs, model, metric)
    hollow = marker != "o"
    label = f"{model} {metric}" + (f": slope {fit.slope:.2f}" if fit else "")
    ax.scatter(users[keep], values[keep], marker=marker, facecolors="none" if hollow else colour,
               edgecolors=colour, label=label)
    if fit is not None:
        xs = np.geomspace(fit.users[0], fit.users[1], 20)
        ax.plot(xs, [fit.predict(x) for x in xs], color=colour, linestyle=":" if hollow else "-")


def render(recs: list[dict[str, Any]], verdicts: list[ScalingVerdict], settings: dict[str, Any],
           ram_mb: float, png: str | None) -> str:
    name = settings.get("name", "scaling")
    lines = [f"# Scaling study: {name}", "", settings.get("description", ""), "",
             f"Reproduce: `python -m bench reproduce {settings.get('experiment', 'EXPERIMENT.toml')}` (it resumes; "
             "`--dry-run` lists each point's state).", "", "## Setup", "",
             *machine_lines(recs, settings), *data_lines(recs), *extrapolation_lines(recs), "",
             "## Verdicts on the scaling claims", "",
             *(verdict_rows(verdicts) if verdicts else ["No scaling claims given."]), "",
             "## Cost against users: log-log slopes (cost ~ users^slope; 1 is linear)", "", *fit_rows(recs), "",
             *comparison_rows(recs, _pairs(recs, verdicts)), ""]
    if png:
        lines += [f"![cost against users]({png})", ""]
    lines += ["## Largest size that fits this machine", "", *limit_lines(recs, ram_mb), "",
              "## Points (median over repeats; \\* extrapolated)", "", *point_rows(recs), "",
              "## Memory of the data generation", "", *memory_lines(recs), ""]
    return "\n".join(lines)


def summary(recs: list[dict[str, Any]], verdicts: list[ScalingVerdict], settings: dict[str, Any],
            ram_mb: float) -> dict[str, Any]:
    models = _models(recs)
    fits = {m: {k: (vars(f) if (f := model_fit(recs, m, k)) else None) for k in FIT_METRICS} for m in models}
    return {"settings": settings, "ram_mb": ram_mb, "fits": fits,
            "limits": {m: fit_limits(recs, m, ram_mb) for m in models},
            "verdicts": [{"claim": v.claim.id, "verdict": v.verdict, "reason": v.reason, "estimate": v.estimate,
                          "low": v.low, "high": v.high, "n": v.n} for v in verdicts],
            "codes": sorted({_code(r) for r in recs})}


def points_csv(recs: list[dict[str, Any]]) -> str:
    import csv
    import io

    buf = io.StringIO()
    out = csv.writer(buf, lineterminator="\n")
    out.writerow(["model", "scale", "users", "repeat", "status", *METRICS, "peak_phase", "reason"])
    for r in recs:
        ok = r["status"] == "ok"
        out.writerow([r["model"], r["scale"], r["users"], r["repeat"], r["status"],
                      *(METRICS[m].get(r) if ok else "" for m in METRICS), peak_phase(r) if ok else "",
                      r.get("reason", "")])
    return buf.getvalue()


def write_scaling_report(out: Path, report: Path, claims: Path | None, settings: dict[str, Any]) -> list[Path]:
    """Copies the study's records into `<report>/records/` and writes the report from that copy."""
    import sys

    raw = read_points(out)
    if not raw:
        print(f"no points of this study in {out} yet: no report", file=sys.stderr)
        return []
    lines = "".join(json.dumps(r, sort_keys=True) + "\n" for r in raw)
    write_atomic(report / "records" / POINTS_FILE, lines.encode())
    recs = scaling_records(raw)
    verdicts = [judge_scaling(c, recs) for c in load_scaling_claims(claims)] if claims else []
    ram_mb = max((r["machine"]["ram_mb"] for r in recs if "machine" in r), default=math.nan)
    paths = [report / "scaling.png", report / "report.md", report / "points.csv", report / "summary.json"]
    plot(recs, paths[0])
    write_atomic(paths[1], render(recs, verdicts, settings, ram_mb, paths[0].name).encode())
    write_atomic(paths[2], points_csv(recs).encode())
    write_atomic(paths[3], json.dumps(summary(recs, verdicts, settings, ram_mb), indent=1, default=str).encode())
    return paths
