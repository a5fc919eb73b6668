"""Markdown, LaTeX (booktabs), CSV and JSON renderings of a `Report`. No torch."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

import pandas as pd
from tabulate import tabulate

from bench.config import from_namespace
from bench.errors import BenchError
from bench.metrics import METRIC_NAMES
from bench.results.claims import NOT_RUNNABLE, Verdict
from bench.results.codeversion import code_warnings
from bench.results.report import (
    CHECK_TITLES,
    COST_HEADERS,
    EVAL_HEADERS,
    FORMATS,
    PROVENANCE_HEADERS,
    RUN_HEADERS,
    SPREAD_HEADERS,
    VERDICT_HEADERS,
    VERDICT_LEGEND,
    Report,
    ReportConfig,
    Section,
    build_report,
    cost_table,
    evals_table,
    fmt,
    fmt_p,
    machine_warnings,
    pct,
    provenance_table,
    published_table,
    quality_table,
    runs_table,
    significance_caption,
    spread_table,
    summary_rows,
    to_json,
    verdict_rows,
)
from bench.results.sensitivity import (
    METRICS,
    RANGE_HEADERS,
    RANGE_LEGEND,
    Grid,
    cluster_headers,
    cluster_rows,
    collapse_note,
    fixed_text,
    metric_rows,
    plot_captions,
    provenance_line,
    range_rows,
)

QUALITY_HEADERS = ["model", "seeds", *METRIC_NAMES]
CENTRES_NOTE = ("Centres used: intent centres holding at least one user (each user by the mean-pooled output of "
                "its training sequence, padding included, ICLRec's k-means input), then after the slash at least "
                "one real position of a training sequence (each position assigned by the model's rule, as ELCRec's "
                "training assigns them; padding left out); effective clusters = exp(entropy of that usage), 1 when "
                "all share one intent. Where most positions are padding, the user-level mean is dominated by it.")


def _md_comparisons(sec: Section) -> list[str]:
    """Each model against the section's best: the paired-comparison table and its caption."""
    if not sec.comparisons:
        return []
    return ["### Paired comparisons with the best model", "", tabulate(
            [[c.model, c.best, c.metric, "+".join(map(str, c.seeds)), pct(c.rel),
              f"[{pct(c.low)}, {pct(c.high)}]" + ("" if c.scope == "seeds" else " ‡"), fmt_p(c.p_t),
              fmt_p(c.p_wilcoxon), fmt(c.dz, 3), "/".join(map(str, c.wtl))] for c in sec.comparisons],
            ["model", "best", "metric", "seeds", "Δ rel", "95% CI", "p (t)", "p (Wilcoxon)", "d_z", "win/tie/loss"],
            tablefmt="github", disable_numparse=True),
            "", f"*best = the best model by mean among those with the seeds a † test needs (among all where none "
            f"has them); Δ rel = mean(model) / mean(best) − 1; 95% CI and p (two-sided, uncorrected) from Welch's t on "
            f"seed means plus the per-user variance the seeds share; {_scope_note(sec)} Wilcoxon, d_z and "
            "win/tie/loss over users on seed-averaged per-user metrics (descriptive).*", ""]


def _md_section(sec: Section, alpha: float, plots: dict[str, str]) -> list[str]:
    p = sec.protocol
    lines = [f"## {sec.dataset}", "",
             f"Protocol `{p.hash}`: seen items `{p.seen_items}`, {p.split}, candidates: "
             f"{p.candidates}, ties: {p.ties}, dataset sha256 `{str(p.dataset_sha256)[:16]}…`.",
             "", tabulate(quality_table(sec, ("**", "**"), ("<u>", "</u>"), " †"), QUALITY_HEADERS,
                          tablefmt="github", disable_numparse=True),
             "", f"*{significance_caption(sec, alpha)}.*", ""]
    if any(r.cost["epoch_mean_s"] == r.cost["epoch_mean_s"] for r in sec.rows):  # any trained run
        target = f" Time to target: wall time until validation NDCG@20 first reaches {sec.target[0]}'s best " \
                 f"({sec.target[1]:.4f})." if sec.target else ""
        lines += ["### Cost", "", tabulate(cost_table(sec), COST_HEADERS, tablefmt="github", disable_numparse=True),
                  "", f"*Means over seeds.{target}*", ""]
    lines += _md_paired(sec)
    lines += ["### Seed spread", "", tabulate(spread_table(sec), SPREAD_HEADERS, tablefmt="github",
                                              disable_numparse=True),
              "", "*Seed-to-seed spread of each model's true mean (relative sd of the seed means less what their "
              "per-user noise alone gives), measured from its runs; – with one seed. The calibration "
              "(docs/statistics.md) uses it.*", ""]
    lines += ["### Provenance", "", tabulate(provenance_table(sec), PROVENANCE_HEADERS, tablefmt="github",
                                             disable_numparse=True),
              "", "*Costs compare only on one machine and thread count; CPU metrics repeat exactly only at the "
              "same commit and thread count.*", ""]
    lines += _md_runs(sec)
    lines += _md_published(sec)
    # runs of one comparison from different code; runs resumed on another machine
    warnings = code_warnings(list(sec.ok.record)) + machine_warnings(list(sec.ok.record))
    lines += [f"> **Warning:** {w}." for w in warnings] + ([""] if warnings else [])
    lines += _md_comparisons(sec)
    if sec.verdicts:
        lines += _md_claims(sec)
    for i, grid in enumerate(sec.grids):
        lines += _md_grid(sec, i, grid, plots)
    own = {c for i, g in enumerate(sec.grids) for c in plot_captions(g, i)}
    rest = {name: path for name, path in plots.items() if name not in own}
    lines += [f"![{name}]({path})" for name, path in rest.items()] + ([""] if rest else [])
    return lines


def _md_runs(sec: Section) -> list[str]:
    """Training runs and evaluated checkpoints, one row each, with their users' collapse measures."""
    lines: list[str] = []
    runs = runs_table(sec)
    if runs:
        lines += ["### Runs", "", tabulate(runs, RUN_HEADERS, tablefmt="github", disable_numparse=True),
                  "", "*Test metrics with each run's best-validation weights; best epoch counted from 1. Users' "
                  "cosine: the mean cosine between users' scoring vectors (near 1: every user ranked alike, a "
                  f"collapse; – in records of older code). {CENTRES_NOTE}*", ""]
    evals = evals_table(sec)
    if evals:
        lines += ["### Checkpoints evaluated", "", tabulate(evals, EVAL_HEADERS, tablefmt="github",
                                                            disable_numparse=True),
                  "", f"*Test metrics of each checkpoint as given (`bench eval`); users' cosine as in the runs "
                  f"table, – in records of older code. {CENTRES_NOTE}*", ""]
    return lines


CLUSTER_LEGEND = ("Cluster usage: means over seeds, users assigned to their nearest centre with the best-validation "
                  "weights (effective at init: the initial centres); effective clusters = exp(usage entropy), share "
                  "of k = effective clusters / k; epochs run and best epoch (1-based) are means over seeds.")
TRAINING_LEGEND = "Training length: epochs run and best epoch (1-based) are means over seeds."


def _md_grid(sec: Section, i: int, grid: Grid, plots: dict[str, str]) -> list[str]:
    """One sensitivity grid: settings and provenance, metrics per point, cluster usage, the range
    claims judged on it, the plots."""
    lines = [f"### Sensitivity: {grid.model}, {grid.axis}", "",
             f"Fixed settings ({fixed_text(grid)}). {provenance_line(grid)}.", "",
             tabulate(metric_rows(grid), [grid.axis, "seeds", *METRICS], tablefmt="github", disable_numparse=True),
             "", "*Test metrics: mean over seeds [95% t-interval over seeds].*", "",
             tabulate(cluster_rows(grid), cluster_headers(grid), tablefmt="github", disable_numparse=True),
             "", f"*{CLUSTER_LEGEND if grid.clustered else TRAINING_LEGEND}*", ""]
    note = collapse_note(grid)
    lines += [note, ""] if note else []
    verdicts = [v for v in sec.ranges if v.grid is grid]
    if verdicts:
        lines += [f"*{RANGE_LEGEND}*", "", tabulate(range_rows(verdicts), RANGE_HEADERS, tablefmt="github",
                                                     disable_numparse=True), ""]
        tests = [f"- `{v.claim.id}`: {v.test}." for v in verdicts if v.test]  # no test: the reason says why
        lines += [*tests, ""] if tests else []
    shown = [(c, plots[c]) for c in plot_captions(grid, i) if c in plots]
    return lines + [f"![{c}]({path})" for c, path in shown] + ([""] if shown else [])


def _ratio_cells(est: Any) -> list[str]:
    if est is None:
        return ["–", "–"]
    lo, hi = est.interval()
    return [f"{est.ratio:.3f}", f"[{lo:.3f}, {hi:.3f}]" if lo == lo else "–"]


def _md_paired(sec: Section) -> list[str]:
    """The paired cost benchmark (`bench cost`): the evidence for per-epoch cost claims."""
    if not sec.paired:
        return []
    gpu = any(p.gpu_memory for p in sec.paired)  # the memory columns only where a benchmark ran on a GPU
    rows = [[f"{p.subject} / {p.reference}", str(p.rounds), *_ratio_cells(p.per_epoch), *_ratio_cells(p.to_target),
             p.to_target_note, *(_ratio_cells(p.gpu_memory) if gpu else []), f"{p.load[0]:.2f}-{p.load[1]:.2f}",
             p.machine] for p in sec.paired]
    headers = ["pair", "rounds", "per-epoch cost ratio", "95% CI", "time-to-target ratio", "95% CI", "seeds",
               *(["average GPU memory ratio", "95% CI"] if gpu else []), "load average", "machine"]
    memory = ("The GPU memory ratio is the geometric mean of the rounds' ratios of each epoch's average reserved "
              "GPU memory (the paper's Table 2 reports averages), with a t interval over rounds. Peak" if gpu
              else "On CPU the paper's GPU memory claim needs a GPU; peak")
    return ["### Paired cost benchmark", "", tabulate(rows, headers, tablefmt="github", disable_numparse=True),
        "", "*Epochs of the two models alternate in one time window (A B, B A, ...); the per-epoch ratio is the "
        "geometric mean of the rounds' ratios with a t interval over rounds. Time to target: per seed, the "
        "epochs the subject needs to reach the reference's best validation NDCG@20 over the epochs the reference "
        f"needs, times the per-epoch ratio; both variances added. {memory} and average RSS are in the cost "
        "table." + (" One row per benchmark, oldest first; the claims are judged on the latest, and their reasons "
                    "give each earlier benchmark's verdict (a ratio holds for the machine it was measured on).*"
                    if len(sec.paired) > len({(p.subject, p.reference) for p in sec.paired}) else "*"), ""]


def _md_published(sec: Section) -> list[str]:
    """Our seed means beside the numbers papers and released checkpoints report (a description)."""
    if not sec.published:
        return []
    headers, rows = published_table(sec)
    return ["### Beside published numbers", "", tabulate(rows, headers, tablefmt="github", disable_numparse=True),
            "", "*Ours / published: our test metric (mean over seeds) and the number the source reports on the same "
            "data; then ours ÷ published − 1 with a 95% t interval over our seeds (two or more). The published "
            "number's own seed noise is unknown and not in the interval: a description beside the claims, never a "
            "verdict.*", ""]


def _scope_note(sec: Section) -> str:
    if any(c.scope != "seeds" for c in sec.comparisons):
        return ("‡ one seed on a side (seeds: the model's + the best's): the interval is Fieller's over users and "
                "holds for these seeds only.")
    return "seeds are the unit (calibration: docs/statistics.md)."


def _md_claims(sec: Section) -> list[str]:
    lines = ["### Claims", "", f"*{VERDICT_LEGEND}*", ""]
    for check, title in CHECK_TITLES.items():
        vs = [v for v in sec.verdicts if v.claim.check == check]
        if not vs:
            continue
        lines += [f"#### Check: {title}", "", tabulate(verdict_rows(vs), VERDICT_HEADERS, tablefmt="github",
                                                      disable_numparse=True), ""]
        lines += [f"- `{v.claim.id}` ({_where(v)}): {v.test or 'no test'}"
                  f"{'; ' + v.power_note if v.power_note else ''}." for v in vs] + [""]
    return lines


def _where(v: Verdict) -> str:
    c = v.claim
    nums = f"{c.paper_subject:g} vs {c.paper_reference:g}" if c.paper_subject == c.paper_subject else ""
    return "; ".join(x for x in (c.source, f"{c.table}, {c.cell}" if c.table else "", nums) if x)


def _md_unjudged(report: Report) -> list[str]:
    ranges = [f"- `{c.id}` (“{c.statement}”, {c.source}; {c.model} over {c.axis}): **NOT RUN**: no grid of "
              f"{c.model} over {c.axis} in these records." for c in report.unjudged_ranges]
    if not report.unjudged:
        return ["## Sensitivity claims without a grid here", "", *ranges, ""] if ranges else []
    lines = ["## Claims without training records here", "", "*Listed, not dropped: claims on data or models this "
             "machine or these records do not have; a per-epoch cost claim is judged on the paired cost benchmark "
             "alone where it ran.*", ""]
    lines += [f"- `{v.claim.id}` ({CHECK_TITLES[v.claim.check].split(' (')[0]}; {_where(v)}; {v.claim.subject} vs "
              f"{v.claim.reference}, {v.claim.metric}, claimed {pct(v.claim.claimed)}): **{v.verdict}**: {v.reason}"
              + (f"; measured {pct(v.estimate)} [{pct(v.low)}, {pct(v.high)}] over {v.n}" if v.n else "") + "."
              for v in report.unjudged]
    return [*lines, *ranges, ""]


def _md_glance(report: Report) -> list[str]:
    """Every judged claim in one table at the top: what a reader came for, before the evidence."""
    listed = [v for v in report.unjudged if v.verdict not in ("NOT RUN", NOT_RUNNABLE)]  # the paired cost benchmark's
    twice = {d for d in (s.dataset for s in report.sections) if [x.dataset for x in report.sections].count(d) > 1}
    judged = [(f"{sec.dataset} ({str(sec.protocol.hash)[:8]})" if sec.dataset in twice else sec.dataset, v)
              for sec in report.sections for v in sec.verdicts] + [(v.claim.dataset, v) for v in listed]
    if not judged:
        return []
    rows = [[v.claim.id, where, f"{v.claim.subject} vs {v.reference}", row[2], row[3], row[4], row[5],
             f"**{v.verdict}**" + (f" ({v.why})" if v.why else "")]
            for where, v in judged for row in verdict_rows([v])]
    others = len(report.unjudged) - len(listed)
    rest = f" {others} more claims are listed at the end: not runnable here or without records." if others else ""
    return ["## Verdicts at a glance", "", tabulate(rows, ["claim", "dataset", "comparison", "metric", "claimed",
                                                            "measured", "95% CI", "verdict"],
                                                     tablefmt="github", disable_numparse=True),
            "", f"*Sizes in the claimed direction; the evidence, tests and what each verdict means are in each "
            f"dataset's Claims section (of a claim judged on the paired cost benchmark alone: in the list at the end)."
            f"{rest}*", ""]


def render_markdown(report: Report, plots: dict[str, dict[str, str]] | None = None) -> str:
    lines = ["# intentbench report", ""]
    if report.claims_file:
        lines += [f"Claims: `{Path(report.claims_file).name}`.", ""]
    lines += _md_glance(report)
    lines += [f"> {n}" for n in report.notes] + ([""] if report.notes else [])
    for sec in report.sections:
        lines += _md_section(sec, report.alpha, (plots or {}).get(f"{sec.dataset}/{sec.protocol.hash}", {}))
    lines += _md_unjudged(report)
    lines += ["## Failed runs", ""]
    if report.failed:
        lines += [f"- {f['model']} / {f['dataset']} / seed {f['seed']}: {f['reason']}" for f in report.failed]
    else:
        lines += ["None."]
    return "\n".join(lines) + "\n"


_TEX_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}
_TEX_RE = re.compile("|".join(re.escape(k) for k in _TEX_ESCAPES))


def tex_escape(text: str) -> str:
    """Escapes every LaTeX special character; ±, †, α and minus signs become math."""
    out = _TEX_RE.sub(lambda m: _TEX_ESCAPES[m.group()], str(text))
    out = out.replace("<", r"$<$").replace(">", r"$>$")
    return out.replace("±", r"$\pm$").replace("†", r"$^\dagger$").replace("α", r"$\alpha$").replace("−", "-")\
        .replace("≤", r"$\le$").replace("⅓", "1/3").replace("÷", r"$\div$")


def _tex_table(headers: list[str], rows: list[list[str]], caption: str, label: str) -> list[str]:
    cols = "l" + "r" * (len(headers) - 1)
    lines = [r"\begin{table}[t]", r"\centering", r"\small", rf"\caption{{{tex_escape(caption)}}}",
             rf"\label{{{label}}}", rf"\begin{{tabular}}{{{cols}}}", r"\toprule",
             " & ".join(tex_escape(h) for h in headers) + r" \\", r"\midrule"]
    lines += [" & ".join(rows_cell for rows_cell in row) + r" \\" for row in rows]
    return [*lines, r"\bottomrule", r"\end{tabular}", r"\end{table}", ""]


def render_latex(report: Report) -> str:
    bold, under = ("\0B", "\0b"), ("\0U", "\0u")  # markers survive escaping, then become commands
    lines = ["% generated by intentbench; needs \\usepackage{booktabs}", ""]
    for i, sec in enumerate(report.sections):
        rows = [[_tex_cell(c) for c in row] for row in quality_table(sec, bold, under, " †")]
        cap = f"{sec.dataset}, protocol {sec.protocol.hash} (seen items: {sec.protocol.seen_items}): " \
              f"{significance_caption(sec, report.alpha)}."
        lines += _tex_table(QUALITY_HEADERS, rows, cap, f"tab:{_label(sec.dataset)}-{i}")
        if sec.published:
            headers, prows = published_table(sec)
            lines += _tex_table(headers, [[tex_escape(c) for c in row] for row in prows],
                                f"{sec.dataset}: ours (mean over seeds) / published, and ours ÷ published − 1 "
                                "[95% t interval over our seeds]; a description, not a verdict.",
                                f"tab:{_label(sec.dataset)}-published-{i}")
        if sec.verdicts:
            keep = [0, 1, 2, 3, 4, 5, 6, 10]  # the sample sizes, power and reasons are in the markdown
            vrows = [[tex_escape(row[j]) for j in keep] for row in verdict_rows(sec.verdicts)]
            label = f"tab:{_label(sec.dataset)}-claims-{i}"
            lines += _tex_table([VERDICT_HEADERS[j] for j in keep], vrows,
                                f"Claims on {sec.dataset} (95% CIs, seeds the unit; p tests effect ≤ a third of "
                                "the claim; see docs/statistics.md).", label)
    return "\n".join(lines)


def _tex_cell(cell: str) -> str:
    s = tex_escape(cell)
    return s.replace("\0B", r"\textbf{").replace("\0b", "}").replace("\0U", r"\underline{").replace("\0u", "}")


def _label(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def write_outputs(report: Report, cfg: ReportConfig) -> list[Path]:
    cfg.out.mkdir(parents=True, exist_ok=True)
    written = []
    plots: dict[str, dict[str, str]] = {}
    if cfg.plots and "md" in cfg.format:
        from bench.results.plots import make_plots

        plots = make_plots(report, cfg.out)
    for ext in cfg.format:
        path = cfg.out / f"report.{ext}"
        if ext == "md":
            path.write_text(render_markdown(report, plots))
        elif ext == "tex":
            path.write_text(render_latex(report))
        elif ext == "csv":
            path = cfg.out / "summary.csv"
            pd.DataFrame(summary_rows(report)).to_csv(path, index=False)
        else:
            path = cfg.out / "summary.json"
            path.write_text(to_json(report))
        written.append(path)
    return written


def cmd_report(ns: argparse.Namespace) -> int:
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
