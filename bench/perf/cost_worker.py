"""One model's process of `bench cost`: `python -m bench.perf.cost_worker SPEC_JSON`.

Sets the run up as `bench run` would (the same spec, seed and threads), prints one JSON line when
ready, then trains one epoch per `epoch` line on stdin (one JSON line of its phase times back) and
answers `end` with its memory record. Between commands it waits on stdin, idle, so that only the
model being timed uses the machine.
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
from bench.modelio import build_model
from bench.protocol import PHASES
from bench.results.records import peak_rss_mb
from bench.spec import RunSpec
from bench.train import PhaseClock, Progress, _one_epoch, make_optimizer, memory_summary


def reply(obj: dict[str, Any]) -> None:
    print(json.dumps(obj), flush=True)


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
        before = dict(clock.seconds)
        best = _one_epoch(spec, model, opt, data, prog, clock, best, device)
        seconds = {k: clock.seconds[k] - before[k] for k in PHASES}
        reply({"epoch": prog.epoch - 1, "seconds": seconds, "epoch_s": sum(seconds.values()),
               "valid_ndcg20": prog.curve[-1]["valid_NDCG@20"]})
    return 1


if __name__ == "__main__":
    exit_now(main(sys.argv[1:]))
