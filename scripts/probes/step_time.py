"""Seconds per training step of one model on a real dataset, for before/after comparisons of a change.

    python scripts/probes/step_time.py sasrec_ce prefixes=true
    python scripts/probes/step_time.py s3rec --pretrain      # S3-Rec's pre-training steps

Beauty by default (`--data-dir ../shared/datasets`), one torch thread, the dataset's preset with the
given key=value overrides, seed 1: `--steps` steps timed after one untimed step, extrapolated to the
epoch's batches. Run it twice (before and after a change, e.g. with `git stash`) in one sitting on
the same machine: the ratio is the result, not the seconds. Numbers in docs/perf.md and the commit
bodies came from this script.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from bench.batches import training_samples
from bench.data import item_attributes, load_dataset
from bench.modelio import build_model
from bench.presets import preset
from bench.runner import parse_value
from bench.spec import TrainConfig
from bench.train import epoch_generators, make_optimizer, to_batches


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("settings", nargs="*", help="key=value hyper-parameter overrides")
    ap.add_argument("--dataset", default="beauty")
    ap.add_argument("--data-dir", type=Path, default=Path("../shared/datasets"))
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--pretrain", action="store_true", help="time the model's pre-training stage instead")
    ns = ap.parse_args()
    torch.set_num_threads(1)
    data = load_dataset(ns.dataset, ns.data_dir)
    hp = {**preset(ns.dataset, ns.model), **{k: parse_value(v) for k, v in (s.split("=", 1) for s in ns.settings)}}
    model = build_model(ns.model, data.item_size, hp, data.n_users,
                        lambda: item_attributes(ns.dataset, data, ns.data_dir))
    model.reset_parameters(torch.Generator().manual_seed(1))
    stage = model.pretraining() if ns.pretrain else None
    samples, options, losses = ((stage.samples, stage.options, stage.losses) if stage is not None
                                else (model.samples, model.sample_options(), model.losses))
    rng, model.generator = epoch_generators(1, 0, torch.device("cpu"))
    batches = to_batches(training_samples(samples, data, rng, options), 256, torch.device("cpu"))
    opt = make_optimizer(model, TrainConfig())
    model.train()  # type: ignore[attr-defined]
    for i, batch in enumerate(batches[: ns.steps + 1]):
        if i == 1:
            t0 = time.perf_counter()
        loss = losses(batch)["loss"]
        opt.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        opt.step()
    step = (time.perf_counter() - t0) / ns.steps
    print(f"{ns.model} {hp} {'pre-training' if stage else 'training'}: {len(batches)} batches, "
          f"{step:.3f} s a step, epoch about {step * len(batches):.0f} s, last loss {float(loss.detach()):.4f}")


if __name__ == "__main__":
    main()
