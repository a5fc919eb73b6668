"""The memory sampler files samples under the running phase: averages and peaks per phase, and the
timeline of one epoch."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from bench.memory import MemorySampler
from bench.results.records import read_records
from bench.results.schema import RunRecord


def test_a_phase_that_holds_more_memory_shows_it_in_its_average_and_peak() -> None:
    mem = MemorySampler(interval=0.02, timeline_epoch=1).start()
    mem.epoch, mem.phase = 0, "validation"
    time.sleep(0.3)
    mem.epoch, mem.phase = 1, "train"
    big = np.ones(400 * 2**20 // 8)  # 400 MiB, touched
    time.sleep(0.3)
    del big
    mem.phase = "validation"
    time.sleep(0.2)
    mem.stop()
    out = mem.summary()
    train, val = out["by_phase"]["train"], out["by_phase"]["validation"]
    assert train["samples"] >= 5 and val["samples"] >= 5
    assert train["peak_rss_mb"] - val["avg_rss_mb"] > 300  # the array, seen in the train phase only
    assert val["avg_rss_mb"] <= val["peak_rss_mb"] and "gpu_allocated_mb" not in str(out["by_phase"])
    tl = out["timeline"]
    assert tl["epoch"] == 1 and tl["t"][0] == 0.0 and set(tl["phase"]) == {"train", "validation"}
    assert max(tl["rss_mb"]) - min(tl["rss_mb"]) > 300


def test_gpu_counters_are_sampled_when_given() -> None:
    mem = MemorySampler(interval=0.02, gpu=lambda: (3 * 2**20, 5 * 2**20)).start()
    mem.phase = "train"
    time.sleep(0.15)
    mem.stop()
    train = mem.summary()["by_phase"]["train"]
    assert train["avg_gpu_allocated_mb"] == 3 and train["peak_gpu_reserved_mb"] == 5


def test_a_run_records_its_memory_by_phase_and_the_report_plots_its_timeline(tmp_path: Path) -> None:
    out, rep = tmp_path / "runs", tmp_path / "report"
    for args in (["run", "--profile", "smoke", "--models", "sasrec", "--epochs", "2", "--out", str(out)],
                 ["report", str(out), "--out", str(rep)]):
        res = subprocess.run([sys.executable, "-m", "bench", *args], capture_output=True, text=True, timeout=600)
        assert res.returncode == 0, res.stderr
    (rec,) = read_records([out])
    assert isinstance(rec, RunRecord)
    mem = rec.memory
    assert mem.sampled and mem.sampled.by_phase["train"]["samples"] >= 1
    assert mem.sampled.timeline and mem.sampled.timeline["epoch"] == 1
    assert mem.rss_avg_mb and mem.peak_rss_mb and 0 < mem.rss_avg_mb <= mem.peak_rss_mb * 1.01  # one process
    plot = next(rep.glob("memory-*.png"))
    assert plot.stat().st_size > 1000 and plot.name in (rep / "report.md").read_text()
