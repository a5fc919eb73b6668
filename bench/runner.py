"""`python -m bench run`: models x datasets x seeds x `--set` grid, one subprocess per run.

Each run is a `bench.spec.RunSpec`; its config hash covers everything but the seed. A finished run
(an ok `RunRecord` with the same hash and seed in `--out`) is skipped when the command is repeated;
an interrupted one resumes from its state file (`<out>/state/<hash>-s<seed>.pt`). A crash, a NaN
loss, an out-of-memory error or a timeout becomes a `FailureRecord`, and the sweep goes on.
This module imports no torch: the parent only schedules and records.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.config import build_config, from_namespace, opt, require_device
from bench.errors import BenchError
from bench.fileio import now
from bench.lifeline import PARENT_ENV
from bench.results.records import append_record, failure_record, read_records
from bench.results.schema import FailureRecord, RunRecord, new_id
from bench.spec import PROFILES, RunSpec, TrainConfig

Outcome = RunRecord | FailureRecord  # what a run's try ends with

WORKER = [sys.executable, "-m", "bench.worker"]
# glibc returns big freed buffers to the OS by default, so every activation of every step would be
# page-faulted in afresh; they stay in the heap instead. One arena: the training pass's worker
# threads (models/fast/kernels.py, row_blocks) would each get their own, whose freed buffers the others
# never reuse. OpenMP (libgomp, torch's CPU threads): after each parallel region an idle thread spins
# for GOMP_SPINCOUNT pause loops (default 300,000) before it sleeps, and at the start of a row-block
# pass the main thread's idle thread would take a core from the block workers. Measurements of both:
# docs/perf.md.
WORKER_ENV = {"MALLOC_MMAP_THRESHOLD_": str(1 << 32), "MALLOC_TRIM_THRESHOLD_": str(1 << 36),
              "MALLOC_TOP_PAD_": str(1 << 30), "MALLOC_ARENA_MAX": "1", "GOMP_SPINCOUNT": "10000"}
TRAIN_KEYS = ("lr", "beta1", "beta2", "weight_decay", "batch_size", "epochs", "patience", "seen_items")


@dataclass(frozen=True)
class RunConfig:
    models: tuple[str, ...] = opt(("elcrec", "iclrec"), help="comma-separated models")
    datasets: tuple[str, ...] = opt((), help="comma-separated datasets (default: the profile's)")
    seeds: tuple[int, ...] = opt((1,), help="comma-separated seeds")
    profile: str = opt("quick", help="paper | quick | smoke", choices=tuple(PROFILES))
    epochs: int | None = opt(None, help="override the profile's maximum epochs")
    set: tuple[str, ...] = opt((), help="MODEL.KEY=V[,V...] hyper-parameter overrides; lists expand to a grid "
                               "(MODEL may be * for all models)", many=True)
    device: str = opt("cpu", help="cpu or cuda", choices=("cpu", "cuda"))
    jobs: int = opt(1, help="runs in parallel")
    threads: int = opt(0, help="torch threads per run (0: cores / jobs)")
    executor: str = opt("local", help="local subprocesses or ray tasks", choices=("local", "ray"))
    ray_address: str | None = opt(None, help="ray cluster address (default: a local ray instance)")
    timeout: float = opt(0.0, help="seconds before a run is killed and recorded as failed (0: none)")
    data_dir: Path | None = opt(None, help="folder with the dataset files")
    out: Path = opt(Path("runs/latest"), help="records folder (records.jsonl, per_user/, state/, logs/)")
    allow_code_change: bool = opt(False, help="resume runs whose state was saved by other code (the record "
                                  "says so); without it such a resume is refused")


def parse_value(text: str) -> Any:
    """A --set value: an int, a float, true/false, else the text itself."""
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def parse_sets(items: tuple[str, ...], models: tuple[str, ...]) -> list[dict[str, dict[str, Any]]]:
    """["elcrec.k=64,128", "*.lr=0"] -> grid of {model: {key: value}} (one dict per grid point)."""
    axes: list[list[tuple[str, str, Any]]] = []
    for item in items:
        target, eq, values = item.partition("=")
        model, dot, key = target.partition(".")
        if not eq or not dot or not key or not values:
            raise BenchError(f"--set {item!r}: expected MODEL.KEY=VALUE[,VALUE...]")
        if model != "*" and model not in models:
            raise BenchError(f"--set {item!r}: model {model!r} is not in --models ({','.join(models)})")
        axes.append([(model, key, parse_value(v)) for v in values.split(",")])
    grid = []
    for point in itertools.product(*axes):
        d: dict[str, dict[str, Any]] = {}
        for model, key, value in point:
            for m in (models if model == "*" else (model,)):
                d.setdefault(m, {})[key] = value
        grid.append(d)
    return grid


def dataset_list(items: tuple[str, ...]) -> tuple[str, ...]:
    """Re-joins option lists split at commas: ("synthetic:users=9", "items=5", "beauty") ->
    ("synthetic:users=9,items=5", "beauty"): a `key=value` item continues the previous dataset."""
    out: list[str] = []
    for item in items:
        if "=" in item and ":" not in item and out:
            out[-1] += "," + item
        else:
            out.append(item)
    return tuple(out)


def expand(cfg: RunConfig) -> list[RunSpec]:
    """Every run of the sweep (checked against the model registries by `_validate`), seed-major:
    every model's seed 1 before any seed 2, so that a sweep stopped half-way leaves whole
    comparisons (the same seeds of every model) rather than many seeds of the first model."""
    from bench.presets import preset  # light: a dict

    prof = PROFILES[cfg.profile]
    datasets = dataset_list(cfg.datasets) or prof.datasets
    grid = parse_sets(cfg.set, cfg.models)
    runs = []
    for point, dataset, seed, model in itertools.product(grid, datasets, cfg.seeds, cfg.models):
        over = point.get(model, {})
        train = {"epochs": cfg.epochs or prof.epochs, "patience": prof.patience, **prof.train}
        train.update({k: v for k, v in over.items() if k in TRAIN_KEYS})
        hp = {**preset(dataset, model), **{k: v for k, v in over.items() if k not in TRAIN_KEYS}}
        threads = cfg.threads or max(1, (os.cpu_count() or 1) // cfg.jobs)
        runs.append(RunSpec(model=model, dataset=dataset, seed=seed, hp=hp, train=train, device=cfg.device,
                            data_dir=str(cfg.data_dir) if cfg.data_dir else None, threads=threads,
                            allow_code_change=cfg.allow_code_change))
    return runs


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _worker_env() -> dict[str, str]:
    # the worker dies with this process (bench/worker.py, PR_SET_PDEATHSIG): no orphan trains on
    return {**WORKER_ENV, **os.environ, "PYTHONUNBUFFERED": "1", PARENT_ENV: str(os.getpid())}


class _Workers:
    """The sweep's live worker processes, so that a signal to the sweep can stop them all."""

    def __init__(self) -> None:
        self.procs: set[subprocess.Popen[str]] = set()
        self.lock = threading.Lock()
        self.stopping = threading.Event()  # set once the sweep is interrupted: exits are not failures

    def start(self, args: list[str], **kw: Any) -> subprocess.Popen[str]:
        with self.lock:
            if self.stopping.is_set():
                raise SweepInterrupted(signal.SIGTERM)
            # a new session: Ctrl-C in a terminal goes to the sweep alone, which stops its workers in order
            proc = subprocess.Popen(args, text=True, env=_worker_env(), start_new_session=True, **kw)
            self.procs.add(proc)
            return proc

    def forget(self, proc: subprocess.Popen[str]) -> None:
        with self.lock:
            self.procs.discard(proc)

    def stop_all(self, grace: float = 3.0) -> None:
        """SIGTERM every worker (its state is saved after each epoch), SIGKILL what outlives the grace."""
        with self.lock:
            self.stopping.set()
            procs = list(self.procs)
        for proc in procs:
            _signal(proc, signal.SIGTERM)
        deadline = time.time() + grace
        for proc in procs:
            try:
                proc.wait(timeout=max(0.0, deadline - time.time()))
            except subprocess.TimeoutExpired:
                _signal(proc, signal.SIGKILL)
                proc.wait()


def _signal(proc: subprocess.Popen[str], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)  # the worker's whole group: its own children go too


WORKERS = _Workers()


class SweepInterrupted(BaseException):
    """SIGTERM or SIGHUP to the sweep (SIGINT raises KeyboardInterrupt): finished runs are kept,
    running ones stay resumable. A BaseException, as KeyboardInterrupt, so no handler swallows it."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def start_standby() -> subprocess.Popen[str]:
    """A worker process that imports torch while the parent validates the sweep, then waits on
    stdin for its job (`execute_run(..., standby=)`); closing its stdin ends it without a trace."""
    return WORKERS.start([*WORKER, "--standby"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL)


def release(standby: list[subprocess.Popen[str]]) -> None:
    """Ends standby workers that got no job."""
    for proc in standby:
        if proc.stdin is not None:
            proc.stdin.close()
    for proc in standby:
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        WORKERS.forget(proc)


def _launch(args: list[str], log: Path, err: Any, standby: subprocess.Popen[str] | None) -> subprocess.Popen[str]:
    if standby is not None and standby.stdin is not None and standby.poll() is None:
        try:
            standby.stdin.write(json.dumps([*args, str(log)]) + "\n")
            standby.stdin.close()
            return standby
        except OSError:  # it died meanwhile: start a fresh worker instead
            standby.kill()
    return WORKERS.start([*WORKER, *args], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err)


def execute_run(spec: RunSpec, out: str, timeout: float = 0.0, on_line: Any = None,
                standby: subprocess.Popen[str] | None = None) -> Outcome:
    """Runs one spec in a subprocess (or hands it to a standby worker); returns its record (ok or
    failure). Also the Ray task body."""
    if WORKERS.stopping.is_set():  # a queued run of an interrupted sweep: leave no trace of it
        raise SweepInterrupted(signal.SIGTERM)
    out_dir = Path(out)
    attempt = new_id()
    key = f"{spec.config_hash}-s{spec.seed}"
    log = out_dir / "logs" / f"{key}-{attempt}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    with open(log, "w") as err:
        proc = _launch([json.dumps(spec.as_dict()), str(out_dir), attempt], log, err, standby)
        timer = threading.Timer(timeout, proc.kill) if timeout > 0 else None
        if timer:
            timer.start()
        assert proc.stdout is not None
        for line in proc.stdout:
            if on_line is not None:
                on_line(line)
        rc = proc.wait()
        WORKERS.forget(proc)
        if timer:
            timer.cancel()
    done = [r for r in read_records([out_dir]) if isinstance(r, Outcome) and r.attempt == attempt] \
        if (out_dir / "records.jsonl").exists() else []
    if done:
        return done[-1]
    if WORKERS.stopping.is_set():  # stopped by the sweep's interruption: resumable, not failed
        raise SweepInterrupted(signal.SIGTERM)
    tail = _tail(log)
    last = next((ln.strip() for ln in reversed(tail.splitlines()) if ln.strip()), "")
    reason = f"timeout after {timeout:.0f} s" if timer and rc in (-9, 137) and time.time() - t0 >= timeout \
        else f"worker exited with code {rc} without a record" + (f": {last}" if last else "")
    return append_record(out_dir, failure_record(spec, attempt, reason, tail, wall_s=time.time() - t0))


def finished(out: Path) -> set[tuple[str | None, int | None]]:
    if not (out / "records.jsonl").exists():
        return set()
    return {(r.config_hash, r.seed) for r in read_records([out]) if isinstance(r, RunRecord)}


def _show_progress(bar: Any, line: str) -> None:
    """Moves a run's bar on its worker's progress lines ("EPOCH done best", "PRETRAIN done total loss")."""
    if line.startswith("EPOCH "):
        _, done, best = line.split()
        bar.n = int(done)
        bar.set_postfix_str(f"best val NDCG@20 {float(best):.4f}")
        bar.refresh()
    elif line.startswith("PRETRAIN "):  # training's bar stays at 0 while the model pre-trains
        _, done, total, loss = line.split()
        bar.set_postfix_str(f"pre-training {done}/{total}, loss {float(loss):.4f}")
        bar.refresh()


def _run_local(runs: list[RunSpec], cfg: RunConfig, standby: list[subprocess.Popen[str]]) -> list[Outcome]:
    from tqdm import tqdm

    # no monitor thread: the bars refresh on every epoch line anyway, and a sweep whose stderr reader
    # had gone once hung for good with the monitor and the main thread both waiting on tqdm's write
    # lock (tqdm issue #469 has the same pair)
    tqdm.monitor_interval = 0
    sweep = tqdm(total=len(runs), desc="sweep", unit="run", position=0, dynamic_ncols=True)
    lock = threading.Lock()
    slots = list(range(1, cfg.jobs + 1))

    def one(spec: RunSpec) -> Outcome:
        with lock:
            slot = slots.pop(0)
        label = f"{spec.model}/{spec.dataset.split(':')[0]}/s{spec.seed}"
        bar = tqdm(total=spec.train_config.epochs, desc=label, unit="ep", position=slot, leave=False,
                   dynamic_ncols=True)
        with lock:
            ready = standby.pop() if standby else None
        try:
            rec = execute_run(spec, str(cfg.out), cfg.timeout, lambda line: _show_progress(bar, line), ready)
        finally:
            bar.close()
            with lock:
                slots.append(slot)
        sweep.update(1)
        sweep.write(_summary_line(rec))
        return rec

    pool = ThreadPoolExecutor(max_workers=cfg.jobs)
    try:
        futures = [pool.submit(one, spec) for spec in runs]
        records = [f.result() for f in futures]
    except BaseException:
        # workers first: the pool's threads wait on their output, so shutting the pool down first would hang
        WORKERS.stop_all()
        pool.shutdown(wait=True, cancel_futures=True)
        sweep.close()
        raise
    pool.shutdown()
    sweep.close()
    return records


def _run_ray(runs: list[RunSpec], cfg: RunConfig) -> list[Outcome]:
    try:
        import ray
    except ImportError:
        raise BenchError("--executor ray needs the ray extra: pip install -e '.[ray]'") from None
    started = not ray.is_initialized()
    if started:
        ray.init(address=cfg.ray_address, include_dashboard=False, log_to_driver=False,
                 num_cpus=None if cfg.ray_address else max(cfg.jobs, 1))
    try:
        task = ray.remote(num_cpus=1)(execute_run)
        out = str(cfg.out.resolve())
        refs = [task.remote(spec, out, cfg.timeout) for spec in runs]
        records = []
        for rec in ray.get(refs):
            print(_summary_line(rec), file=sys.stderr)
            records.append(rec)
        return records
    finally:
        if started:  # explicitly: the CLI exits without running atexit hooks (`exit_now`)
            ray.shutdown()


COLLAPSED = 0.95  # mean cosine between users' scoring vectors above which a run is flagged (about one ranking)


def _summary_line(rec: Outcome) -> str:
    head = f"{rec.model}/{rec.dataset}/seed {rec.seed}"
    if isinstance(rec, FailureRecord):
        return f"{head}: FAILED ({rec.reason})"
    m = rec.metrics
    line = (f"{head}: test NDCG@10 {m['NDCG@10']:.4f} HR@10 {m['HR@10']:.4f}, {rec.epochs_run} epochs "
            f"({rec.stop_reason}), {rec.timing.epoch_mean_s:.1f} s/epoch")
    cos = (rec.representation or {}).get("mean_cosine", 0.0)
    if cos > COLLAPSED:
        line += f"; collapsed? users' scoring vectors have mean cosine {cos:.3f}"
    return line


def cmd_run(ns: argparse.Namespace) -> int:
    cfg = from_namespace(RunConfig, ns)
    _check_options(cfg)
    return run_specs(cfg, expand(cfg))


def run_specs(cfg: RunConfig, runs: list[RunSpec]) -> int:
    """Runs (or resumes, or skips where finished) `runs` as one sweep in `cfg.out` with cfg's jobs,
    executor and timeout; the exit status of `bench run` (128 + signal when interrupted)."""
    with interruptible():
        # validating imports torch (the model registry); the first workers import it meanwhile
        standby = [start_standby() for _ in range(min(cfg.jobs, len(runs)))] if cfg.executor == "local" else []
        try:
            _validate(cfg, runs)
            with sweep_lock(cfg.out):
                records = run_sweep(cfg, runs, standby)
        except (KeyboardInterrupt, SweepInterrupted) as e:
            WORKERS.stop_all()
            signum = e.signum if isinstance(e, SweepInterrupted) else signal.SIGINT
            print(f"interrupted ({signal.Signals(signum).name}): finished runs are kept in {cfg.out}; the same "
                  "command resumes the others", file=sys.stderr)
            return 128 + signum
        finally:
            release(standby)
    failed = [r for r in records if r.status != "ok"]
    print(f"{len(records) - len(failed)} runs finished, {len(failed)} failed; records in {cfg.out / 'records.jsonl'}")
    return 1 if failed else 0


def run_sweep(cfg: RunConfig, runs: list[RunSpec], standby: list[subprocess.Popen[str]] | None = None
              ) -> list[Outcome]:
    """Runs what is not finished yet in cfg.out (the caller holds its `sweep_lock`)."""
    done = finished(cfg.out)
    todo = [r for r in runs if (r.config_hash, r.seed) not in done]
    # runs with a resume state first: finish what was started before starting more
    todo.sort(key=lambda r: not state_file(cfg.out, r).exists())
    check_resumes(todo, cfg.out, cfg.allow_code_change)
    if len(todo) < len(runs):
        print(f"{len(runs) - len(todo)} of {len(runs)} runs already finished in {cfg.out}; skipping them",
              file=sys.stderr)
    if cfg.executor == "ray":
        return _run_ray(todo, cfg)
    return _run_local(todo, cfg, standby if standby is not None else [])


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """SIGTERM and SIGHUP raise SweepInterrupted in the main thread, as SIGINT raises KeyboardInterrupt."""
    def handler(signum: int, frame: Any) -> None:
        raise SweepInterrupted(signum)

    old = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, h in old.items():
            signal.signal(sig, h)


@contextlib.contextmanager
def sweep_lock(out: Path) -> Iterator[None]:
    """One sweep per records folder. An flock on `<out>/.lock`: the kernel drops it when its holder
    dies, however it dies, so a stale lock is taken over by the next sweep without a word."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd = os.open(out / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise BenchError(f"--out {out}: cannot create the folder or its lock ({e.strerror})") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode(errors="replace").strip() or "another process"
            raise BenchError(f"--out {out} is in use by another sweep ({holder}); wait for it or stop it") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}, since {now()}".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing releases the flock


def state_file(out: Path, spec: RunSpec) -> Path:
    """Where the worker keeps a run's resume state (bench.worker)."""
    return out / "state" / f"{spec.config_hash}-s{spec.seed}.pt"


def check_resumes(todo: list[RunSpec], out: Path, allow: bool) -> None:
    """Refuses the sweep, before anything runs, if a run would resume a state saved by other code
    (the worker checks again as it starts: the code may change in between)."""
    from bench.results.codeversion import resume_check

    for spec in todo:
        resume_check(state_file(out, spec), allow)


def _validate(cfg: RunConfig, runs: list[RunSpec]) -> None:
    from bench.data import check_dataset
    from bench.modelio import check_model, model_config

    for m in cfg.models:
        check_model(m)
    if cfg.ray_address is None:  # a remote Ray cluster may have GPUs this host lacks
        require_device(cfg.device)
    for d in sorted({spec.dataset for spec in runs}):
        check_dataset(d, cfg.data_dir)
    for spec in runs:  # unknown or out-of-range settings fail here, before anything runs
        model_config(spec.model, spec.hp)
        build_config(TrainConfig, spec.train, spec.model)


def _check_options(cfg: RunConfig) -> None:
    if cfg.jobs < 1:
        raise BenchError("--jobs must be at least 1")
    if cfg.threads < 0:
        raise BenchError("--threads must be >= 0")
    if cfg.epochs is not None and cfg.epochs < 1:
        raise BenchError("--epochs must be at least 1")
    if cfg.timeout < 0:
        raise BenchError("--timeout must be >= 0 (0: none)")
    if cfg.out.exists() and not cfg.out.is_dir():
        raise BenchError(f"--out {cfg.out} is a file; records go into a folder")

