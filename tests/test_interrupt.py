"""A sweep that is stopped, killed or started twice: no orphan, no lost or duplicated run, no failure
record for an interruption, the same metrics in the end."""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.results.records import read_records
from bench.results.schema import RunRecord

TINY = "synthetic:users=200,items=60,intents=3,seed=2"
SWEEP = ["--profile", "smoke", "--datasets", TINY]


def start(out: Path, *args: str) -> subprocess.Popen[str]:
    # stderr to a file, read back by stderr_of: a pipe read only after the exit could fill and block the sweep
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.parent / f"{out.name}.stderr", "w") as err:  # the child keeps its own copy
        return subprocess.Popen([sys.executable, "-m", "bench", "run", *SWEEP, *args, "--out", str(out)],
                                stdout=subprocess.DEVNULL, stderr=err, text=True, start_new_session=True,
                                preexec_fn=_default_sigint)


def _default_sigint() -> None:
    # a background job of a non-interactive shell inherits SIGINT ignored (and a Python started so
    # keeps ignoring it, as it should): the sweep under test gets Ctrl-C's default behaviour back
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def stderr_of(out: Path) -> str:
    return (out.parent / f"{out.name}.stderr").read_text()


@pytest.fixture(autouse=True)
def no_leftover_sweeps(tmp_path: Path) -> Iterator[None]:
    """A sweep that a failed test left running (its --out in this test's folder) is killed with its
    workers, not left behind."""
    yield
    for pid in _sweeps_under(tmp_path):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)


def _sweeps_under(folder: Path) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        try:
            cmd = (proc / "cmdline").read_bytes().split(b"\0") if proc.name.isdigit() else []
        except OSError:
            continue
        if b"run" in cmd and any(a.startswith(str(folder).encode()) for a in cmd):
            found.append(int(proc.name))
    return found


def run(out: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bench", "run", *SWEEP, *args, "--out", str(out)],
                          capture_output=True, text=True, timeout=600)


def workers_of(parent: int) -> list[int]:
    """Live worker processes that the sweep with this pid started (their environment names it)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes()
            env = (proc / "environ").read_bytes()
            state = next(ln for ln in (proc / "status").read_text().splitlines() if ln.startswith("State:"))
        except (OSError, StopIteration):
            continue
        if b"bench.worker" in cmd and f"INTENTBENCH_PARENT_PID={parent}\0".encode() in env and "zombie" not in state:
            found.append(int(proc.name))
    return found


def wait_for(cond: object, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError("timed out")


def statuses(out: Path) -> list[str]:
    return [r.status for r in read_records([out])] if (out / "records.jsonl").exists() else []


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_a_signal_stops_every_worker_and_the_run_stays_resumable(tmp_path: Path, sig: int) -> None:
    out = tmp_path / "out"
    proc = start(out, "--models", "elcrec", "--epochs", "20", "--seeds", "1,2,3")
    wait_for(lambda: any((out / "state").glob("*.pt")) if (out / "state").exists() else False)
    assert workers_of(proc.pid)
    proc.send_signal(sig)
    assert proc.wait(timeout=30) == 128 + sig
    assert "interrupted" in stderr_of(out)
    wait_for(lambda: not workers_of(proc.pid), timeout=5)
    assert "failed" not in statuses(out)  # an interruption is not a failure
    assert len(list((out / "logs").glob("*.log"))) == 1  # the queued seeds never started: no traces of them
    res = run(out, "--models", "elcrec", "--epochs", "20")
    assert res.returncode == 0, res.stderr
    (rec,) = read_records([out])
    assert isinstance(rec, RunRecord) and rec.resumed


def test_a_second_sweep_on_the_same_out_exits_2_naming_the_holder(tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = start(out, "--models", "elcrec", "--epochs", "50")
    try:
        wait_for(lambda: (out / ".lock").exists() and (out / ".lock").read_text().strip() != "")
        second = run(out, "--models", "sasrec", "--epochs", "1")
        assert second.returncode == 2
        assert second.stderr.count("\n") == 1 and f"pid {first.pid}" in second.stderr and "in use" in second.stderr
    finally:
        first.send_signal(signal.SIGTERM)
        first.wait(timeout=30)


def test_a_stale_lock_of_a_dead_sweep_is_taken_over(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / ".lock").write_text("pid 999999999 on a-host-that-died, since 2026-01-01T00:00:00+00:00")
    res = run(out, "--models", "sasrec", "--epochs", "1")
    assert res.returncode == 0, res.stderr
    assert statuses(out) == ["ok"]


def test_a_torn_last_record_line_is_reported_with_file_and_line(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "records.jsonl"
    whole = {"schema": 1, "id": "a", "created": "2026-01-01T00:00:00+00:00", "kind": "run", "status": "failed",
             "model": "m", "dataset": "d", "reason": "r"}
    f.write_text(json.dumps(whole) + "\n" + '{"schema": 1, "id": "b", "ki')
    assert [r.id for r in read_records([f])] == ["a"]
    assert f"{f}:2: skipped a torn last line" in capsys.readouterr().err


def _kill_moment(rng: random.Random, state: Path, proc: subprocess.Popen[str]) -> bool:
    """Waits for a random moment of the sweep: three times in four just after an epoch's state was
    saved (so that runs are killed mid-training and resumed, and each kill leaves progress behind:
    on a fast machine a sweep of random delays alone can end before ten kills), else after a random
    delay. False if the sweep ended first."""
    deadline = time.time() + (600 if rng.random() < 0.75 else rng.uniform(0.5, 2.0))
    stamp = max((f.stat().st_mtime_ns for f in state.glob("*.pt")), default=0) if state.exists() else 0
    while time.time() < deadline:
        if proc.poll() is not None:
            return False
        now = max((f.stat().st_mtime_ns for f in state.glob("*.pt")), default=0) if state.exists() else 0
        if now > stamp:
            time.sleep(rng.uniform(0.0, 0.05))  # smoke epochs are short: longer, and several pass
            break
        time.sleep(0.02)
    return proc.poll() is None


@pytest.mark.slow
def test_random_sigkills_lose_nothing_duplicate_nothing_and_change_no_metric(tmp_path: Path) -> None:
    """SIGKILL to the sweep process alone at random moments (its workers die with it: no orphan may
    go on writing), resumed each time, until the sweep gets through; a finished run is never lost
    or repeated, and in the end every run has exactly one record, ok, with the metrics of an
    uninterrupted sweep."""
    args = ["--models", "sasrec,elcrec", "--seeds", "1,2", "--epochs", "8", "--jobs", "2", "--threads", "1"]
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    assert run(reference, *args).returncode == 0
    rng, kills, parents, finished = random.Random(7), 0, [], []
    while True:
        proc = start(killed, *args)
        parents.append(proc.pid)
        if kills < 12 and _kill_moment(rng, killed / "state", proc):
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            kills += 1
            wait_for(lambda pid=proc.pid: not workers_of(pid), timeout=5)  # no orphan goes on training
            now = [(r.model, r.seed) for r in read_records([killed])] if (killed / "records.jsonl").exists() else []
            assert len(now) == len(set(now)) and set(finished) <= set(now)  # nothing repeated, nothing lost
            finished = now
            continue
        assert proc.wait(timeout=600) == 0, stderr_of(killed)
        break
    want = {(r.model, r.seed): r for r in read_records([reference]) if isinstance(r, RunRecord)}
    got = [r for r in read_records([killed]) if isinstance(r, RunRecord)]
    assert len(got) == len(read_records([killed])) == len(want)  # all ok
    assert sorted((r.model, r.seed) for r in got) == sorted(want)  # each run exactly once
    for r in got:
        ref = want[r.model, r.seed]
        assert r.metrics == ref.metrics and r.best_epoch == ref.best_epoch
    resumed = sum(bool(r.resumed) for r in got)
    assert kills >= 10 and resumed >= 1, f"{kills} kills, {resumed} runs resumed: too few to test anything"
    print(f"survived {kills} SIGKILLs; {resumed} of {len(got)} runs resumed mid-training")


def _autogroup_nice(pid: int) -> int | None:
    with contextlib.suppress(OSError):  # the worker may be gone between the listing and the read
        return int(Path(f"/proc/{pid}/autogroup").read_text().split()[-1])
    return None


@pytest.mark.skipif(not Path("/proc/self/autogroup").exists(), reason="no scheduler autogroups on this kernel")
def test_the_workers_of_a_niced_sweep_keep_its_niceness(tmp_path: Path) -> None:
    """Each worker runs in a session of its own; where the kernel shares the CPU between sessions'
    autogroups, a worker's group must carry the sweep's niceness, or `nice` would slow no run."""
    cmd = ["nice", "-n", "7", sys.executable, "-m", "bench", "run", *SWEEP, "--models", "sasrec,elcrec",
           "--epochs", "50", "--jobs", "2", "--out", str(tmp_path / "out")]
    want = min(os.nice(0) + 7, 19)  # `nice -n 7` adds to the niceness these tests run at
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for(lambda: len(workers_of(proc.pid)) == 2
                 and all(_autogroup_nice(w) == want for w in workers_of(proc.pid)), timeout=120)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
