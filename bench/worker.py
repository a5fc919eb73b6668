"""One run in its own process: `python -m bench.worker SPEC_JSON OUT_DIR ATTEMPT_ID`.

Prints `EPOCH <done> <best valid NDCG@20>` and `PRETRAIN <done> <total> <loss>` lines for the
parent's progress bar, appends the run's
record (ok, or failed with the reason for the failures it can name), and exits non-zero on failure.
"""

from __future__ import annotations

import sys

from bench.lifeline import die_with_parent, exit_now, keep_niceness

if __name__ == "__main__":  # before torch is imported: that takes seconds, the parent may die meanwhile
    die_with_parent()
    keep_niceness()

import dataclasses
import io
import json
import math
import os
import traceback
from pathlib import Path

import torch

from bench.errors import BenchError
from bench.evaluate import device_info
from bench.fileio import write_atomic
from bench.results.codeversion import code_version, resume_check, sidecar_path
from bench.results.records import append_record, failure_record, run_record
from bench.runner import state_file
from bench.spec import RunSpec
from bench.train import Progress, RunFailure, train_run


def _await_job() -> list[str] | None:
    """Standby: started while the parent validates the sweep, so torch is imported by the time the
    job arrives on stdin as [spec, out dir, attempt, log file]; end of input means no job."""
    line = sys.stdin.readline()
    if not line.strip():
        return None
    *argv, log = json.loads(line)
    fd = os.open(log, os.O_WRONLY | os.O_APPEND)
    os.dup2(fd, 2)  # from here on stderr goes to the run's log, as for a worker started with the job
    os.close(fd)
    return argv


def save_weights(out: Path, rec_id: str, weights: dict[str, torch.Tensor]) -> str:
    """The tested (best-validation) weights as a state dict, `<out>/weights/<record id>.pt`, written
    atomically before the record that names them: `bench eval --checkpoint` reads them, so that
    diagnostics added later can be measured on finished runs. Returns the path relative to out."""
    buf = io.BytesIO()
    torch.save(weights, buf)
    rel = f"weights/{rec_id}.pt"
    write_atomic(out / rel, buf.getvalue())
    return rel


def main(argv: list[str]) -> int:
    if argv == ["--standby"]:
        job = _await_job()
        if job is None:
            return 0
        argv = job
    spec, out, attempt = RunSpec.from_dict(json.loads(argv[0])), Path(argv[1]), argv[2]
    state = state_file(out, spec)
    state.parent.mkdir(parents=True, exist_ok=True)
    resumed, code_change = state.exists(), None

    def on_epoch(p: Progress, total: int) -> None:
        print(f"EPOCH {p.epoch} {max(p.best_score, 0.0):.6f}", flush=True)

    def on_pretrain(p: Progress, total: int) -> None:
        loss = (p.pretrain_curve or [{}])[-1].get("loss", math.nan)
        print(f"PRETRAIN {p.pretrain_epoch} {total} {loss:.6f}", flush=True)

    try:
        code_version()  # now, as the process starts: the code this run runs
        code_change = resume_check(state, spec.allow_code_change)
        result = train_run(spec, state, on_epoch, on_pretrain)
    except (RunFailure, BenchError, MemoryError, torch.OutOfMemoryError) as e:
        reason = f"{type(e).__name__}: {e}".splitlines()[0]
        append_record(out, failure_record(spec, attempt, reason, traceback.format_exc()[-4000:], resumed=resumed,
                                          code_change=code_change))
        print(reason, file=sys.stderr)
        return 1
    per_user, weights = result.pop("per_user"), result.pop("weights")
    rec = run_record(spec, attempt, result, device_info(spec.device), resumed, code_change)
    append_record(out, dataclasses.replace(rec, weights_file=save_weights(out, rec.id, weights)), per_user)
    state.unlink(missing_ok=True)  # the record is written: the resume state is no longer needed
    sidecar_path(state).unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    exit_now(main(sys.argv[1:]))
