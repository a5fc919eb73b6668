"""`python -m bench cost`: the paired per-epoch cost benchmark behind the paper's cost claims.

Per-epoch times of long runs on a shared machine are no cost evidence: other work moves them by 15%
and more within minutes. Here each model trains in its own process, kept alive between its epochs,
and the epochs of the compared models alternate in one time window (A B, B A, A B, ...), so drift
hits both alike; each round's ratio of adjacent epochs is one paired observation, and the CI of the
per-epoch cost ratio is a t interval over the rounds' log ratios (`stats.paired_ratio`). The first
`--warmup` rounds (ELCRec's epoch-0 initialisation, allocator warm-up) are recorded but not used.
The load average is recorded beside every epoch. Each model gets a record of kind "cost"
(append-only, with provenance) in `--out`.

This module imports no torch: the parent only schedules; `bench.perf.cost_worker` trains.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.config import from_namespace, opt, require_device
from bench.errors import BenchError
from bench.lifeline import PARENT_ENV
from bench.results import stats
from bench.results.records import append_record, provenance
from bench.results.schema import CostEpoch, CostRecord, Device, Memory, new_id
from bench.spec import RunSpec


@dataclass(frozen=True)
class CostConfig:
    models: tuple[str, ...] = opt(("elcrec", "iclrec"), help="the compared models (the first is the subject)")
    dataset: str = opt("beauty", help="dataset (paper settings from its preset)")
    rounds: int = opt(8, help="rounds after the warm-up; each trains one epoch of every model")
    warmup: int = opt(1, help="rounds recorded but not used (epoch 0: initialisation, allocator warm-up)")
    seed: int = opt(1, help="seed of the trained runs")
    threads: int = opt(0, help="torch threads of each model's process (0: all cores)")
    device: str = opt("cpu", choices=("cpu", "cuda"), help="where the models train")
    data_dir: Path | None = opt(None, help="folder with the dataset file")
    out: Path = opt(Path("reports/cost/latest"), help="records folder (records.jsonl)")


class _Worker:
    """One model's training process: `epoch` -> one JSON line of timings; `end` -> its memory."""

    def __init__(self, spec: RunSpec) -> None:
        from bench.runner import WORKER_ENV

        self.model = spec.model
        env = {**WORKER_ENV, **os.environ, "PYTHONUNBUFFERED": "1", PARENT_ENV: str(os.getpid())}
        self.proc = subprocess.Popen([sys.executable, "-m", "bench.perf.cost_worker", json.dumps(spec.as_dict())],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        self.ready = self._read()

    def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise BenchError(f"cost worker of {self.model} exited with code {self.proc.wait()}")
        return json.loads(line)  # type: ignore[no-any-return]

    def ask(self, command: str) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def _round_order(models: tuple[str, ...], r: int) -> tuple[str, ...]:
    """A B, B A, A B, ...: each model is as often first as last, so a trend within rounds cancels."""
    return models if r % 2 == 0 else tuple(reversed(models))


def run_rounds(workers: dict[str, _Worker], cfg: CostConfig) -> dict[str, list[dict[str, Any]]]:
    epochs: dict[str, list[dict[str, Any]]] = {m: [] for m in workers}
    for r in range(cfg.warmup + cfg.rounds):
        for pos, m in enumerate(_round_order(cfg.models, r)):
            load0 = os.getloadavg()
            t0 = time.time()
            res = workers[m].ask("epoch")
            epochs[m].append({**res, "round": r, "position": pos, "warmup": r < cfg.warmup, "started": t0,
                              "loadavg_before": load0, "loadavg_after": os.getloadavg()})
            print(f"round {r}{' (warm-up)' if r < cfg.warmup else ''}: {m} epoch {res['epoch_s']:.2f} s, "
                  f"load {load0[0]:.2f}", file=sys.stderr)
    return epochs


def summarise(epochs: dict[str, list[dict[str, Any]]], models: tuple[str, ...]) -> dict[str, Any]:
    """Median epoch per model and the subject's per-epoch cost ratio against each other model."""
    used = {m: [e["epoch_s"] for e in epochs[m] if not e["warmup"]] for m in models}
    out: dict[str, Any] = {"median_epoch_s": {m: float(np.median(v)) for m, v in used.items() if v}, "ratios": {}}
    subject = models[0]
    for ref in models[1:]:
        est = stats.paired_ratio(np.array(used[subject]), np.array(used[ref]))
        lo, hi = est.interval()
        out["ratios"][ref] = {"ratio": est.ratio, "low": lo, "high": hi, "rounds": len(used[ref])}
    return out


def cmd_cost(ns: argparse.Namespace) -> int:
    cfg = from_namespace(CostConfig, ns)
    if len(cfg.models) < 2 or cfg.rounds < 2 or cfg.warmup < 0:
        raise BenchError("bench cost compares at least two models over at least 2 rounds (--warmup >= 0)")
    require_device(cfg.device)
    from bench.runner import RunConfig, expand

    run_cfg = RunConfig(models=cfg.models, datasets=(cfg.dataset,), profile="paper", seeds=(cfg.seed,),
                        device=cfg.device, data_dir=cfg.data_dir, threads=cfg.threads)
    specs = {s.model: s for s in expand(run_cfg)}  # the paper runs' settings and config hashes
    _validate(specs)
    workers: dict[str, _Worker] = {}
    try:
        for m in cfg.models:
            workers[m] = _Worker(specs[m])
        epochs = run_rounds(workers, cfg)
        ends = {m: w.ask("end") for m, w in workers.items()}
    finally:
        for w in workers.values():
            w.close()
    summary = summarise(epochs, cfg.models)
    pair = new_id()
    for m in cfg.models:
        append_record(cfg.out, CostRecord(
            pair=pair, model=m, dataset=cfg.dataset, seed=cfg.seed, config_hash=specs[m].config_hash,
            config=specs[m].as_dict(), models=cfg.models, warmup=cfg.warmup, rounds=cfg.rounds,
            epochs=tuple(CostEpoch.from_json(e) for e in epochs[m]), summary=summary,
            device=Device.from_json(workers[m].ready["device"]), memory=Memory.from_json(ends[m]["memory"]),
            provenance=provenance()))
    _print_summary(summary, cfg)
    return 0


def _validate(specs: dict[str, RunSpec]) -> None:
    from bench.data import check_dataset
    from bench.modelio import model_config

    for spec in specs.values():
        check_dataset(spec.dataset, Path(spec.data_dir) if spec.data_dir else None)
        model_config(spec.model, spec.hp)


def _print_summary(summary: dict[str, Any], cfg: CostConfig) -> None:
    med = ", ".join(f"{m} {s:.2f} s" for m, s in summary["median_epoch_s"].items())
    print(f"median epoch over {cfg.rounds} paired rounds: {med}")
    for ref, r in summary["ratios"].items():
        print(f"{cfg.models[0]} / {ref} per-epoch cost: {r['ratio']:.3f} (95% CI {r['low']:.3f}-{r['high']:.3f}, "
              f"{r['rounds']} rounds)")
    print(f"records in {cfg.out / 'records.jsonl'}")

