"""Running the scaling study's points: one watched subprocess each, and what to do with the ones that cannot fit.

Before a point runs, its peak RSS is predicted from the same model's measured points at smaller scales
(linear in users through the two largest, or proportional to users from one), against the memory
limit: the study's `memory_limit_gb`, at most what the kernel says is available (MemAvailable) less
`memory_reserve_gb`. A point predicted above the limit, or above a scale of the same model that did
not fit, is recorded as "too_big" without running. A running point is watched: above the limit it is
stopped ("out_of_memory", with the phase it was in and the RSS it reached), so neither the study nor
the machine runs out of memory; a point the kernel kills (SIGKILL) is recorded the same way. Such
points are tried again by a later call only when its limit is higher. No torch here.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from bench.lifeline import PARENT_ENV
from bench.perf.scaling import ScalingStudy, describe, eprint, key, latest, points, settings, users_of, validate
from bench.results.codeversion import REPO_ROOT
from bench.results.records import provenance
from bench.results.scaling import append_point, line_through_largest
from bench.results.schema import new_id

WORKER = [sys.executable, "-m", "bench.perf.scale_worker"]
NOT_FIT = ("too_big", "out_of_memory")
MARGIN = 1.10  # a prediction is a straight line through noisy peaks: 10% of headroom


def meminfo_mb(field_name: str) -> float:
    """A /proc/meminfo field (MemTotal, MemAvailable) in MiB; nan where there is none."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return float(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def memory_limit_mb(study: ScalingStudy) -> float:
    """The RSS a point may reach: what is available now less the reserve, and at most the study's limit."""
    available = meminfo_mb("MemAvailable") - study.memory_reserve_gb * 1024
    return min(available, study.memory_limit_gb * 1024) if study.memory_limit_gb else available


def _measured(recs: dict[tuple[str, float, int], dict[str, Any]], config_hash: str, scale: float,
              what: str) -> tuple[list[tuple[int, float]], float]:
    """(users, peak RSS or wall seconds) of the ok points below `scale`, and the smallest fixed part seen
    (the process's RSS before its data, or 0 for time), for a prediction from a single point."""
    ok = [r for r in recs.values() if r["config_hash"] == config_hash and r["status"] == "ok" and r["scale"] < scale]
    if what == "rss":
        base = min((r["memory"].get("rss_start_mb", 0.0) for r in ok), default=0.0)
        return [(int(r["users"]), float(r["memory"]["peak_rss_mb"])) for r in ok], base
    return [(int(r["users"]), float(r["wall_s"])) for r in ok], 0.0


def verdict(point: dict[str, Any], recs: dict[tuple[str, float, int], dict[str, Any]],
            limit_mb: float) -> tuple[str, str]:
    """("keep" | "run" | "too_big", why) for one point, given the latest records and the limit now."""
    rec = recs.get(key(point))
    if rec and (rec["status"] == "ok" or (rec["status"] in NOT_FIT and rec["limit_mb"] * 1.05 >= limit_mb)):
        return "keep", ""
    smaller = [r for r in recs.values() if r["config_hash"] == point["config_hash"] and r["scale"] < point["scale"]
               and r["status"] in NOT_FIT and r["limit_mb"] * 1.05 >= limit_mb]
    if smaller:
        return "too_big", f"a smaller scale of {point['model']} ({min(r['scale'] for r in smaller):g}x) did not fit"
    users = users_of(point["scale"])
    measured, base = _measured(recs, point["config_hash"], point["scale"], "rss")
    peak = line_through_largest(measured, users, base)
    if peak is not None and peak * MARGIN > limit_mb:
        return "too_big", (f"predicted peak RSS {peak / 1024:.1f} GiB (+10%) from the smaller scales > the "
                           f"limit {limit_mb / 1024:.1f} GiB")
    wall = line_through_largest(_measured(recs, point["config_hash"], point["scale"], "wall")[0], users)
    guess = f"predicted peak RSS {peak / 1024:.1f} GiB, about {wall:.0f} s" if peak and wall else "no estimate"
    return "run", f"{guess}; limit {limit_mb / 1024:.1f} GiB"


def plan(study: ScalingStudy) -> dict[tuple[str, float, int], str]:
    """The dry run's note for every point still to do."""
    recs, limit = latest(study.out, study.report / "records"), memory_limit_mb(study)
    out = {}
    for p in points(study):
        action, why = verdict(p, recs, limit)
        if action != "keep":
            out[key(p)] = why if action == "run" else f"will be recorded as too big: {why}"
    return out


def _rss_mb(pid: int) -> float:
    try:
        line = next(ln for ln in Path(f"/proc/{pid}/status").read_text().splitlines() if ln.startswith("VmRSS:"))
    except (OSError, StopIteration):  # gone, or a zombie without memory
        return 0.0
    return float(line.split()[1]) / 1024


class Watch:
    """Polls a point's process: stops it (its whole group) above the memory limit or past the timeout."""

    def __init__(self, proc: subprocess.Popen[str], limit_mb: float, timeout: float) -> None:
        self.proc, self.limit_mb, self.timeout = proc, limit_mb, timeout
        self.stopped: str | None = None  # "out_of_memory" or "timeout" once it stopped the process
        self.max_rss_mb = 0.0
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._t0 = time.monotonic()
        self._thread.start()

    def _loop(self) -> None:
        while self.proc.poll() is None:
            rss = _rss_mb(self.proc.pid)
            self.max_rss_mb = max(self.max_rss_mb, rss)
            if rss > self.limit_mb:
                self._stop("out_of_memory")
            elif self.timeout and time.monotonic() - self._t0 > self.timeout:
                self._stop("timeout")
            time.sleep(0.1)  # the limit is overshot by what the point allocates between two polls

    def _stop(self, why: str) -> None:
        self.stopped = why
        kill_group(self.proc)

    def join(self) -> None:
        self._thread.join()


def kill_group(proc: subprocess.Popen[str]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


def _start(spec: dict[str, Any], log: Path) -> subprocess.Popen[str]:
    from bench.runner import WORKER_ENV

    env = {**WORKER_ENV, **os.environ, "PYTHONUNBUFFERED": "1", PARENT_ENV: str(os.getpid()),
           # the worker runs this checkout's code, whatever the current folder or installed copy
           "PYTHONPATH": os.pathsep.join(filter(None, (str(REPO_ROOT), os.environ.get("PYTHONPATH"))))}
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as err:  # the child keeps its own descriptor
        # its own session: a kill at the limit takes its group, and Ctrl-C reaches the study alone
        return subprocess.Popen([*WORKER, json.dumps(spec)], stdout=subprocess.PIPE, stderr=err, text=True, env=env,
                                start_new_session=True)


def _read_lines(proc: subprocess.Popen[str]) -> tuple[str, dict[str, Any] | None]:
    """The last phase the worker announced and its result (None if it gave none)."""
    phase, result = "start", None
    assert proc.stdout is not None
    for line in proc.stdout:
        try:
            msg = json.loads(line)
        except json.JSONDecodeError:
            continue  # a library's stray print
        phase = msg.get("phase", phase)
        result = msg.get("result", result)
    proc.wait()
    return phase, result


def _failure(rc: int, watch: Watch, phase: str, log: Path) -> tuple[str, str]:
    rss = f"{watch.max_rss_mb / 1024:.2f} GiB"
    if watch.stopped == "out_of_memory":
        return "out_of_memory", f"stopped in phase {phase} at RSS {rss} > the limit {watch.limit_mb / 1024:.1f} GiB"
    if watch.stopped == "timeout":
        return "timeout", f"stopped in phase {phase} after the timeout of {watch.timeout:.0f} s"
    if rc == -signal.SIGKILL:
        return "out_of_memory", (f"killed by SIGKILL in phase {phase} at RSS {rss} (the kernel's out-of-memory "
                                 "killer, or another process)")
    tail = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()] if log.exists() else []
    return "failed", f"exit code {rc} in phase {phase}" + (f": {tail[-1].strip()}" if tail else "")


def machine() -> dict[str, Any]:
    """What the report says of the machine, beside the records' provenance."""
    return {"ram_mb": meminfo_mb("MemTotal"), "available_mb": meminfo_mb("MemAvailable"),
            "loadavg": list(os.getloadavg())}


def _record(study: ScalingStudy, spec: dict[str, Any], status: str, fields: dict[str, Any]) -> dict[str, Any]:
    return append_point(study.out, {"kind": "scaling", "status": status, "model": spec["model"],
                                    "scale": spec["scale"], "users": users_of(spec["scale"]),
                                    "repeat": spec["repeat"], "config_hash": spec["config_hash"],
                                    "config": spec, **fields, "provenance": provenance().to_json()})


def run_point(study: ScalingStudy, spec: dict[str, Any], limit_mb: float) -> dict[str, Any]:
    log = study.out / "logs" / f"{spec['model']}-{spec['scale']:g}x-r{spec['repeat']}-{new_id()[:8]}.log"
    before, t0 = machine(), time.monotonic()
    proc = _start(spec, log)
    watch = Watch(proc, limit_mb, study.timeout)
    try:
        phase, result = _read_lines(proc)
    except BaseException:  # interrupted: the point stays to do
        kill_group(proc)
        proc.wait()
        raise
    watch.join()
    fields = {"wall_s": time.monotonic() - t0, "limit_mb": limit_mb, "machine": before,
              "loadavg_after": list(os.getloadavg()), "log": str(log.relative_to(study.out))}
    if result is not None and proc.returncode == 0:
        return _record(study, spec, "ok", {**fields, **result})
    status, reason = _failure(proc.returncode, watch, phase, log)
    return _record(study, spec, status, {**fields, "reason": reason, "phase": phase, "max_rss_mb": watch.max_rss_mb})


def run_study(study: ScalingStudy) -> int:
    """Every point not yet settled, one at a time; 0, 1 if a point failed, 128 + signal when interrupted."""
    from bench.runner import SweepInterrupted, interruptible, sweep_lock

    rc = 0
    with interruptible(), sweep_lock(study.out):
        try:
            for spec in points(study):
                rc = max(rc, _one(study, spec))
        except (KeyboardInterrupt, SweepInterrupted) as e:
            signum = e.signum if isinstance(e, SweepInterrupted) else signal.SIGINT
            eprint(f"interrupted ({signal.Signals(signum).name}): measured points are kept in {study.out}; the "
                   "same command resumes the others")
            return 128 + signum
    return rc


def _one(study: ScalingStudy, spec: dict[str, Any]) -> int:
    limit = memory_limit_mb(study)
    action, why = verdict(spec, latest(study.out), limit)
    head = f"{spec['model']} {spec['scale']:g}x repeat {spec['repeat']}"
    if action == "keep":
        return 0
    if action == "too_big":
        eprint(f"{head}: too big: {why}")
        _record(study, spec, "too_big", {"reason": why, "limit_mb": limit, "machine": machine()})
        return 0
    eprint(f"{head}: running ({why})")
    rec = run_point(study, spec, limit)
    eprint(f"{head}: {rec['status']}" + (f" ({rec['reason']})" if rec.get("reason") else
                                        f", epoch {rec['seconds']['epoch']:.1f} s, wall {rec['wall_s']:.0f} s"))
    return 1 if rec["status"] in ("failed", "timeout") else 0


def print_points(study: ScalingStudy, todo_note: dict[tuple[str, float, int], str]) -> None:
    """One line per point (model, scale, users, repeat, state), then the totals."""
    from collections import Counter

    recs = latest(study.out, study.report / "records")  # a run restores the committed points first
    states: Counter[str] = Counter()
    print(f"{study.name}: {len(points(study))} points, records in {study.out}, report in {study.report}")
    for p in points(study):
        rec = recs.get(key(p))
        text = describe(rec) if rec else "to do"
        if key(p) in todo_note:
            text = f"to do ({todo_note[key(p)]})" if not rec or rec["status"] != "ok" else text
        states[text.split(":")[0].split(" (")[0]] += 1
        print(f"  {p['model']:8s} {p['scale']:>7g}x {users_of(p['scale']):>9,d} users  repeat {p['repeat']}  {text}")
    print("total: " + ", ".join(f"{n} {s}" for s, n in sorted(states.items())))


def cmd_scaling(study: ScalingStudy, dry_run: bool, report_only: bool) -> int:
    """Runs (or resumes) the study's points, then writes its report; `dry_run` lists the points' states."""
    if not report_only:
        validate(study)
    if dry_run:
        print_points(study, plan(study))
        return 0
    rc = 0
    if not report_only:
        from bench.results.scaling import restore_points

        if n := restore_points(study.report / "records", study.out):
            eprint(f"restored {n} measured points from {study.report / 'records'} into {study.out}")
        rc = run_study(study)
        if rc >= 128:
            return rc
    from bench.results.scaling_report import write_scaling_report

    for path in write_scaling_report(study.out, study.report, study.claims, settings(study)):
        print(path)
    return rc
