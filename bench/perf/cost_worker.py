"""One model's process of `bench cost`: `python -m bench.perf.cost_worker SPEC_JSON`.

Sets the run up as `bench run` would (the same spec, seed and threads), prints one JSON line when
ready, then trains one epoch per `epoch` line on stdin (one JSON line of its phase times back) and
answers `end` with its memory record. Between commands it waits on stdin, idle, so that only the
model being timed uses the machine. On a GPU each epoch's line also carries the epoch's average
reserved GPU memory (`gpu_avg_mb`): the paper's average-memory claim is judged on paired rounds.
"""

from __future__ import annotations

import sys

from bench.lifeline import die_with_parent, exit_now, keep_niceness

if __name__ == "__main__":  # before torch is imported: that takes seconds, the parent may die meanwhile
    die_with_parent()
    keep_niceness()

import copy
import json
from pathlib import Path
from typing import Any

import torch

from bench.data import item_attributes, load_dataset
from bench.evaluate import device_info
from bench.memory import MemorySampler
from bench.modelio import build_model
from bench.protocol import PHASES
from bench.results.records import peak_rss_mb
from bench.spec import RunSpec
from bench.train import PhaseClock, Progress, _one_epoch, make_optimizer, memory_summary


def reply(obj: dict[str, Any]) -> None:
    print(json.dumps(obj), flush=True)


def gpu_sums(mem: MemorySampler) -> dict[str, tuple[int, float]]:
    """Per phase: (samples so far, sum of their reserved GPU memory in MB); empty off a GPU."""
    if mem.gpu is None:
        return {}
    return {p: (m.n, m.sums.get("gpu_reserved_mb", 0.0)) for p, m in list(mem.phases.items())}


def epoch_gpu_avg_mb(before: dict[str, tuple[int, float]], after: dict[str, tuple[int, float]]) -> float | None:
    """The epoch's average reserved GPU memory (MB), the largest over its phases of the mean of the
    samples taken in it (as `bench.results.claims.avg_gpu_mb` of a run); None off a GPU."""
    avgs = []
    for phase, (n, total) in after.items():
        n0, total0 = before.get(phase, (0, 0.0))
        if phase in PHASES and n > n0:
            avgs.append((total - total0) / (n - n0))
    return max(avgs) if avgs else None


def main(argv: list[str]) -> int:
    spec = RunSpec.from_dict(json.loads(argv[0]))
    if spec.threads:
        torch.set_num_threads(spec.threads)
    device = torch.device(spec.device)
    data_dir = Path(spec.data_dir) if spec.data_dir else None
    data = load_dataset(spec.dataset, data_dir)
    model = build_model(spec.model, data.item_size, spec.hp, data.n_users,
                        lambda: item_attributes(spec.dataset, data, data_dir))
    model.reset_parameters(torch.Generator().manual_seed(spec.seed))
    model.to(device)  # type: ignore[attr-defined]
    opt, prog, clock = make_optimizer(model, spec.train_config), Progress(), PhaseClock(device)
    best = copy.deepcopy(model.state_dict())
    clock.mem.start()
    reply({"ready": True, "device": device_info(spec.device)})
    for line in sys.stdin:
        if line.strip() == "end":
            reply({"memory": {"peak_rss_mb": peak_rss_mb(), "gpu_peak_by_phase": clock.gpu,
                              **memory_summary(clock.mem)}})
            return 0
        before, gpu_before = dict(clock.seconds), gpu_sums(clock.mem)
        best = _one_epoch(spec, model, opt, data, prog, clock, best, device)
        seconds = {k: clock.seconds[k] - before[k] for k in PHASES}
        reply({"epoch": prog.epoch - 1, "seconds": seconds, "epoch_s": sum(seconds.values()),
               "valid_ndcg20": prog.curve[-1]["valid_NDCG@20"],
               "gpu_avg_mb": epoch_gpu_avg_mb(gpu_before, gpu_sums(clock.mem))})
    return 1


if __name__ == "__main__":
    exit_now(main(sys.argv[1:]))
