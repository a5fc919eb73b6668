"""One point of the scaling study in its own process: `python -m bench.perf.scale_worker SPEC_JSON`.

A fresh process per (model, scale, repeat), so that its peak RSS is its own. In order, each phase
timed and its peak RSS taken alone (the kernel's high-water mark is reset before it, /proc/self/clear_refs):
the data generation (not a cost of the model), the model, its epoch-0 hook (ELCRec: the one-off
k-means initialisation; ICLRec: its k-means), its epoch-1 hook (the work repeated at every epoch
start: ICLRec's k-means again, nothing for the others), the epoch's training samples built whole,
`warmup` training batches, `batches` timed batches (extrapolated to the epoch's batches), and an
evaluation of the first `eval_users` users (extrapolated to all). The hooks are the models' own
(`epoch_start`), given the trainer's embedding pass, which is timed where it is called: nothing
here knows a model by name. Prints `{"phase": NAME}` as each phase starts (so that the parent knows
where a killed point was) and the measurement as the last JSON line.
"""

from __future__ import annotations

import sys

from bench.lifeline import die_with_parent, exit_now

if __name__ == "__main__":  # before torch is imported: that takes seconds, the parent may die meanwhile
    die_with_parent()

import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from bench.batches import training_samples
from bench.data import SeqData, load_dataset
from bench.data.beautylike import shape_source
from bench.data.datasets import beauty_search
from bench.evaluate import device_info, evaluate, mean_pooled_train_outputs
from bench.modelio import build_model
from bench.optim import Adam
from bench.train import TrainConfig, epoch_generators, make_optimizer, to_batches, train_steps
from models.protocol import Batch, RecModel

MB = 2**20


def _status_kb(field: str) -> float:
    line = next(ln for ln in Path("/proc/self/status").read_text().splitlines() if ln.startswith(field + ":"))
    return float(line.split()[1])


def reset_peak() -> bool:
    """Resets the kernel's peak RSS (VmHWM) of this process; False where that is not allowed."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


class Phases:
    """Seconds, peak RSS (MiB) and RSS after each phase; on CUDA also each phase's peak GPU memory."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.seconds: dict[str, float] = {}
        self.peak_rss_mb: dict[str, float] = {}
        self.rss_after_mb: dict[str, float] = {}
        self.gpu_peak_mb: dict[str, dict[str, float]] = {}
        self.resets = True

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def run(self, name: str, fn: Callable[..., Any], *args: Any) -> Any:
        print(json.dumps({"phase": name}), flush=True)
        self.resets &= reset_peak()
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        self._sync()
        t0 = time.perf_counter()
        out = fn(*args)
        self._sync()
        self.seconds[name] = time.perf_counter() - t0
        self.peak_rss_mb[name] = _status_kb("VmHWM") / 1024
        self.rss_after_mb[name] = _status_kb("VmRSS") / 1024
        if self.device.type == "cuda":
            self.gpu_peak_mb[name] = {"allocated": torch.cuda.max_memory_allocated(self.device) / MB,
                                      "reserved": torch.cuda.max_memory_reserved(self.device) / MB}
        return out


def timed_embedding(model: RecModel, data: SeqData, device: torch.device, spent: list[float]) -> Callable[[], Any]:
    """The trainer's embedding pass for a hook, with its seconds appended to `spent` when called."""
    def embed() -> Any:
        t0 = time.perf_counter()
        out = mean_pooled_train_outputs(model, data, device)
        spent.append(time.perf_counter() - t0)
        return out

    return embed


def first_users(data: SeqData, n: int) -> SeqData:
    """The first n users (views of the arrays, no copy)."""
    labels = data.labels[:n] if data.labels is not None else None
    return SeqData(data.name, data.sha256, data.flat[: data.offsets[n]], data.offsets[: n + 1], labels)


def hooks(ph: Phases, model: RecModel, data: SeqData, device: torch.device, seed: int) -> dict[str, float]:
    """The epoch-0 and epoch-1 hooks, each with the seconds of the embedding pass it asked for."""
    out = {}
    for epoch, name in ((0, "init"), (1, "epoch_start")):
        spent: list[float] = []
        ph.run(name, model.epoch_start, epoch, timed_embedding(model, data, device, spent), seed)
        out[f"{name}_embedding_s"] = sum(spent)
    return out


def train_batches(ph: Phases, model: RecModel, opt: Adam, batches: list[Batch], warmup: int, timed: int) -> None:
    """`warmup` then `timed` steps, cycling through the epoch's batches when it has fewer."""
    pick = [batches[i % len(batches)] for i in range(warmup + timed)]
    if warmup:
        ph.run("warmup", train_steps, model, opt, pick[:warmup], 1)
    ph.run("train", train_steps, model, opt, pick[warmup:], 1)


def measure(spec: dict[str, Any]) -> dict[str, Any]:
    device = torch.device(spec["device"])
    ph = Phases(device)
    rss_start = _status_kb("VmRSS") / 1024  # interpreter, torch, faiss: the part that does not scale
    data = ph.run("generate", load_dataset, spec["dataset"], _data_dir(spec))
    model = ph.run("model", _model, spec, data, device)
    extra = hooks(ph, model, data, device, spec["seed"])
    rng, model.generator = epoch_generators(spec["seed"], 1, device)
    batches = ph.run("batches", lambda: to_batches(training_samples(model.samples, data, rng, model.sample_options()),
                                                   spec["batch_size"], device))
    train_batches(ph, model, make_optimizer(model, _train_config(spec)), batches, spec["warmup"], spec["batches"])
    n_eval = min(spec["eval_users"], data.n_users)
    if n_eval:
        ph.run("eval", evaluate, model, first_users(data, n_eval), "valid")
    del batches  # alive until here, as in the trainer's epoch (validation runs while they are held)
    return _result(spec, ph, data, extra, n_eval, rss_start)


def _data_dir(spec: dict[str, Any]) -> Path | None:
    return Path(spec["data_dir"]) if spec["data_dir"] else None


def _train_config(spec: dict[str, Any]) -> TrainConfig:
    return TrainConfig(batch_size=spec["batch_size"])


def _model(spec: dict[str, Any], data: SeqData, device: torch.device) -> RecModel:
    model = build_model(spec["model"], data.item_size, spec["hp"], data.n_users)
    model.reset_parameters(torch.Generator().manual_seed(spec["seed"]))
    model.to(device)  # type: ignore[attr-defined]
    return model


def _result(spec: dict[str, Any], ph: Phases, data: SeqData, extra: dict[str, float], n_eval: int,
            rss_start: float) -> dict[str, Any]:
    s = ph.seconds
    per_epoch_batches = math.ceil(data.n_users / spec["batch_size"])
    train_s = s["train"] / spec["batches"] * per_epoch_batches
    eval_s = s["eval"] * data.n_users / n_eval if n_eval else math.nan
    epoch_s = s["epoch_start"] + s["batches"] + train_s
    return {
        "seconds": {**s, **extra, "train_extrapolated": train_s, "eval_extrapolated": eval_s, "epoch": epoch_s,
                    "epoch_with_eval": epoch_s + (eval_s if n_eval else 0.0)},
        "extrapolation": {"train_batches_timed": spec["batches"], "train_batches_per_epoch": per_epoch_batches,
                          "train_factor": per_epoch_batches / spec["batches"], "eval_users": n_eval,
                          "eval_factor": data.n_users / n_eval if n_eval else None},
        "memory": {"peak_rss_mb": max(ph.peak_rss_mb.values()), "rss_start_mb": rss_start,
                   "phase_peak_rss_mb": ph.peak_rss_mb, "rss_after_mb": ph.rss_after_mb, "per_phase_peaks": ph.resets,
                   **({"gpu_peak_mb": ph.gpu_peak_mb} if ph.gpu_peak_mb else {})},
        "data": {**data.stats(), "sha256": data.sha256, "bytes": int(data.flat.nbytes + data.offsets.nbytes),
                 "shape": shape_source(spec["dataset"], *beauty_search(_data_dir(spec)))},
        "device": device_info(spec["device"]),
    }


def main(argv: list[str]) -> int:
    spec = json.loads(argv[0])
    if spec["threads"]:
        torch.set_num_threads(spec["threads"])
    print(json.dumps({"result": measure(spec)}), flush=True)
    return 0


if __name__ == "__main__":
    exit_now(main(sys.argv[1:]))
