"""Append-only JSON-lines records with provenance, and their per-user sidecars. No torch here.

A record is one JSON object on one line of `<out>/records.jsonl`. Per-user arrays go to
`<out>/per_user/<id>.npz`, written (atomically) before the line that names them, so a reader never
sees a line whose sidecar is missing. Lines are appended with one `write` under an exclusive
`flock`, so concurrent workers never interleave.
"""

from __future__ import annotations

import fcntl
import io
import json
import os
import platform
import socket
import sys
import uuid
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from bench.errors import BenchError
from bench.fileio import now, write_atomic
from bench.results.codeversion import code_version

SCHEMA_VERSION = 1
RECORDS_FILE = "records.jsonl"
REPO_ROOT = Path(__file__).resolve().parents[2]


def new_id() -> str:
    return uuid.uuid4().hex[:16]








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
    """The CPU's model name ("Intel(R) Xeon(R) ..."); platform.processor() is empty on most Linux."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor() or platform.machine()
    return next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")), platform.machine())


def provenance() -> dict[str, Any]:

    return {
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "libraries": library_versions(),
        "git": code_version(),  # commit, dirty flag and the source files' sha256
    }





def save_per_user(out_dir: Path, rec_id: str, arrays: dict[str, np.ndarray]) -> str:
    """Writes the sidecar; returns its path relative to out_dir."""
    buf = io.BytesIO()
    np.savez_compressed(buf, **{k.replace("@", "_at_"): v for k, v in arrays.items()})  # type: ignore[arg-type]
    rel = f"per_user/{rec_id}.npz"
    write_atomic(out_dir / rel, buf.getvalue())
    return rel


def append_record(out_dir: Path, record: dict[str, Any], per_user: dict[str, np.ndarray] | None = None) -> dict:
    """Adds schema, id and time, writes the sidecar, then appends the line atomically."""
    out_dir.mkdir(parents=True, exist_ok=True)
    record = {"schema": SCHEMA_VERSION, "id": record.get("id") or new_id(), "created": now(), **record}
    if per_user is not None:
        record["per_user_file"] = save_per_user(out_dir, record["id"], per_user)
    line = (json.dumps(record, sort_keys=True, allow_nan=True) + "\n").encode()
    fd = os.open(out_dir / RECORDS_FILE, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        _drop_torn_tail(fd)
        os.write(fd, line)
        os.fsync(fd)
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
    return record


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


def read_records(paths: list[Path]) -> list[dict[str, Any]]:
    """Every record of the given files/directories; each gets `_dir` (where its sidecar lives).

    A last line without a newline (a writer killed mid-write) is skipped with a warning naming
    file:line on stderr; any other bad line is an error naming file:line.
    """
    out: list[dict[str, Any]] = []
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
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise BenchError(f"{f}:{no}: not a JSON record ({e.msg})") from None
            if rec.get("schema") != SCHEMA_VERSION:
                raise BenchError(f"{f}:{no}: schema {rec.get('schema')!r}, this version reads {SCHEMA_VERSION}")
            rec["_dir"] = str(f.parent)
            out.append(rec)
    return out


def load_per_user(record: dict[str, Any]) -> dict[str, np.ndarray]:
    rel = record.get("per_user_file")
    if not rel:
        raise BenchError(f"record {record.get('id')} has no per-user arrays")
    with np.load(Path(record["_dir"]) / rel) as z:
        return {k.replace("_at_", "@"): z[k] for k in z.files}
