"""Append-only JSON-lines records with provenance, and their per-user sidecars. No torch here.

A record (one of the typed records of `bench.results.schema`) is one JSON object on one line of
`<out>/records.jsonl`. Per-user arrays go to `<out>/per_user/<id>.npz`, written (atomically) before
the line that names them, so a reader never sees a line whose sidecar is missing. Lines are appended
with one `write` under an exclusive `flock`, so concurrent workers never interleave.
"""

from __future__ import annotations

import dataclasses
import fcntl
import io
import json
import os
import platform
import shutil
import socket
import sys
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from bench.errors import BenchError
from bench.fileio import write_atomic
from bench.results.codeversion import code_version
from bench.results.schema import (
    CodeChange,
    Device,
    Evaluated,
    FailureRecord,
    Provenance,
    Record,
    RunRecord,
    parse_record,
)
from bench.spec import RunSpec

RECORDS_FILE = "records.jsonl"
R = TypeVar("R", bound=Record)


def library_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for lib in ("torch", "numpy", "faiss-cpu", "scipy"):
        try:
            out[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            out[lib] = None
    return out


def peak_rss_mb() -> float:
    """This process's peak resident memory since it started (MB).

    Linux: /proc's VmHWM, the high-water mark of the current program only. `getrusage`'s ru_maxrss
    also keeps the parent's resident memory that a child shares between fork and exec, so a run
    launched from a big process would report that process's size. Elsewhere: ru_maxrss.
    """
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    line = next(ln for ln in status.splitlines() if ln.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024  # kB


def cpu_model() -> str:
    """The CPU's model name with its family, model and widest vector extension ("AMD EPYC (family
    25 model 17, AVX-512)"): virtual machines often give a bare "AMD EPYC" to CPU generations whose
    speed differs by half, and speed is only comparable within one. platform.processor() is empty on
    most Linux."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor() or platform.machine()
    # one block per logical CPU, all alike: the last one's fields stand
    info = {k.strip(): v.strip() for k, v in (ln.split(":", 1) for ln in lines if ":" in ln)}
    name = info.get("model name", platform.machine())
    flags = set(info.get("flags", "").split())
    simd = next((label for flag, label in (("amx_tile", "AMX"), ("avx512f", "AVX-512"), ("avx2", "AVX2"))
                 if flag in flags), None)
    detail = [f"family {info['cpu family']} model {info['model']}" if "cpu family" in info and "model" in info
              else None, simd]
    return f"{name} ({', '.join(d for d in detail if d)})" if any(detail) else name


def provenance() -> Provenance:
    """This process's machine, libraries and code version (fixed at its first use: a run's start)."""
    return Provenance(host=socket.gethostname(), platform=platform.platform(), machine=platform.machine(),
                      cpu=cpu_model(), cpu_count=os.cpu_count(), python=platform.python_version(),
                      libraries=library_versions(), git=code_version())


def run_record(spec: RunSpec, attempt: str, result: dict[str, Any], device: dict[str, Any], resumed: bool,
               code_change: CodeChange | None) -> RunRecord:
    """The record of a finished run, from `bench.train.train_run`'s measurements (less `per_user`)."""
    body = {**result, "model": spec.model, "dataset": spec.dataset, "seed": spec.seed,
            "config_hash": spec.config_hash, "config": spec.as_dict(), "attempt": attempt}
    rec = RunRecord.from_json(body, f"the measurements of {spec.model}/{spec.dataset}/s{spec.seed}")
    return dataclasses.replace(rec, device=Device.from_json(device), resumed=resumed, code_change=code_change,
                               provenance=provenance())


def failure_record(spec: RunSpec, attempt: str, reason: str, stderr_tail: str, *, resumed: bool | None = None,
                   code_change: CodeChange | None = None, wall_s: float | None = None) -> FailureRecord:
    """The record of a run that failed: in the worker (a reason it can name) or in the runner (a
    worker that died without a record, or a timeout)."""
    return FailureRecord(model=spec.model, dataset=spec.dataset, seed=spec.seed, config_hash=spec.config_hash,
                         config=spec.as_dict(), attempt=attempt, reason=reason, stderr_tail=stderr_tail,
                         resumed=resumed, code_change=code_change, wall_s=wall_s, provenance=provenance())


def save_per_user(out_dir: Path, rec_id: str, arrays: dict[str, np.ndarray]) -> str:
    """Writes the sidecar; returns its path relative to out_dir."""
    buf = io.BytesIO()
    np.savez_compressed(buf, **{k.replace("@", "_at_"): v for k, v in arrays.items()})  # type: ignore[arg-type]
    rel = f"per_user/{rec_id}.npz"
    write_atomic(out_dir / rel, buf.getvalue())
    return rel


def _line(record: Record) -> bytes:
    """The one JSON form of a record on disk."""
    return (json.dumps(record.to_json(), sort_keys=True, allow_nan=True) + "\n").encode()


def append_record(out_dir: Path, record: R, per_user: dict[str, np.ndarray] | None = None) -> R:
    """Writes the sidecar (an evaluated record's per-user arrays), then appends the line atomically;
    returns the record as written, with its folder."""
    out_dir.mkdir(parents=True, exist_ok=True)
    if per_user is not None:
        if not isinstance(record, Evaluated):
            raise TypeError(f"a {type(record).__name__} has no per-user arrays")
        record = dataclasses.replace(record, per_user_file=save_per_user(out_dir, record.id, per_user))
    line = _line(record)
    fd = os.open(out_dir / RECORDS_FILE, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        _drop_torn_tail(fd)
        os.write(fd, line)
        os.fsync(fd)
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
    return dataclasses.replace(record, folder=out_dir)


def _drop_torn_tail(fd: int) -> None:
    """A writer killed mid-line leaves a tail without newline: cut it so the next line is whole."""
    size = os.fstat(fd).st_size
    if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
        return
    tail = os.pread(fd, min(size, 1 << 20), max(0, size - (1 << 20)))
    keep = size - len(tail) + tail.rfind(b"\n") + 1
    os.ftruncate(fd, keep)


def record_files(paths: list[Path]) -> list[Path]:
    files: list[Path] = []
    for p in paths:
        if p.is_dir():
            files.extend(sorted(p.rglob(RECORDS_FILE)))
        elif p.is_file():
            files.append(p)
        else:
            raise BenchError(f"{p}: no such record file or directory")
    return files


def read_records(paths: list[Path]) -> list[Record]:
    """Every record of the given files/directories, typed (schema 1 lines upgraded: see
    `bench.results.schema`); each knows its `folder` (where its sidecar lives).

    A last line without a newline (a writer killed mid-write) is skipped with a warning naming
    file:line on stderr; any other bad line is an error naming file:line.
    """
    out: list[Record] = []
    for f in record_files(paths):
        text = f.read_text()
        lines = text.split("\n")
        for no, line in enumerate(lines, 1):
            if not line.strip():
                continue
            if no == len(lines) and not text.endswith("\n"):
                print(f"warning: {f}:{no}: skipped a torn last line (its writer was stopped mid-write; the next "
                      "record written there cuts it off)", file=sys.stderr)
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise BenchError(f"{f}:{no}: not a JSON record ({e.msg})") from None
            out.append(dataclasses.replace(parse_record(obj, f"{f}:{no}"), folder=f.parent))
    return out


def load_per_user(record: Record) -> dict[str, np.ndarray]:
    if not isinstance(record, Evaluated) or not record.per_user_file or record.folder is None:
        raise BenchError(f"record {record.id} has no per-user arrays")
    with np.load(record.folder / record.per_user_file) as z:
        return {k.replace("_at_", "@"): z[k] for k in z.files}


def save_copies(records: Sequence[Record], dest: Path) -> None:
    """Copies of the records (as the current schema) and their per-user sidecars into the folder
    `dest`, which becomes a self-contained records folder."""
    for rec in records:
        if isinstance(rec, Evaluated) and rec.per_user_file and rec.folder is not None:
            (dest / rec.per_user_file).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(rec.folder / rec.per_user_file, dest / rec.per_user_file)
    write_atomic(dest / RECORDS_FILE, b"".join(map(_line, records)))
