"""Resume states and records that travel with a study's report, so that a study longer than one
machine's life can be resumed from a fresh clone.

`bench reproduce EXP --report-only --carry-states` copies the state of every partial run of the
study (`<out>/state/<hash>-s<seed>.pt` and its sidecar) into `<report>/resume/`, where it can be
committed beside the records, and removes from there the states of runs that have finished.
`bench reproduce EXP` (not a dry run) then copies a carried state back into `<out>/state/` before
the runs start, unless the out folder holds the same run at a later or equal epoch: nothing newer is
ever overwritten. A carried state resumes under the same code check as any other
(`--allow-code-change`). No torch here: the epoch comes from the sidecar.

The report's own copy of the finished runs' records (`<report>/records/`, committed) counts too: a
run with an ok record there is done, whatever the out folder holds (`study_records`), and before
the runs start `restore_records` appends such a record (with its per-user sidecar) to an out folder
that lacks it, so a fresh clone never trains a committed run again.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from bench.experiment import latest_records
from bench.results.codeversion import read_sidecar, sidecar_path
from bench.results.records import append_record
from bench.results.schema import RunRecord
from bench.runner import Outcome, state_file
from bench.spec import RunSpec

CARRY_DIR = "resume"
RECORDS_DIR = "records"
Records = dict[tuple[str | None, int | None], Outcome]


def carried_file(report: Path, spec: RunSpec) -> Path:
    """Where a run's carried state lives in its study's report folder."""
    return report / CARRY_DIR / state_file(Path("."), spec).name


def _epoch(state: Path) -> int | None:
    """Epochs done in a state per its sidecar (None: no state, or no readable sidecar)."""
    side = read_sidecar(state) if state.exists() else None
    return int(side["epoch"]) if side and "epoch" in side else None


def _copy(src: Path, dest: Path) -> None:
    """State and sidecar, each written under a temporary name and renamed (never a torn copy);
    the sidecar last, so a reader never sees a sidecar newer than its state."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    for a, b in ((src, dest), (sidecar_path(src), sidecar_path(dest))):
        if a.exists():
            tmp = b.with_name(b.name + ".tmp")
            shutil.copyfile(a, tmp)
            tmp.replace(b)


def _done(spec: RunSpec, records: Records) -> bool:
    return isinstance(records.get((spec.config_hash, spec.seed)), RunRecord)


def _remove(state: Path) -> None:
    state.unlink(missing_ok=True)
    sidecar_path(state).unlink(missing_ok=True)


def carry_states(report: Path, out: Path, specs: list[RunSpec],
                 records: dict[tuple[str | None, int | None], Outcome]) -> list[str]:
    """Copies each partial run's state into `<report>/resume/` (an older carried copy is replaced,
    a newer one kept) and drops the carried states of finished runs; returns one line per change."""
    lines = []
    for spec in specs:
        carried, state = carried_file(report, spec), state_file(out, spec)
        if _done(spec, records):
            if carried.exists():
                _remove(carried)
                lines.append(f"dropped {carried} ({spec.model} seed {spec.seed} is done)")
            continue
        here, there = _epoch(state), _epoch(carried)
        if here is not None and (there is None or here > there):
            _copy(state, carried)
            lines.append(f"carried {spec.model} seed {spec.seed} at epoch {here} into {carried}")
    return lines


def restore_states(report: Path, out: Path, specs: list[RunSpec],
                   records: dict[tuple[str | None, int | None], Outcome]) -> list[str]:
    """Copies a carried state back into `<out>/state/` where the out folder has none or an older
    one, and the run is not done; returns one line per restored run."""
    lines = []
    for spec in specs:
        carried, state = carried_file(report, spec), state_file(out, spec)
        there, here = _epoch(carried), _epoch(state)
        if there is None or _done(spec, records):
            continue
        if here is None and state.exists():  # a state without a sidecar: epoch unknown, keep it
            continue
        if here is None or there > here:
            _copy(carried, state)
            lines.append(f"restored {spec.model} seed {spec.seed} at epoch {there} from {carried}")
    return lines


def study_records(report: Path, out: Path) -> Records:
    """Per (config hash, seed) the out folder's latest record (`latest_records`), where the report's
    committed copy has no ok record of the run; else the committed one."""
    merged = latest_records(out)
    for key, rec in latest_records(report / RECORDS_DIR).items():
        if isinstance(rec, RunRecord) and not isinstance(merged.get(key), RunRecord):
            merged[key] = rec
    return merged


def restore_records(report: Path, out: Path, specs: list[RunSpec]) -> list[str]:
    """Appends to `<out>/records.jsonl` the committed ok record of each of `specs` that the out folder
    has no ok record of, with the files it names (per-user sidecar, weights); one line per record."""
    here, lines = latest_records(out), []
    committed = latest_records(report / RECORDS_DIR)
    for spec in specs:
        rec = committed.get((spec.config_hash, spec.seed))
        if not isinstance(rec, RunRecord) or _done(spec, here) or rec.folder is None:
            continue
        for rel in (rec.per_user_file, rec.weights_file):
            if rel and (rec.folder / rel).exists():
                (out / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(rec.folder / rel, out / rel)
        append_record(out, rec)
        lines.append(f"restored the record of {spec.model} seed {spec.seed} (done) from {rec.folder}")
    return lines
