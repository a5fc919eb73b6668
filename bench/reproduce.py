"""`python -m bench reproduce EXPERIMENT.toml`: run (or resume) every run of a study, then report.

Each `[[runs]]` group of the experiment expands as the equivalent `bench run` command would (the
same run specs and config hashes), and the chosen groups' runs go through one sweep, group after
group in its queue (no job slot idles at a group boundary), so finished runs are skipped and killed
ones resume. Optional groups run with `--extended` only. Then the records of the experiment's runs (with their per-user
sidecars) are copied into `<report>/records/` and the report is written from that copy, so the
report folder is self-contained; a run whose record is committed there is done even where the out
folder was lost (`bench.carry`). `--dry-run` lists each run with its state and the time the study
still needs at the paces measured so far, and runs nothing.
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

from bench.carry import carried_file, carry_states, restore_records, restore_states, study_records
from bench.config import from_namespace, opt
from bench.data.datasets import DatasetEntry, manifest
from bench.errors import BenchError
from bench.experiment import (
    Experiment,
    Group,
    Left,
    duration,
    epochs_left,
    latest_records,
    load_experiment,
    override,
    run_state,
    study_kind,
    validate,
)
from bench.results.codeversion import read_sidecar
from bench.results.schema import RunRecord
from bench.runner import state_file
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


@dataclass(frozen=True)
class RunState:
    group: Group
    spec: RunSpec
    kind: str  # done | partial | todo
    text: str
    left: Left | None  # None: done


def _states(exp: Experiment, runs: list[tuple[Group, RunSpec]]) -> list[RunState]:
    """Each run with its state; a run the out folder has no state of, but the report carries one
    of, is partial at the carried epoch; a run with a record committed in the report is done."""
    records = study_records(exp.report, exp.out)
    states = []
    for g, spec in runs:
        kind, text = run_state(spec, exp.out, records)
        state = state_file(exp.out, spec)
        carried = carried_file(exp.report, spec)
        if kind == "todo" and carried.exists():
            kind, text = run_state(spec, exp.out, records, carried)
            text += f" (carried in {carried.parent}: restored when the study runs)"
            state = carried
        left = None if kind == "done" else epochs_left(spec, read_sidecar(state), state if state.exists() else None)
        states.append(RunState(g, spec, kind, text, left))
    elsewhere = [*records.values(), *(r for folder in exp.compare for r in latest_records(folder).values())]
    return _with_sibling_paces(states, records, _paces_by_dataset(elsewhere))


def _record_pace(rec: Any) -> float | None:
    """A finished training run's mean seconds an epoch (None for anything else)."""
    return rec.timing.epoch_mean_s if isinstance(rec, RunRecord) and rec.timing else None


def _paces_by_dataset(records: list[Any]) -> dict[str, list[tuple[float, str, str]]]:
    """Per model, (seconds an epoch, dataset, training-sample regime) of each finished training run
    the study can read (its own, its report's, its compared folders')."""
    out: dict[str, list[tuple[float, str, str]]] = {}
    for rec in records:
        if pace := _record_pace(rec):
            out.setdefault(rec.model, []).append((pace, rec.dataset, (rec.model_info or {}).get("samples", "")))
    return out


def _scaled_pace(model: str, dataset: str, elsewhere: dict[str, list[tuple[float, str, str]]],
                 sizes: dict[str, DatasetEntry]) -> float | None:
    """The model's mean pace on other datasets of the manifest, each scaled to this one's size: by
    its interactions where the model trains on every prefix or user-item pair, else by its users
    (one training sequence each); None without such a run."""
    if dataset not in sizes:
        return None
    est = [pace * _size(sizes[dataset], samples) / _size(sizes[other], samples)
           for pace, other, samples in elsewhere.get(model, []) if other != dataset and other in sizes]
    return sum(est) / len(est) if est else None


def _size(entry: DatasetEntry, samples: str) -> int:
    return entry.interactions if samples in ("prefixes", "pairs") else entry.users


Paces = dict[tuple[str, str], float]  # (model, dataset) -> seconds an epoch


def _with_sibling_paces(states: list[RunState], records: dict[Any, Any],
                        elsewhere: dict[str, list[tuple[float, str, str]]]) -> list[RunState]:
    """A run with no pace of its own takes the pace of a run of the same settings (another seed):
    a partial one's, else the mean epoch of a done one's record. Failing that, the mean of those
    paces over its model's other settings on the dataset (`Left.borrowed`: a grid's first runs
    give the rest an estimate); failing that, its model's on other datasets scaled to this one's
    size (`Left.scaled`: a study of new datasets gets an order of magnitude)."""
    paces: dict[str | None, float] = {}
    for st in states:
        done_pace = _record_pace(records.get((st.spec.config_hash, st.spec.seed))) if st.kind == "done" else None
        pace = st.left.pace if st.left else done_pace
        if pace and (st.spec.config_hash not in paces or st.left):
            paces[st.spec.config_hash] = pace
    grouped: dict[tuple[str, str], list[float]] = {}
    for st in {st.spec.config_hash: st for st in states if st.spec.config_hash in paces}.values():
        grouped.setdefault((st.spec.model, st.spec.dataset), []).append(paces[st.spec.config_hash])
    by_model = {key: sum(v) / len(v) for key, v in grouped.items()}
    sizes = manifest()
    scaled = {key: p for key in {(st.spec.model, st.spec.dataset) for st in states} - by_model.keys()
              if (p := _scaled_pace(*key, elsewhere, sizes))}
    return [_paced(st, paces, by_model, scaled) for st in states]


def _paced(st: RunState, paces: dict[str | None, float], by_model: Paces, scaled: Paces) -> RunState:
    """The run with the first pace it has: its own settings', its model's under other settings on
    the dataset (borrowed), its model's on other datasets (scaled)."""
    if st.left is None or st.left.pace:
        return st
    key = (st.spec.model, st.spec.dataset)
    own = paces.get(st.spec.config_hash)
    if own is None and key in by_model:
        return dataclasses.replace(st, left=dataclasses.replace(st.left, pace=by_model[key], borrowed=True))
    if own is None and key in scaled:
        return dataclasses.replace(st, left=dataclasses.replace(st.left, pace=scaled[key], scaled=True))
    return dataclasses.replace(st, left=dataclasses.replace(st.left, pace=own))


def _totals(states: list[RunState]) -> str:
    kinds = Counter(st.kind for st in states)
    required = Counter(st.kind for st in states if not st.group.optional)
    return f"total: {_counts(kinds)}; required groups: {_counts(required)}"


def time_left(states: list[RunState], jobs: int) -> str:
    """"time left: required groups 1.2-4.5 h of training (0.6-2.3 h at 2 jobs), all groups ...":
    the sums of each unfinished run's epochs left times its pace, its settings' pace measured in
    another seed, or its model's under other settings (said); the least if every run stops at its
    first chance, the most at its budget."""
    parts = []
    for what, chosen in (("required groups", [s for s in states if not s.group.optional]), ("all groups", states)):
        todo = [s.left for s in chosen if s.left is not None]
        if not todo:
            parts.append(f"{what} done")
            continue
        known = [x for x in todo if x.pace]
        unknown = f"{len(todo) - len(known)} run{'s' * (len(todo) - len(known) != 1)} with no pace yet"
        if not known:
            parts.append(f"{what} unknown ({unknown}: no run of their model on their dataset has trained an epoch)")
            continue
        least, most = sum(x.least * (x.pace or 0) for x in known), sum(x.most * (x.pace or 0) for x in known)
        text = f"{what} {duration(least)}-{duration(most)} of training"
        text += f" ({duration(least / jobs)}-{duration(most / jobs)} at {jobs} jobs)" if jobs > 1 else ""
        if borrowed := sum(x.borrowed for x in known):
            text += f" ({borrowed} of the runs at their model's pace under other settings)"
        if scaled := sum(x.scaled for x in known):
            text += (f" ({scaled} of the runs at their model's pace on other datasets, scaled by users, or "
                     "interactions where it trains on every prefix or pair)")
        parts.append(text + (f", plus {unknown}" if len(known) < len(todo) else ""))
    return "time left at the paces measured so far: " + "; ".join(parts)


def dry_run(exp: Experiment, runs: list[tuple[Group, RunSpec]]) -> None:
    """One line per run (model, dataset, seed, config hash, state), then the totals."""
    states = _states(exp, runs)
    print(f"{exp.name}: {len(runs)} runs, records in {exp.out}, report in {exp.report}")
    for st in states:
        tag = f"  [{st.group.name}, optional]" if st.group.optional else ""
        sets, spec = _set_values(st.group, st.spec), st.spec
        print(f"  {spec.model:8s} {spec.dataset.split(':')[0]:10s} seed {spec.seed:<3d} "
              f"{spec.config_hash}  {sets + '  ' if sets else ''}{st.text}{tag}")
    print(_totals(states))
    print(time_left(states, _jobs(exp)))


def write_progress(exp: Experiment, runs: list[tuple[Group, RunSpec]]) -> Path:
    """`<report>/progress.md`: where every run of the study stood when its report was written (the
    dry run's lines as a table), so that a committed report in progress says what is still running."""
    from bench.fileio import now

    states = _states(exp, runs)
    rows = [f"| {st.spec.model} | {st.spec.dataset.split(':')[0]} | {st.spec.seed} | {st.group.name}"
            f"{' (optional)' * st.group.optional} | {_set_values(st.group, st.spec) or '–'} | {st.text} |"
            for st in states]
    total = _totals(states).capitalize()
    lines = [f"# {exp.name}: where the runs stand", "", f"As of {now()}, from `{exp.out}` "
             f"(`python -m bench reproduce {exp.path} --dry-run` shows the same now). {total}. "
             f"{time_left(states, _jobs(exp)).capitalize()}.", "",
             "| model | dataset | seed | group | settings | state |", "|---|---|---|---|---|---|", *rows, ""]
    path = exp.report / "progress.md"
    path.write_text("\n".join(lines))
    return path


def _jobs(exp: Experiment) -> int:
    return max(1, max(g.cfg.jobs for g in exp.groups))


def _set_values(group: Group, spec: RunSpec) -> str:
    """The values this run takes of its group's `set` keys ("k=32"): the points of a grid apart."""
    keys = dict.fromkeys(item.partition("=")[0].partition(".")[2] for item in group.cfg.set)
    values = {**spec.hp, **spec.train}
    return " ".join(f"{k}={values[k]}" for k in keys if k in values)


def _counts(c: Counter[str]) -> str:
    return f"{sum(c.values())} runs, {c['done']} done, {c['partial']} partial, {c['todo']} to do"


def copy_records(exp: Experiment, specs: list[RunSpec], dest: Path) -> int:
    """The experiment's records (`study_records`: the latest ok record of each run, else its latest
    failure; one committed in the report stays where the out folder has no ok one) and their
    per-user sidecars into `dest` (replaced as a whole, once the new copy is written)."""
    from bench.results.records import save_copies

    latest = study_records(exp.report, exp.out)
    keys: dict[tuple[str | None, int | None], None] = dict.fromkeys((s.config_hash, s.seed) for s in specs)
    chosen = [latest[k] for k in keys if k in latest]
    new = dest.with_name(dest.name + ".new")
    shutil.rmtree(new, ignore_errors=True)
    save_copies(chosen, new)  # from the sources, some of which may be in `dest` itself
    shutil.rmtree(dest, ignore_errors=True)
    new.rename(dest)
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
    """The groups' runs as one sweep of `bench run` (which skips finished runs and resumes killed
    ones), group after group in the queue, so that no job slot idles while one group's last run
    ends and the next group's runs wait. The groups of one study share out folder, jobs, threads,
    device and timeout (only models, datasets, seeds and settings are a group's own)."""
    from bench.runner import expand, run_specs

    specs: dict[tuple[str | None, int | None], RunSpec] = {}
    for g in groups:
        print(f"== {g.name}: {','.join(g.cfg.models)} x seeds {','.join(map(str, g.cfg.seeds))}", file=sys.stderr)
        specs.update({(s.config_hash, s.seed): s for s in expand(g.cfg) if (s.config_hash, s.seed) not in specs})
    models = tuple(dict.fromkeys(m for g in groups for m in g.cfg.models))
    return run_specs(dataclasses.replace(groups[0].cfg, models=models), list(specs.values())) if groups else 0


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
    for line in [*restore_records(exp.report, exp.out, todo),
                 *restore_states(exp.report, exp.out, todo, study_records(exp.report, exp.out))]:
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
        for line in carry_states(exp.report, exp.out, specs, study_records(exp.report, exp.out)):
            print(line, file=sys.stderr)

