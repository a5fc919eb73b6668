"""`python -m bench reproduce EXPERIMENT.toml`: run (or resume) every run of a study, then report.

Each `[[runs]]` group of the experiment is handed to `bench run` as the equivalent command (the
same run specs and config hashes), so finished runs are skipped and killed ones resume. Optional
groups run with `--extended` only. Then the records of the experiment's runs (with their per-user
sidecars) are copied into `<report>/records/` and the report is written from that copy, so the
report folder is self-contained. `--dry-run` lists each run with its state and runs nothing.
A file with `kind = "scaling"` is a scaling study instead (`bench.perf.scaling`): points, not runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.carry import carried_file, carry_states, restore_states
from bench.config import from_namespace, opt
from bench.errors import BenchError
from bench.experiment import (
    Experiment,
    Group,
    latest_records,
    load_experiment,
    override,
    run_state,
    study_kind,
    validate,
)
from bench.spec import RunSpec


@dataclass(frozen=True)
class ReproduceConfig:
    experiment: tuple[Path, ...] = opt(help="experiment file (TOML), e.g. experiments/elcrec-beauty.toml",
                                       positional=True)
    dry_run: bool = opt(False, help="list every run with its state (done, partial at epoch N, to do); run nothing")
    extended: bool = opt(False, help="also run the groups marked optional")
    report_only: bool = opt(False, help="write the report from the records there are (a study in progress); "
                            "run nothing")
    out: Path | None = opt(None, help="records folder (default: the experiment's `out`)")
    report: Path | None = opt(None, help="report folder (default: the experiment's `report`)")
    data_dir: Path | None = opt(None, help="folder with the dataset files")
    jobs: int | None = opt(None, help="runs in parallel (default: the experiment's, else 1)")
    threads: int | None = opt(None, help="torch threads per run (default: the experiment's, else cores / jobs)")
    device: str | None = opt(None, help="cpu or cuda (default: the experiment's, else cpu)", choices=("cpu", "cuda"))
    allow_code_change: bool = opt(False, help="resume runs whose state was saved by other code (recorded)")
    carry_states: bool = opt(False, help="also copy each partial run's resume state into <report>/resume/ "
                             "(committed there, a fresh clone resumes the run; see bench.carry)")


def _experiment(cfg: ReproduceConfig) -> Experiment:
    if len(cfg.experiment) != 1:
        raise BenchError(f"one experiment file at a time, got {len(cfg.experiment)}")
    exp = load_experiment(cfg.experiment[0])
    exp = override(exp, out=cfg.out, data_dir=cfg.data_dir, jobs=cfg.jobs, threads=cfg.threads, device=cfg.device,
                   allow_code_change=cfg.allow_code_change or None)
    return dataclasses.replace(exp, report=cfg.report or exp.report)


def _states(exp: Experiment, runs: list[tuple[Group, RunSpec]]) -> list[tuple[Group, RunSpec, str, str]]:
    """Each run with its state: (group, spec, kind done|partial|todo, text); a run the out folder
    has no state of, but the report carries one of, is partial at the carried epoch."""
    records = latest_records(exp.out)
    states = []
    for g, spec in runs:
        kind, text = run_state(spec, exp.out, records)
        carried = carried_file(exp.report, spec)
        if kind == "todo" and carried.exists():
            kind, text = run_state(spec, exp.out, records, carried)
            text += f" (carried in {carried.parent}: restored when the study runs)"
        states.append((g, spec, kind, text))
    return states


def _totals(states: list[tuple[Group, RunSpec, str, str]]) -> str:
    kinds = Counter(kind for _, _, kind, _ in states)
    required = Counter(kind for g, _, kind, _ in states if not g.optional)
    return f"total: {_counts(kinds)}; required groups: {_counts(required)}"


def dry_run(exp: Experiment, runs: list[tuple[Group, RunSpec]]) -> None:
    """One line per run (model, dataset, seed, config hash, state), then the totals."""
    states = _states(exp, runs)
    print(f"{exp.name}: {len(runs)} runs, records in {exp.out}, report in {exp.report}")
    for group, spec, _, text in states:
        tag = f"  [{group.name}, optional]" if group.optional else ""
        sets = _set_values(group, spec)
        print(f"  {spec.model:8s} {spec.dataset.split(':')[0]:10s} seed {spec.seed:<3d} "
              f"{spec.config_hash}  {sets + '  ' if sets else ''}{text}{tag}")
    print(_totals(states))


def write_progress(exp: Experiment, runs: list[tuple[Group, RunSpec]]) -> Path:
    """`<report>/progress.md`: where every run of the study stood when its report was written (the
    dry run's lines as a table), so that a committed report in progress says what is still running."""
    from bench.fileio import now

    states = _states(exp, runs)
    rows = [f"| {spec.model} | {spec.dataset.split(':')[0]} | {spec.seed} | {g.name}{' (optional)' * g.optional} "
            f"| {_set_values(g, spec) or '–'} | {text} |" for g, spec, _, text in states]
    total = _totals(states).capitalize()
    lines = [f"# {exp.name}: where the runs stand", "", f"As of {now()}, from `{exp.out}` "
             f"(`python -m bench reproduce {exp.path} --dry-run` shows the same now). {total}.", "",
             "| model | dataset | seed | group | settings | state |", "|---|---|---|---|---|---|", *rows, ""]
    path = exp.report / "progress.md"
    path.write_text("\n".join(lines))
    return path


def _set_values(group: Group, spec: RunSpec) -> str:
    """The values this run takes of its group's `set` keys ("k=32"): the points of a grid apart."""
    keys = dict.fromkeys(item.partition("=")[0].partition(".")[2] for item in group.cfg.set)
    values = {**spec.hp, **spec.train}
    return " ".join(f"{k}={values[k]}" for k in keys if k in values)


def _counts(c: Counter[str]) -> str:
    return f"{sum(c.values())} runs, {c['done']} done, {c['partial']} partial, {c['todo']} to do"


def copy_records(exp: Experiment, specs: list[RunSpec], dest: Path) -> int:
    """The experiment's records (the latest ok record of each run, else its latest failure) and
    their per-user sidecars into `dest` (replaced); returns how many."""
    from bench.results.records import save_copies

    latest = latest_records(exp.out)
    keys: dict[tuple[str | None, int | None], None] = dict.fromkeys((s.config_hash, s.seed) for s in specs)
    chosen = [latest[k] for k in keys if k in latest]
    if dest.exists():
        shutil.rmtree(dest)
    save_copies(chosen, dest)
    return len(chosen)


def write_report(exp: Experiment, specs: list[RunSpec]) -> list[Path]:
    """Copies the records into `<report>/records/` and writes the report from that copy, with the
    paired cost benchmark's records of `<report>/cost/` (`bench cost --out <report>/cost`) if any:
    they judge the per-epoch cost claims; and with the records of the folders the experiment
    compares with (committed copies of other studies), where they exist."""
    from bench.results.render import write_outputs
    from bench.results.report import ReportConfig, build_report

    n = copy_records(exp, specs, exp.report / "records")
    cost = exp.report / "cost"
    if n == 0 and not (cost / "records.jsonl").exists():
        print(f"no records of this experiment in {exp.out} yet: no report", file=sys.stderr)
        return []
    folders = [f for f in (exp.report / "records", cost, *exp.compare) if (f / "records.jsonl").exists()]
    datasets = tuple(sorted({s.dataset.split(":")[0] for s in specs}))  # its runs' data
    cfg = ReportConfig(records=tuple(folders), out=exp.report, claims=exp.claims, published=exp.published,
                       format=exp.formats, datasets=datasets)
    return write_outputs(build_report(cfg), cfg)


def _run_groups(groups: list[Group]) -> int:
    """Each group as the equivalent `bench run` (which skips finished runs and resumes killed ones)."""
    from bench.runner import cmd_run

    rc = 0
    for g in groups:
        print(f"== {g.name}: {','.join(g.cfg.models)} x seeds {','.join(map(str, g.cfg.seeds))}", file=sys.stderr)
        rc = max(rc, cmd_run(argparse.Namespace(**{f.name: getattr(g.cfg, f.name)
                                                   for f in dataclasses.fields(g.cfg)})))
        if rc >= 128:  # interrupted by a signal: stop here, the same command resumes
            break
    return rc


def _other_kind(cfg: ReproduceConfig) -> int | None:
    """A study of another kind than [[runs]] groups runs here (None: the file is a runs experiment).
    Scaling: each point is a measurement, so --jobs, --extended and --allow-code-change do not apply."""
    if len(cfg.experiment) != 1:
        return None
    kind, top = study_kind(cfg.experiment[0])
    if kind != "scaling":
        return None
    from bench.perf.scale_point import cmd_scaling
    from bench.perf.scaling import load_study

    study = load_study(cfg.experiment[0], top)
    changes: dict[str, Any] = {"out": cfg.out, "report": cfg.report, "data_dir": cfg.data_dir,
                               "threads": cfg.threads, "device": cfg.device}
    study = dataclasses.replace(study, **{k: v for k, v in changes.items() if v is not None})
    return cmd_scaling(study, cfg.dry_run, cfg.report_only)


def cmd_reproduce(ns: argparse.Namespace) -> int:
    from bench.runner import check_resumes

    cfg = from_namespace(ReproduceConfig, ns)
    other = _other_kind(cfg)
    if other is not None:
        return other
    exp = _experiment(cfg)
    runs = validate(exp)
    if cfg.dry_run:
        dry_run(exp, runs)
        return 0
    if cfg.report_only:
        _finish(exp, runs, cfg.carry_states, report=True)
        return 0
    chosen = [g for g in exp.groups if cfg.extended or not g.optional]
    todo = [s for g, s in runs if g in chosen]
    for line in restore_states(exp.report, exp.out, todo, latest_records(exp.out)):
        print(line, file=sys.stderr)
    check_resumes(todo, exp.out, cfg.allow_code_change)  # before any group runs
    rc = _run_groups(chosen)
    _finish(exp, runs, cfg.carry_states, report=rc < 128)  # interrupted: carry, no report
    return rc


def _finish(exp: Experiment, runs: list[tuple[Group, RunSpec]], carry: bool, report: bool) -> None:
    """The report and progress.md (unless the runs were interrupted), then the carried states."""
    if report:
        for path in [*write_report(exp, [s for _, s in runs]), write_progress(exp, runs)]:
            print(path)
    if carry:
        specs = [s for _, s in runs]
        for line in carry_states(exp.report, exp.out, specs, latest_records(exp.out)):
            print(line, file=sys.stderr)

