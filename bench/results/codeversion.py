"""Which code a run ran with, and refusing to mix code versions silently. No torch here.

A run of the paper profile takes hours, and the code changes under it. The code version is the git
commit, the dirty flag, a sha256 over the source files of `bench/` and `models/` (on a dirty tree
the commit alone says nothing) and one over the code a run's numbers can depend on: the same files
less `bench/results/` (records, statistics, reports and gates read finished runs and never import
torch, so a report change neither blocks a resume nor splits a comparison into code versions).
Versions compare on the run hash where both have one, else on the source hash, else on the commit.
Every state file (`<out>/state/<hash>-s<seed>.pt`) gets a small JSON sidecar (`.json`) with the
code version and the progress, written after the state, so that a resume can be checked, and a dry
run can show the progress, without torch. A resume under other code is refused unless
`--allow-code-change` was given (then the record says so), and the report warns when the runs of
one comparison come from different code versions.
"""

from __future__ import annotations

import functools
import hashlib
import json
import statistics
import subprocess
from collections import defaultdict
from pathlib import Path
from typing import Any

from bench.errors import BenchError
from bench.fileio import now, write_atomic
from bench.results.schema import Attempt, CodeChange, CodeVersion, Record

REPO_ROOT = Path(__file__).resolve().parents[2]
SOURCE_DIRS = ("bench", "models")
SOURCE_SUFFIXES = (".py", ".c", ".h")  # what runs; claim files and docs do not change a run
RESULTS_DIR = ("bench", "results")  # reads finished runs (no torch, a test says so): no part of a run's numbers


def git_state() -> dict[str, Any]:
    def git(*args: str) -> str:
        res = subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10)
        return res.stdout.strip() if res.returncode == 0 else ""

    commit = git("rev-parse", "HEAD")
    dirty = bool(git("status", "--porcelain", "--untracked-files=no")) if commit else None
    return {"commit": commit or None, "dirty": dirty}


def _file_digests(root: Path) -> list[tuple[tuple[str, ...], bytes]]:
    """(relative path parts, sha256 of the content) of every source file of bench/ and models/, sorted."""
    files = sorted(p for d in SOURCE_DIRS for p in (root / d).rglob("*")
                   if p.suffix in SOURCE_SUFFIXES and p.is_file() and "__pycache__" not in p.parts)
    return [(p.relative_to(root).parts, hashlib.sha256(p.read_bytes()).digest()) for p in files]


def _combine(digests: list[tuple[tuple[str, ...], bytes]]) -> str:
    h = hashlib.sha256()
    for parts, digest in digests:
        h.update("/".join(parts).encode() + b"\0")
        h.update(digest)
    return h.hexdigest()


def _is_run_code(parts: tuple[str, ...]) -> bool:
    return parts[:len(RESULTS_DIR)] != RESULTS_DIR


def _hashes(root: Path) -> tuple[str, str]:
    """(source, run) hashes from one read of each file: all of bench/ and models/, and the same less
    bench/results/ (the code a run's numbers can depend on)."""
    digests = _file_digests(root)
    return _combine(digests), _combine([d for d in digests if _is_run_code(d[0])])


def source_sha256(root: Path = REPO_ROOT, *, run_only: bool = False) -> str:
    """sha256 over (relative path, content) of every source file of bench/ and models/, sorted;
    `run_only`: less bench/results/."""
    return _hashes(root)[run_only]


@functools.cache
def code_version() -> CodeVersion:
    """This process's code: computed once, at the first call (a worker calls it as it starts), so
    that an edit during a long run is not taken for the code that runs."""
    source, run = _hashes(REPO_ROOT)
    return CodeVersion(**git_state(), source_sha256=source, run_sha256=run)


def describe(v: CodeVersion | None) -> str:
    """`abc1234+dirty (sources 1a2b3c4d5e6f)`; "unknown" for a state or record without one."""
    if v is None:
        return "unknown"
    commit = str(v.commit or "no git")[:7] + ("+dirty" if v.dirty else "")
    return f"{commit} (sources {v.source_sha256[:12]})" if v.source_sha256 else commit


def same_code(a: CodeVersion | None, b: CodeVersion | None) -> bool:
    """Equal run hashes, or (for records without one) equal source hashes, or (without those) the
    same clean commit."""
    if a is None or b is None:
        return False
    if a.run_sha256 and b.run_sha256:
        return a.run_sha256 == b.run_sha256
    if a.source_sha256 and b.source_sha256:
        return a.source_sha256 == b.source_sha256
    return bool(a.commit) and a.commit == b.commit and not a.dirty and not b.dirty


# ---------------------------------------------------------------- state sidecars


def sidecar_path(state: Path) -> Path:
    return state.with_suffix(".json")


def write_sidecar(state: Path, progress: dict[str, Any]) -> None:
    """Next to a state, written just before it: its progress and this process's code version (atomic)."""

    body = {**progress, "code": code_version().to_json(), "saved": now()}
    write_atomic(sidecar_path(state), (json.dumps(body, sort_keys=True) + "\n").encode())


def recent_epoch_s(curve: list[dict[str, Any]]) -> float | None:
    """Median wall seconds of a run's last ten epochs (every phase, the epoch-start work included):
    the pace a sidecar records, for the dry run's time left."""
    recent = [sum(c["seconds"].values()) for c in curve[-10:]]
    return statistics.median(recent) if recent else None


def read_sidecar(state: Path) -> dict[str, Any] | None:
    try:
        return dict(json.loads(sidecar_path(state).read_text()))
    except (OSError, ValueError):
        return None


def sidecar_code(side: dict[str, Any] | None) -> CodeVersion | None:
    """The code version a sidecar recorded (None: none, or a state saved before sidecars)."""
    code = (side or {}).get("code")
    return CodeVersion.from_json(code, "state sidecar: code") if code else None


def resume_check(state: Path, allow: bool) -> CodeChange | None:
    """Before resuming `state`: None when there is nothing to resume or the code is the same; with
    `allow`, the code change for the record; otherwise a one-line BenchError naming both versions."""
    if not state.exists():
        return None
    saved = sidecar_code(read_sidecar(state))
    now_v = code_version()
    if same_code(saved, now_v):
        return None
    if allow:
        return CodeChange(state_code=saved, code=now_v, allowed=True)
    why = "was saved before code versions were recorded" if not saved else f"was saved by code {describe(saved)}"
    raise BenchError(f"refusing to resume {state.name}: it {why}, this is {describe(now_v)}; rerun that code, "
                     f"pass --allow-code-change to go on anyway (recorded), or delete the state to start over")


# ---------------------------------------------------------------- report warnings


def _key(v: CodeVersion | None, by_run: bool) -> tuple[Any, ...]:
    """What groups runs into code versions: the run hash where every run of the comparison has one
    (a record of older code has only the source hash, and the two kinds never compare)."""
    if v is None:
        return ("git", None, None)
    if by_run and v.run_sha256:
        return ("run", v.run_sha256)
    return ("src", v.source_sha256) if v.source_sha256 else ("git", v.commit, v.dirty)


def _label(rec: Record) -> str:
    return f"{rec.model} s{rec.seed}"


def code_warnings(records: list[Record]) -> list[str]:
    """Warnings for the runs of one comparison: several code versions, dirty trees whose code cannot
    be compared, runs resumed under other code. Empty when every run ran the same code."""
    groups: dict[tuple[Any, ...], list[Record]] = defaultdict(list)
    by_run = all(r.provenance.git is not None and r.provenance.git.run_sha256 for r in records)
    for rec in records:
        groups[_key(rec.provenance.git, by_run)].append(rec)
    for rs in groups.values():
        rs.sort(key=lambda r: (str(r.model), r.seed or 0))
    out = []
    if len(groups) > 1:
        parts = [f"{describe(rs[0].provenance.git)}: {', '.join(map(_label, rs))}"
                 for rs in sorted(groups.values(), key=lambda rs: _label(rs[0]))]
        out.append(f"these runs come from {len(groups)} code versions ({'; '.join(parts)}): differences may be "
                   "the code's, not the models'")
    unknown = [r for k, rs in groups.items() if k[0] == "git" and k[2] for r in rs]
    if unknown and len(records) > 1:
        out.append(f"{len(unknown)} run(s) ran from a dirty tree without a source hash "
                   f"({', '.join(map(_label, unknown))}): whether their code was the same cannot be checked")
    for rec in records:
        change = rec.code_change if isinstance(rec, Attempt) else None
        if change is not None:
            out.append(f"{_label(rec)} was resumed under other code ({describe(change.state_code)} -> "
                       f"{describe(change.code)}, --allow-code-change)")
    return out
