"""The paired cost benchmark: alternating epochs, records of kind "cost", a ratio CI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
from scipy import stats as sps

from bench.cost import paired_ratio_ci
from bench.records import read_records

TINY = "synthetic:users=200,items=60,intents=3,seed=2"


def test_the_ratio_ci_is_the_t_interval_of_the_log_ratios() -> None:
    rng = np.random.default_rng(0)
    b = rng.uniform(10, 12, size=7)
    a = b * 0.8 * rng.lognormal(0, 0.05, size=7)
    ratio, lo, hi = paired_ratio_ci(a, b)
    ci = sps.ttest_1samp(np.log(a / b), 0.0).confidence_interval(0.95)
    assert np.isclose(ratio, np.exp(np.log(a / b).mean()))
    assert np.isclose(lo, np.exp(ci.low)) and np.isclose(hi, np.exp(ci.high)) and lo < 0.8 < hi
    # drift common to both sides of a pair cancels: a machine twice as slow in later rounds changes nothing
    drift = np.linspace(1, 2, 7)
    assert np.allclose(paired_ratio_ci(a * drift, b * drift), (ratio, lo, hi))


def test_cost_alternates_epochs_and_writes_a_cost_record_per_model(tmp_path: Path) -> None:
    out = tmp_path / "cost"
    res = subprocess.run([sys.executable, "-m", "bench", "cost", "--models", "elcrec,sasrec", "--dataset", TINY,
                          "--rounds", "2", "--warmup", "1", "--out", str(out)], capture_output=True, text=True,
                         timeout=600)
    assert res.returncode == 0, res.stderr
    recs = read_records([out])
    assert [r["kind"] for r in recs] == ["cost", "cost"] and len({r["pair"] for r in recs}) == 1
    by_model = {r["model"]: r for r in recs}
    for r in recs:
        assert [e["round"] for e in r["epochs"]] == [0, 1, 2] and [e["warmup"] for e in r["epochs"]] == [True, False,
                                                                                                           False]
        assert all(len(e["loadavg_before"]) == 3 for e in r["epochs"])
        assert r["memory"]["sampled"]["by_phase"]["train"]["samples"] > 0
    # A B, then B A, then A B: each model as often first as last
    assert [e["position"] for e in by_model["elcrec"]["epochs"]] == [0, 1, 0]
    assert [e["position"] for e in by_model["sasrec"]["epochs"]] == [1, 0, 1]
    ratio = recs[0]["summary"]["ratios"]["sasrec"]
    assert ratio["rounds"] == 2 and ratio["low"] <= ratio["ratio"] <= ratio["high"]
    assert "per-epoch cost" in res.stdout


def test_cost_refuses_a_single_model_with_one_line(tmp_path: Path) -> None:
    res = subprocess.run([sys.executable, "-m", "bench", "cost", "--models", "elcrec", "--dataset", TINY,
                          "--out", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and res.stderr.count("\n") == 1
