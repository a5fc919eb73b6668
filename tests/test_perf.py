from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bench.perf.speed import PerfConfig, time_epoch, verdicts
from models import REGISTRY


def test_targets_are_judged_on_the_medians_that_were_measured() -> None:
    results = {"dataset": "beauty", "epochs": {"elcrec": {"epoch_s": 31.5, "clustering_s": 2.7},
                                               "iclrec": {"clustering_s": 2.9}},
               "recipe": {"epoch_speedup": 4.2}}
    v = verdicts(results)
    assert v["elcrec epoch s"] == {"limit": 30.0, "kind": "max", "median": 31.5, "met": False}
    assert v["iclrec clustering s"]["met"] is True
    assert v["elcrec epoch speed-up vs the authors' recipe"]["met"] is True  # a floor, not a ceiling
    assert "elcrec run process s" not in v  # --no-process: nothing to judge, no verdict
    assert verdicts({**results, "dataset": "synthetic"}) == {}  # the targets are Beauty's


def test_perf_times_ours_and_the_authors_recipe_on_the_same_data(tmp_path: Path) -> None:
    out = tmp_path / "perf.json"
    cmd = [sys.executable, "-m", "bench", "perf", "--dataset", "synthetic:users=300,items=60", "--models", "elcrec",
           "--batches", "1", "--recipe-batches", "3", "--out", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    res = json.loads(out.read_text())
    ours, recipe = res["epochs"]["elcrec"], res["recipe"]
    assert recipe["extrapolated_from_batches"] == 3  # the set has 2 batches: the recipe cycles through them
    assert ours["extrapolated_from_batches"] == 1
    assert recipe["epoch_speedup"] == recipe["epoch_s"] / ours["epoch_s"] > 0
    assert recipe["epoch_s"] == recipe["batches_s"] + recipe["train_s"] + recipe["validation_s"]
    assert min(recipe["batches_s"], recipe["validation_s"]) > 0  # their data and validation are timed too
    (rnd,) = recipe["rounds"]  # timed with and without the workers' settings; the faster is the baseline
    assert rnd["epoch_s"] == min(rnd["epoch_s_by_env"].values()) == rnd["epoch_s_by_env"][rnd["env"]]
    assert set(rnd["epoch_s_by_env"]) == {"default_env", "worker_env"}
    proc = res["process"]  # a whole `bench run` process of one epoch, with its own peak memory
    assert proc["wall_s"] > proc["train_s"] > 0 and proc["peak_rss_mb_run"] > 0
    assert res["targets"] == {}
    assert "the authors' way" in done.stdout


@pytest.mark.parametrize("model", sorted(REGISTRY))  # every registry entry, without naming it
@pytest.mark.usefixtures("one_torch_thread")
def test_perf_times_an_epoch_of_every_model_on_its_own_samples(model: str) -> None:
    cfg = PerfConfig(dataset="synthetic:users=300,items=60", models=(model,), batches=1)
    res = time_epoch(model, cfg)
    assert res["extrapolated_from_batches"] == 1 and res["train_s"] > 0 and res["validation_s"] > 0
    assert res["epoch_s"] == pytest.approx(res["batches_s"] + res["train_s"] + res["validation_s"])
    assert res["peak_rss_mb"] > 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")
def test_perf_on_a_missing_gpu_is_a_one_line_error() -> None:
    done = subprocess.run([sys.executable, "-m", "bench", "perf", "--device", "cuda", "--dataset", "synthetic"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip() == "error: --device cuda: no CUDA device is visible here"


def test_the_op_profile_covers_forward_backward_and_optimiser_of_a_step(tmp_path: Path) -> None:
    out = tmp_path / "perf.json"
    cmd = [sys.executable, "-m", "bench", "perf", "--dataset", "synthetic:users=600,items=60", "--models", "elcrec",
           "--batches", "1", "--recipe-batches", "0", "--no-process", "--ops", "500", "--out", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    prof = json.loads(out.read_text())["ops"]["elcrec"]
    times = [r["ms_per_step"] for r in prof["top"]]
    assert times == sorted(times, reverse=True) and min(times) > 0
    assert sum(times) <= prof["ops_ms"] * (1 + 1e-9) <= prof["step_ms"]  # the timed ops do not nest
    names = {r["op"].split(".")[0] for r in prof["top"]}  # "mm.default (64, 600)" -> "mm"
    # the encoder's backward (GELU is only there, also where its passes run in worker threads), the
    # optimiser
    assert {"gelu_backward", "embedding_dense_backward", "_fused_adam_"} <= names
    assert "costliest ops of a training step" in done.stdout
