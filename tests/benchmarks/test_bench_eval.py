"""Speed and memory of evaluation (pytest-benchmark; run with `tox -e bench` or --benchmark-only).

Targets (issue 2, 2-core CPU): full ranking of Beauty's test set <= 1.5 s; a whole `bench eval`
process <= 6 s wall with peak RSS <= 600 MB. They are reported, not asserted in unit tests.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.data import load_dataset
from bench.evaluate import evaluate
from bench.modelio import load_checkpoint


def test_full_ranking_beauty(benchmark: pytest.FixtureRequest, checkpoints: Path, shared_data: Path) -> None:
    data = load_dataset("beauty", shared_data)
    model = load_checkpoint("elcrec", checkpoints / "ELCRec-Beauty-1.pt", data.item_size)
    res = benchmark(evaluate, model, data, "test", "zero")
    assert f"{res.metrics['NDCG@5']:.4f}" == "0.0355"


def test_eval_process_beauty(benchmark: pytest.FixtureRequest, checkpoints: Path, shared_data: Path) -> None:
    cmd = [sys.executable, "-m", "bench", "eval", "--model", "elcrec", "--dataset", "beauty",
           "--checkpoint", str(checkpoints / "ELCRec-Beauty-1.pt"), "--data-dir", str(shared_data), "--json"]
    done = benchmark.pedantic(subprocess.run, args=(cmd,), kwargs={"check": True, "capture_output": True}, rounds=3)
    # the process's own peak (getrusage of children would count this test process's memory too)
    peak_mb = json.loads(done.stdout)["peak_rss_mb"]
    benchmark.extra_info["peak_rss_mb"] = peak_mb
    print(f"\npeak RSS of the eval process: {peak_mb:.0f} MB")
