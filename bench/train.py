"""The training loop of the authors' protocol, generic over `models.protocol.RecModel`.

Adam, batch 256, validation (full ranking, NDCG@20) after every epoch, early stopping after
`patience` epochs without a better validation NDCG@20, test with the best-validation weights.
Every random choice comes from generators derived from (seed, epoch), and the whole state is saved
after every epoch, so a killed run resumes at its last finished epoch and ends with exactly the
metrics of an uninterrupted run (on CPU).
"""

from __future__ import annotations

import copy
import io
import math
import os
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.batches import EpochBatches, Samples, training_samples
from bench.config import require_device
from bench.data import SeqData, item_attributes, load_dataset
from bench.diagnostics import cluster_diagnostics
from bench.evaluate import EvalResult, device_info, evaluate, mean_pooled_train_outputs
from bench.fileio import now
from bench.memory import MB, MemorySampler
from bench.modelio import build_model, model_config
from bench.optim import Adam
from bench.protocol import PHASES
from bench.results.codeversion import code_version, recent_epoch_s, write_sidecar
from bench.results.records import cpu_model, peak_rss_mb
from bench.spec import RunSpec, TrainConfig
from models.protocol import Batch, Pretraining, RecModel, model_info


class RunFailure(Exception):
    """A run that cannot go on (NaN loss, out of memory): becomes a failure record."""


class PhaseClock:
    """Per-phase wall time (after a CUDA synchronize) and peak GPU memory: the statistics are reset
    before each call, so a phase's peak is its own, the highest over all of its calls."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.seconds: dict[str, float] = dict.fromkeys(PHASES, 0.0)
        self.gpu: dict[str, dict[str, int]] = {}
        counters = (lambda: (torch.cuda.memory_allocated(device), torch.cuda.memory_reserved(device))) \
            if device.type == "cuda" else None
        self.mem = MemorySampler(gpu=counters)

    def run(self, phase: str, fn: Callable[..., Any], *args: Any) -> Any:
        cuda = self.device.type == "cuda"
        if cuda:
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        t0 = time.perf_counter()
        self.mem.phase = phase
        out = fn(*args)
        self.mem.phase = "other"
        if cuda:
            torch.cuda.synchronize(self.device)
            now = {"allocated": torch.cuda.max_memory_allocated(self.device),
                   "reserved": torch.cuda.max_memory_reserved(self.device)}
            self.gpu[phase] = {k: max(v, self.gpu.get(phase, {}).get(k, 0)) for k, v in now.items()}
        self.seconds[phase] = self.seconds.get(phase, 0.0) + time.perf_counter() - t0  # pre-training: its own
        return out


def make_optimizer(model: RecModel, tc: TrainConfig) -> Adam:
    """Adam as the authors (no weight decay by default); fused: one kernel per step."""
    return Adam(model.parameters(), lr=tc.lr, betas=(tc.beta1, tc.beta2), weight_decay=tc.weight_decay)


def to_batches(ep: EpochBatches | Samples, size: int, device: torch.device) -> list[Batch]:
    """An epoch's sample arrays (rows aligned, named as Batch's fields) cut into batches of `size` rows."""
    t = {k: torch.from_numpy(v) for k, v in (ep.arrays() if isinstance(ep, EpochBatches) else ep).items()}
    rows = len(next(iter(t.values())))
    return [Batch(**{k: v[i : i + size].to(device) for k, v in t.items()}) for i in range(0, rows, size)]


def train_steps(model: RecModel, opt: Adam, batches: list[Batch], epoch: int,
                losses: Callable[[Batch], dict[str, torch.Tensor]] | None = None) -> dict[str, float]:
    """One pass over the batches minimising `losses` (default: the model's training losses)."""
    model.train()
    sums: dict[str, float] = {}
    for i, batch in enumerate(batches):
        terms = (losses or model.losses)(batch)
        loss = terms["loss"]
        if not torch.isfinite(loss):
            raise RunFailure(f"non-finite loss ({loss.item()}) at epoch {epoch}, batch {i}")
        opt.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        opt.step()
        model.after_step()
        for k, v in terms.items():
            sums[k] = sums.get(k, 0.0) + float(v.detach())
    return {k: v / len(batches) for k, v in sums.items()}


PRETRAIN_EPOCH0 = 1_000_000  # pre-training epoch k draws from the generators of epoch PRETRAIN_EPOCH0 + k


def pretrain_epoch(spec: RunSpec, model: RecModel, stage: Pretraining, opt: Adam, data: SeqData, k: int,
                   device: torch.device) -> dict[str, float]:
    """Epoch k of the model's pre-training stage (S3-Rec); returns its mean losses."""
    rng, model.generator = epoch_generators(spec.seed, PRETRAIN_EPOCH0 + k, device)
    samples = training_samples(stage.samples, data, rng, stage.options)
    return train_steps(model, opt, to_batches(samples, spec.train_config.batch_size, device), k, stage.losses)


def _save_state(path: Path, state: dict[str, Any]) -> None:
    buf = io.BytesIO()
    torch.save(state, buf)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(buf.getvalue())
    os.replace(tmp, path)  # a kill never leaves a half-written state


@dataclass
class Progress:
    epoch: int = 0
    best_score: float = -math.inf
    best_epoch: int = -1
    bad_epochs: int = 0
    curve: list[dict[str, Any]] = field(default_factory=list)
    stop_reason: str = "max_epochs"
    # pre-training epochs done and their mean losses (S3-Rec); class-level defaults, so that the
    # states of older code, which saved only after pre-training, load
    pretrain_epoch: int = 0
    pretrain_curve: list[dict[str, Any]] | None = None
    # cluster diagnostics of the initial centres (after the epoch-0 hook); a class-level default, so
    # that the states of older code, pickled without it, load
    init_diagnostics: dict[str, Any] | None = None
    # where each stretch of the run trained: a run resumed on another machine has epochs of two
    # speeds, so its times are no one machine's (a class-level default, as above)
    segments: list[dict[str, Any]] | None = None


def epoch_generators(seed: int, epoch: int, device: torch.device) -> tuple[np.random.Generator, torch.Generator]:
    """Data and dropout randomness of one epoch, derived from (seed, epoch) alone (the dropout
    generator lives on the run's device, as torch requires)."""
    ss = np.random.SeedSequence([seed, epoch])
    np_seed, torch_seed = ss.generate_state(2, dtype=np.uint64)
    return np.random.default_rng(int(np_seed)), torch.Generator(device=device).manual_seed(int(torch_seed) >> 1)


def train_run(spec: RunSpec, state_path: Path | None = None,
              on_epoch: Callable[[Progress, int], None] | None = None,
              on_pretrain: Callable[[Progress, int], None] | None = None) -> dict[str, Any]:
    """Trains and tests one seeded run; returns the measurement dict of its record. `on_epoch` and
    `on_pretrain` are called after each (saved) training or pre-training epoch with the total."""
    if spec.threads:
        torch.set_num_threads(spec.threads)
    require_device(spec.device)
    device = torch.device(spec.device)
    t_start = time.perf_counter()
    data = load_dataset(spec.dataset, Path(spec.data_dir) if spec.data_dir else None)
    model = build_model(spec.model, data.item_size, spec.hp, data.n_users,
                        lambda: item_attributes(spec.dataset, data, Path(spec.data_dir) if spec.data_dir else None))
    model.reset_parameters(torch.Generator().manual_seed(spec.seed))
    model.to(device)  # type: ignore[attr-defined]
    tc = spec.train_config
    opt = make_optimizer(model, tc)
    prog, best_state, clock = _restore(state_path, model, opt, device)
    prog.segments = [*(prog.segments or []), _segment(spec, prog)]
    setup_s = time.perf_counter() - t_start

    def save() -> None:
        if state_path is not None:
            _save_run(state_path, model, opt, prog, best_state, clock, tc.epochs)

    stage = model.pretraining()
    if stage is not None and prog.epoch == 0:
        # pre-training is saved after every epoch like training (S3-Rec's takes a day on a small CPU),
        # with its own optimiser; fine-tuning then starts from a fresh one
        prog.pretrain_curve = prog.pretrain_curve or []
        while prog.pretrain_epoch < stage.epochs:
            prog.pretrain_curve.append(clock.run("pretraining", pretrain_epoch, spec, model, stage, opt, data,
                                                 prog.pretrain_epoch, device))
            prog.pretrain_epoch += 1
            if prog.pretrain_epoch == stage.epochs:
                opt, best_state = make_optimizer(model, tc), copy.deepcopy(model.state_dict())
            save()
            if on_pretrain is not None:
                on_pretrain(prog, stage.epochs)
    while prog.epoch < tc.epochs and prog.stop_reason == "max_epochs":
        best_state = _one_epoch(spec, model, opt, data, prog, clock, best_state, device)
        save()
        if on_epoch is not None:
            on_epoch(prog, tc.epochs)
    return _finish(spec, model, data, best_state, prog, clock, setup_s, device)


def _segment(spec: RunSpec, prog: Progress) -> dict[str, Any]:
    """This process's stretch of the run: from which epoch, on which machine and device."""
    dev = device_info(spec.device)
    return {"from_epoch": prog.epoch, "from_pretrain_epoch": prog.pretrain_epoch, "started": now(),
            "host": socket.gethostname(), "cpu": cpu_model(), "device": f"{dev['type']}: {dev['name']}",
            "torch_threads": torch.get_num_threads()}


def _restore(state_path: Path | None, model: RecModel, opt: Adam, device: torch.device
             ) -> tuple[Progress, dict[str, Any], PhaseClock]:
    """A fresh start, or the saved state of a killed run loaded into `model` and `opt`; the clock runs."""
    prog, best_state, clock = Progress(), copy.deepcopy(model.state_dict()), PhaseClock(device)
    if state_path is not None and state_path.exists():
        saved = torch.load(state_path, weights_only=False, map_location=device)
        model.load_state_dict(saved["model"])
        opt.load_state_dict(saved["optimizer"])
        prog, best_state = saved["progress"], saved["best_state"]
        clock.seconds, clock.gpu = saved["clock"]
        if saved.get("memory") is not None:  # absent in the states of older code
            clock.mem.phases, clock.mem.timeline = saved["memory"]
        _keep_threads(saved.get("threads"), prog.epoch)
    clock.mem.start()
    return prog, best_state, clock


def _save_run(path: Path, model: RecModel, opt: Adam, prog: Progress, best_state: dict[str, Any],
              clock: PhaseClock, epochs: int) -> None:
    """Everything a resume needs. The sidecar first: a state is never without the code version that
    resume checks (a kill between the two leaves a sidecar one epoch ahead, which only the dry-run's
    display reads)."""
    stage = model.pretraining()
    write_sidecar(path, {"epoch": prog.epoch, "epochs": epochs, "best_epoch": prog.best_epoch,
                         "best_valid_ndcg20": prog.best_score, "stop_reason": prog.stop_reason,
                         "pretrain_epoch": prog.pretrain_epoch, "pretrain_epochs": (stage.epochs if stage else 0),
                         "epoch_s": recent_epoch_s(prog.curve)})
    _save_state(path, {"model": model.state_dict(), "optimizer": opt.state_dict(), "progress": prog,
                       "best_state": best_state, "clock": (clock.seconds, clock.gpu),
                       "memory": (clock.mem.phases, clock.mem.timeline),
                       "threads": torch.get_num_threads(), "code": code_version()})


def _keep_threads(started: int | None, epoch: int) -> None:
    """A resumed run goes on with the torch threads it started with. Some CPU reductions (LayerNorm's
    and the biases' gradients) sum in an order set by the thread count, so a run that changed it
    midway would not end exactly like an uninterrupted one."""
    now = torch.get_num_threads()
    if started and started != now:
        print(f"resuming at epoch {epoch} with {started} torch threads, as the run started "
              f"(this call would use {now})", file=sys.stderr)
        torch.set_num_threads(started)


def _one_epoch(spec: RunSpec, model: RecModel, opt: Adam, data: SeqData, prog: Progress,
               clock: PhaseClock, best_state: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """Epoch start hook, batches, steps, validation, early stopping; returns the best weights."""
    epoch, tc = prog.epoch, spec.train_config
    before = dict(clock.seconds)
    clock.mem.epoch = epoch
    rng, model.generator = epoch_generators(spec.seed, epoch, device)
    clock.run("clustering", model.epoch_start, epoch, lambda: mean_pooled_train_outputs(model, data, device),
              spec.seed)
    if epoch == 0:  # outside the phase clock: a measurement, not training (eval mode, no random draws)
        prog.init_diagnostics = cluster_diagnostics(model, data, device)
    batches = clock.run("batches", lambda r: to_batches(
        training_samples(model.samples, data, r, model.sample_options()), tc.batch_size, device), rng)
    losses = clock.run("train", train_steps, model, opt, batches, epoch)
    val: EvalResult = clock.run("validation", evaluate, model, data, "valid", tc.seen_items)
    score = val.metrics["NDCG@20"]
    prog.curve.append({"epoch": epoch, **{f"valid_{k}": v for k, v in val.metrics.items()}, "losses": losses,
                       "seconds": {k: clock.seconds[k] - before[k] for k in PHASES},
                       "elapsed": sum(clock.seconds.values())})
    if score > prog.best_score:
        prog.best_score, prog.best_epoch, prog.bad_epochs = score, epoch, 0
        best_state = copy.deepcopy(model.state_dict())
    else:
        prog.bad_epochs += 1
        if prog.bad_epochs >= tc.patience:
            prog.stop_reason = "early_stopping"
    prog.epoch = epoch + 1
    return best_state


def memory_summary(mem: MemorySampler) -> dict[str, Any]:
    """The sampler's per-phase averages and peaks and its epoch timeline; on CUDA also the average
    allocator counters per phase in bytes, shaped as `gpu_peak_by_phase` (the paper's memory claim is
    an average over training)."""
    mem.stop()
    out = mem.summary()
    gpu_avg = {p: {"allocated": round(m["avg_gpu_allocated_mb"] * MB), "reserved": round(m["avg_gpu_reserved_mb"] * MB)}
               for p, m in out["by_phase"].items() if "avg_gpu_allocated_mb" in m}
    train = [m for p, m in out["by_phase"].items() if p in PHASES]
    n = sum(m["samples"] for m in train)
    rss_avg = sum(m["avg_rss_mb"] * m["samples"] for m in train) / n if n else None
    return {"sampled": out, "rss_avg_mb": rss_avg, **({"gpu_avg_by_phase": gpu_avg} if gpu_avg else {})}


def _finish(spec: RunSpec, model: RecModel, data: SeqData, best_state: dict[str, Any], prog: Progress,
            clock: PhaseClock, setup_s: float, device: torch.device) -> dict[str, Any]:
    # ICLRec's centroids are no parameters: the last epoch's stay, as in the authors' code
    model.load_state_dict(best_state, strict=False)
    t0 = time.perf_counter()
    test = evaluate(model, data, "test", spec.train_config.seen_items, describe_users=True)
    test_s = time.perf_counter() - t0
    epochs = max(prog.epoch, 1)
    train_s = sum(clock.seconds.values())  # pre-training included: the whole cost of the model
    epoch_s = sum(clock.seconds[k] for k in PHASES)
    to_best = sum(sum(c["seconds"].values()) for c in prog.curve[: prog.best_epoch + 1])
    diag = cluster_diagnostics(model, data, device)
    return {
        "metrics": test.metrics, "per_user": {**test.per_user, "rank": test.ranks},
        "protocol": test.protocol.as_dict(), "dataset_sha256": data.sha256,
        "epochs_run": prog.epoch, "best_epoch": prog.best_epoch, "best_valid_ndcg20": prog.best_score,
        "stop_reason": prog.stop_reason, "curve": prog.curve, "pretrain_curve": prog.pretrain_curve,
        "timing": {
            "setup_s": setup_s, "train_total_s": train_s, "time_to_best_s": to_best, "test_s": test_s,
            "phase_total_s": dict(clock.seconds), "epoch_mean_s": epoch_s / epochs,
            "train_sequences_per_s": data.n_users * epochs / max(clock.seconds["train"], 1e-9),
        },
        "memory": {"peak_rss_mb": peak_rss_mb(), "gpu_peak_by_phase": clock.gpu, **memory_summary(clock.mem)},
        "segments": prog.segments,
        "diagnostics": diag, "diagnostics_init": prog.init_diagnostics, "representation": test.representation,
        "model_config": asdict(model_config(spec.model, spec.hp)),  # every hyper-parameter, defaults included
        "train_config": asdict(spec.train_config),
        "model_info": model_info(model),
        "weights": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},  # the tested weights
    }
