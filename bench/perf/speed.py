"""`python -m bench perf`: the speed benchmarks of the paper-settings training on a real dataset.

Measures, on this machine: one training epoch + validation per model (training samples/s), ICLRec's
per-epoch clustering step, a whole `bench run` process of one ELCRec epoch, and ELCRec's epoch computed
the authors' way (`bench/recipe.py`: their step, per-sample batches and validation), so that the
speed-up is measured on one machine. Ours is timed with the runner workers' allocator and OpenMP
settings (`bench.runner.WORKER_ENV`); the recipe in two child processes, with and without them, and
the faster of the two is the baseline (the authors' code runs with the defaults). It also checks
that the authors' loss fixture still holds (speed must not change the objective).
Results are printed and, with `--out`, written as JSON. Beauty's targets get a verdict, never an assert.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.config import from_namespace, opt, require_device
from bench.errors import BenchError
from bench.results.records import cpu_model, peak_rss_mb

# the targets for Beauty on a 2-core CPU: name -> (limit, "max" or "min", where its median is)
TARGETS = {"elcrec epoch s": (30.0, "max", ("epochs", "elcrec", "epoch_s")),
           "iclrec clustering s": (3.0, "max", ("epochs", "iclrec", "clustering_s")),
           "elcrec run process s": (45.0, "max", ("process", "wall_s")),
           "elcrec epoch speed-up vs the authors' recipe": (4.0, "min", ("recipe", "epoch_speedup"))}


def verdicts(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each target whose measurement ran: its limit, the median, and whether the median is within it.
    The targets are Beauty's: other datasets get none."""
    out: dict[str, dict[str, Any]] = {}
    if results.get("dataset") != "beauty":
        return out
    for name, (limit, kind, path) in TARGETS.items():
        node: Any = results
        for key in path:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, float):
            out[name] = {"limit": limit, "kind": kind, "median": node,
                         "met": node <= limit if kind == "max" else node >= limit}
    return out


@dataclass(frozen=True)
class PerfConfig:
    dataset: str = opt("beauty", help="dataset (paper settings from its preset)")
    models: tuple[str, ...] = opt(("elcrec", "iclrec"), help="models whose epoch is timed")
    batches: int = opt(0, help="time only this many training batches and extrapolate (0: the whole epoch)")
    device: str = opt("cpu", choices=("cpu", "cuda"), help="where the models train (the authors' recipe and the "
                      "GEMM probe are CPU measurements: they run on cpu only)")
    process: bool = opt(True, help="also time a whole `bench run` process of one elcrec epoch")
    recipe_batches: int = opt(12, help="time ELCRec's epoch computed the authors' way (bench/recipe.py: "
                              "per-sample batches, five plain encoder passes per step, F.dropout, hand-written "
                              "LayerNorm and GELU, their validation), this many training steps extrapolated, "
                              "in a child process with the default environment and in one with the workers' "
                              "allocator and OpenMP settings: the faster is the same-machine baseline of the "
                              "speed-up (0 skips it)")
    ops: int = opt(0, help="also list the N ATen ops that take the most time in a training step of each model, "
                   "each timed where it runs inside the step (bench/opprof.py; 0: off)")
    repeat: int = opt(1, help="rounds of every measurement, interleaved so that machine drift hits all alike; "
                      "each round is kept and the median reported")
    data_dir: Path | None = opt(None, help="folder with the dataset file")
    shared: Path | None = opt(None, help="the authors' files (reference/fixtures, checkpoints) for the fixture check")
    out: Path | None = opt(None, help="write the measurements as JSON here")


def _setup(model_name: str, cfg: PerfConfig) -> tuple[Any, Any, Any, list[Any], float, float]:
    """Data, paper-settings model (seed 1) after its epoch-0 hook, optimiser, epoch-0 batches; the
    seconds of the hook and of the batch preparation."""
    import numpy as np
    import torch

    from bench.batches import training_samples
    from bench.data import item_attributes, load_dataset
    from bench.evaluate import mean_pooled_train_outputs
    from bench.modelio import build_model
    from bench.presets import preset
    from bench.train import TrainConfig, epoch_generators, make_optimizer, to_batches

    data = load_dataset(cfg.dataset, cfg.data_dir)
    model = build_model(model_name, data.item_size, preset(cfg.dataset, model_name), data.n_users,
                        lambda: item_attributes(cfg.dataset, data, cfg.data_dir))
    model.reset_parameters(torch.Generator().manual_seed(1))
    device = torch.device(cfg.device)
    model.to(device)  # type: ignore[attr-defined]
    _, model.generator = epoch_generators(1, 0, device)  # dropout draws where the model is, as a run's
    opt = make_optimizer(model, TrainConfig())
    t0 = time.perf_counter()
    model.epoch_start(0, lambda: mean_pooled_train_outputs(model, data, device), 1)
    t1 = time.perf_counter()
    # the model's own training samples (one sequence per user, prefixes, Cloze copies, pairs, ...)
    samples = training_samples(model.samples, data, np.random.default_rng(1), model.sample_options())
    batches = to_batches(samples, TrainConfig().batch_size, device)
    _sync(cfg.device)
    return data, model, opt, batches, t1 - t0, time.perf_counter() - t1


def _sync(device: str) -> None:
    """Waits for queued GPU work, so that a host clock read after it covers that work."""
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


def time_epoch(model_name: str, cfg: PerfConfig) -> dict[str, float]:
    import torch

    from bench.evaluate import evaluate
    from bench.train import train_steps

    if cfg.device == "cuda":
        torch.cuda.reset_peak_memory_stats()  # this model's own peak
    data, model, opt, batches, hook_s, batches_s = _setup(model_name, cfg)
    todo = batches[: cfg.batches] if cfg.batches else batches
    t2 = time.perf_counter()
    train_steps(model, opt, todo, 0)
    _sync(cfg.device)
    t3 = time.perf_counter()
    train_s = (t3 - t2) * len(batches) / len(todo)
    evaluate(model, data, "valid")
    _sync(cfg.device)
    t4 = time.perf_counter()
    rows = sum(len(b.target_pos) for b in batches)  # the epoch's training samples (a user may give several)
    out = {"clustering_s": hook_s, "batches_s": batches_s, "train_s": train_s, "validation_s": t4 - t3,
           "epoch_s": batches_s + train_s + (t4 - t3), "samples_per_s": rows / train_s,
           "extrapolated_from_batches": len(todo), "peak_rss_mb": peak_rss_mb()}
    if cfg.device == "cuda":
        out["gpu_peak_allocated_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def profile_ops(model_name: str, cfg: PerfConfig) -> dict[str, Any]:
    """The `cfg.ops` costliest ops of 7 training steps of the model, after 3 warm-up steps (`bench.perf.opprof`)."""
    from bench.perf.opprof import profile_steps

    _, model, opt, batches, _, _ = _setup(model_name, cfg)
    return profile_steps(model, opt, batches[:10], cfg.ops, cuda=cfg.device == "cuda")


def _recipe_train_s(model: Any, batches: list[Any], n: int) -> float:
    """Seconds of an epoch of the authors' training steps: `n` timed after one untimed warm-up (cycling
    through the batches on tiny datasets), extrapolated to all batches."""
    import torch

    from bench.perf.recipe import elcrec_losses

    opt = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.999))  # torch's default Adam on CPU
    todo = [batches[i % len(batches)] for i in range(n + 1)]
    model.train()
    with torch.random.fork_rng(devices=[]):  # F.dropout draws from the global RNG, as the authors' code
        torch.manual_seed(1)
        for i, batch in enumerate(todo):
            if i == 1:
                t0 = time.perf_counter()
            loss = elcrec_losses(model, batch)["loss"]
            opt.zero_grad()
            loss.backward(retain_graph=True)
            opt.step()
    return (time.perf_counter() - t0) * len(batches) / n


def time_recipe(cfg: PerfConfig) -> dict[str, float]:
    """ELCRec's epoch the authors' way (`bench.perf.recipe`) on the same data and initial weights: their
    per-sample batches and their validation, each timed whole, and `recipe_batches` training steps."""
    import random

    from bench.perf import recipe

    data, model, _, _, _, _ = _setup("elcrec", cfg)
    users = recipe.user_lists(data)  # their start-up, untimed
    seen = recipe.seen_matrix(users, data.item_size)
    rnd = random.Random(1)
    t0 = time.perf_counter()
    batches = recipe.train_batches(users, data.item_size, rnd)
    batches_s = time.perf_counter() - t0
    train_s = _recipe_train_s(model, batches, cfg.recipe_batches)
    t0 = time.perf_counter()
    recipe.validate(model, users, seen, rnd)
    validation_s = time.perf_counter() - t0
    return {"batches_s": batches_s, "train_s": train_s, "validation_s": validation_s,
            "epoch_s": batches_s + train_s + validation_s, "samples_per_s": data.n_users / train_s,  # one a user
            "extrapolated_from_batches": cfg.recipe_batches}


def time_recipe_process(cfg: PerfConfig, default_env: bool) -> dict[str, float]:
    """`time_recipe` in a child process (`bench.perf.recipe_child`), with the runner workers' allocator and
    OpenMP settings (`WORKER_ENV`, as ours are timed) or without them (default_env: how the authors'
    code runs). Both are read at process start, hence the child."""
    from bench.runner import WORKER_ENV

    env = {k: v for k, v in os.environ.items() if k not in WORKER_ENV}
    if not default_env:
        env.update(WORKER_ENV)
    args = {"dataset": cfg.dataset, "data_dir": str(cfg.data_dir) if cfg.data_dir else None,
            "recipe_batches": cfg.recipe_batches}
    out = _run_child([sys.executable, "-m", "bench.perf.recipe_child", json.dumps(args)], "recipe", env)
    return json.loads(out.strip().splitlines()[-1])  # type: ignore[no-any-return]


def _run_child(cmd: list[str], what: str, env: dict[str, str] | None = None) -> str:
    """A timed child process's stdout; a BenchError with its last stderr line when it fails."""
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise BenchError(f"the timed {what} process failed (exit {done.returncode}): {last}")
    return done.stdout


def time_process(cfg: PerfConfig) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "bench", "run", "--models", "elcrec", "--datasets", cfg.dataset,
               "--profile", "paper", "--epochs", "1", "--device", cfg.device, "--out", tmp]
        if cfg.data_dir:
            cmd += ["--data-dir", str(cfg.data_dir)]
        t0 = time.perf_counter()
        _run_child(cmd, "`bench run`")
        wall = time.perf_counter() - t0
        from bench.results.records import read_records
        from bench.results.schema import RunRecord

        (rec,) = read_records([Path(tmp)])
    if not isinstance(rec, RunRecord):
        raise BenchError(f"the timed `bench run` failed: its record is a {rec.kind} record, {rec.status}")
    t, peak = rec.timing, rec.memory.peak_rss_mb
    if t.setup_s is None or t.train_total_s is None or t.test_s is None or peak is None:
        raise BenchError("the timed `bench run`'s record lacks its setup, training or test time or its peak memory")
    phases = {f"{k}_s": v for k, v in t.phase_total_s.items()}  # clustering is the k-means initialisation
    inside = t.setup_s + t.train_total_s + t.test_s
    return {"wall_s": wall, "setup_s": t.setup_s, **phases, "test_s": t.test_s,
            "outside_phases_s": wall - inside,  # start-up, diagnostics, record, exit
            # the run process's own peak, from its record: RUSAGE_CHILDREN would also count this
            # process's memory, which a child shares between fork and exec
            "peak_rss_mb_run": peak}


def machine_gflops() -> dict[str, float]:
    """This machine's fp32 GEMM speed right now (GFLOP/s): a square product and the encoder's
    tall-skinny (tokens x 64) x (64 x 256) one. Shared VMs drift; this puts the epoch times in context."""
    import torch

    def rate(a: Any, b: Any) -> float:
        for _ in range(2):
            a @ b
        t0 = time.perf_counter()
        for _ in range(5):
            a @ b
        return 5 * 2 * a.shape[0] * a.shape[1] * b.shape[1] / (time.perf_counter() - t0) / 1e9

    gen = torch.Generator().manual_seed(0)
    sq = torch.randn(1024, 1024, generator=gen)
    return {"square_1024": rate(sq, sq),
            "tokens_64x256": rate(torch.randn(64000, 64, generator=gen), torch.randn(64, 256, generator=gen))}


def _device_name(device: str) -> str:
    if device == "cuda":
        import torch

        return str(torch.cuda.get_device_name())
    return "cpu"


def _median(runs: list[dict[str, float]]) -> dict[str, float]:
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


def _recipe_round(cfg: PerfConfig, ours: dict[str, float]) -> dict[str, Any]:
    """The authors' recipe's epoch (`time_recipe`), timed in the default environment and in the
    runner workers' one; the faster of the two is the baseline, and the speed-up is how many times
    slower it is than ours in the same round."""
    envs = {"default_env": time_recipe_process(cfg, True), "worker_env": time_recipe_process(cfg, False)}
    env, r = min(envs.items(), key=lambda kv: kv[1]["epoch_s"])
    out = {**r, "env": env, "epoch_s_by_env": {k: v["epoch_s"] for k, v in envs.items()},
           "epoch_speedup": r["epoch_s"] / ours["epoch_s"], "train_speedup": r["train_s"] / ours["train_s"]}
    print(f"  elcrec the authors' way (bench/recipe.py): epoch {envs['default_env']['epoch_s']:.1f} s in the default "
          f"environment, {envs['worker_env']['epoch_s']:.1f} s in the workers'; the faster: batches "
          f"{r['batches_s']:.1f}, train {r['train_s']:.1f}, validation {r['validation_s']:.1f}, "
          f"{r['samples_per_s']:.0f} training samples/s; ours is {out['epoch_speedup']:.2f}x faster per epoch, "
          f"{out['train_speedup']:.2f}x per training step")
    return out


def _measure(cfg: PerfConfig) -> dict[str, Any]:
    rounds: dict[str, list[dict[str, float]]] = {m: [] for m in cfg.models}
    machine, process, recipe = [], [], []
    on_cpu = cfg.device == "cpu"
    for i in range(cfg.repeat):
        if on_cpu:
            machine.append(machine_gflops())
            print(f"round {i + 1}/{cfg.repeat}: GEMM {machine[-1]['square_1024']:.0f} GFLOP/s square, "
                  f"{machine[-1]['tokens_64x256']:.0f} tall-skinny")
        for m in cfg.models:
            r = time_epoch(m, cfg)
            rounds[m].append(r)
            print(f"  {m}: epoch {r['epoch_s']:.1f} s (train {r['train_s']:.1f}, batches {r['batches_s']:.1f}, "
                  f"validation {r['validation_s']:.1f}), {r['samples_per_s']:.0f} training samples/s, "
                  f"epoch-start hook {r['clustering_s']:.2f} s, process peak RSS so far {r['peak_rss_mb']:.0f} MB")
        if on_cpu and cfg.recipe_batches and "elcrec" in rounds:
            recipe.append(_recipe_round(cfg, rounds["elcrec"][-1]))
        if cfg.process:
            process.append(time_process(cfg))
            p = process[-1]
            print(f"  whole `bench run` process, one elcrec epoch: {p['wall_s']:.1f} s (train {p['train_s']:.1f}, "
                  f"k-means init {p['clustering_s']:.1f}, test {p['test_s']:.1f}, outside the timed phases "
                  f"{p['outside_phases_s']:.1f})")
    out: dict[str, Any] = {"epochs": {m: {**_median(rs), "rounds": rs} for m, rs in rounds.items()}}
    if machine:
        out["machine_gflops"] = {"rounds": machine, "median": _median(machine)}
    if recipe:
        numbers = [{k: v for k, v in r.items() if isinstance(v, float | int)} for r in recipe]
        by_env = {env: statistics.median(r["epoch_s_by_env"][env] for r in recipe)
                  for env in recipe[0]["epoch_s_by_env"]}
        out["recipe"] = {**_median(numbers), "epoch_s_by_env": by_env, "rounds": recipe}
    if process:
        out["process"] = {**_median(process), "rounds": process}
    return out


def _preflight(cfg: PerfConfig) -> None:
    """Everything that can fail on bad input, checked before any timing."""
    from bench.data import load_dataset
    from bench.modelio import check_model

    if cfg.repeat < 1:
        raise BenchError("--repeat must be at least 1")
    require_device(cfg.device)
    if cfg.recipe_batches < 0 or cfg.batches < 0:
        raise BenchError("--batches and --recipe-batches must be at least 0")
    if cfg.ops < 0:
        raise BenchError("--ops must be at least 0")
    for m in cfg.models:
        check_model(m)
    load_dataset(cfg.dataset, cfg.data_dir)  # also downloads it once, outside the timings
    if cfg.out is not None:  # an unwritable --out must not cost a whole benchmark
        if cfg.out.is_dir():
            raise BenchError(f"--out {cfg.out} is a folder; it names the JSON file")
        cfg.out.parent.mkdir(parents=True, exist_ok=True)


def _print_summary(results: dict[str, Any]) -> None:
    print(f"medians of {results['repeat']} round(s):")
    for m, r in results["epochs"].items():
        print(f"  {m}: epoch {r['epoch_s']:.1f} s, {r['samples_per_s']:.0f} training samples/s, "
              f"epoch-start hook {r['clustering_s']:.2f} s, process peak RSS so far {r['peak_rss_mb']:.0f} MB")
    if "recipe" in results:
        r = results["recipe"]
        envs = r["epoch_s_by_env"]
        print(f"  elcrec the authors' way: epoch {r['epoch_s']:.1f} s (default environment "
              f"{envs['default_env']:.1f} s, workers' {envs['worker_env']:.1f} s); "
              f"ours is {r['epoch_speedup']:.2f}x faster")
    if "process" in results:
        print(f"  whole `bench run` process, one elcrec epoch: {results['process']['wall_s']:.1f} s")
    for name, v in results["targets"].items():
        sign = "<=" if v["kind"] == "max" else ">="
        print(f"target {name} {sign} {v['limit']:g}: {'met' if v['met'] else 'NOT met'} (median {v['median']:.2f})")


def cmd_perf(ns: argparse.Namespace) -> int:
    from bench.fileio import write_atomic
    from bench.results.records import provenance
    from bench.runner import WORKER_ENV

    if any(os.environ.get(k) != v for k, v in WORKER_ENV.items()):
        # time what the runner's workers run: with their allocator settings (read at process start)
        os.execve(sys.executable, [sys.executable, "-m", "bench", *sys.argv[1:]], {**os.environ, **WORKER_ENV})
    cfg = from_namespace(PerfConfig, ns)
    _preflight(cfg)
    results: dict[str, Any] = {"dataset": cfg.dataset, "repeat": cfg.repeat, "cpu": cpu_model(),
                               "device": _device_name(cfg.device), "provenance": provenance().to_json()}
    if cfg.shared:
        from bench.perf.fixture import fixture_errors

        errs = {m: max(fixture_errors(m, cfg.shared, device=cfg.device).values()) for m in ("elcrec", "iclrec")}
        results["fixture_max_rel_error"] = errs
        print(f"fixture max relative error: {errs} (must be <= 1e-5)")
    if cfg.ops:
        from bench.perf.opprof import format_profile

        print(f"the {cfg.ops} costliest ops of a training step:")
        results["ops"] = {m: profile_ops(m, cfg) for m in cfg.models}
        for m, prof in results["ops"].items():
            print(format_profile(m, prof))
    results.update(_measure(cfg))
    results["targets"] = verdicts(results)
    _print_summary(results)
    if cfg.out:
        write_atomic(cfg.out, json.dumps(results, indent=2).encode())
    return 0

