from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

from bench.metrics import per_user_metrics
from bench.results.records import append_record, read_records
from bench.results.schema import CurvePoint, Device, Provenance, RecordedProtocol, RunRecord

PROTO = RecordedProtocol(hash="p1", seen_items="zero", dataset_sha256="x")
PROV = Provenance(machine="x86_64", cpu_count=2)


def gate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bench", "gate", *args], capture_output=True, text=True, timeout=120)


def write(out: Path, ranks: np.ndarray, epoch_s: list[float], proto: RecordedProtocol = PROTO, threads: int = 2,
          kernels: str = "native", seeds: int = 3, spread: float = 0.02) -> Path:
    """`seeds` runs of one model; each seed moves a few users' ranks and the machine's speed a little."""
    for seed in range(1, seeds + 1):
        rng = np.random.default_rng(seed)
        r = np.maximum(1, ranks + (rng.random(len(ranks)) < 0.02) * rng.integers(-1, 2, len(ranks)))
        pu = per_user_metrics(r)
        speed = 1 + spread * (seed - 2)
        curve = tuple(CurvePoint(epoch=i, valid={"NDCG@20": 0.1}, seconds={"train": s * speed}, elapsed=0.0)
                      for i, s in enumerate(epoch_s))
        append_record(out, RunRecord(model="elcrec", dataset="toy", seed=seed, protocol=proto, curve=curve,
                                     metrics={k: float(v.mean()) for k, v in pu.items()}, provenance=PROV,
                                     device=Device(type="cpu", name="t", torch_threads=threads, kernels=kernels)), pu)
    return out


RANKS = np.random.default_rng(0).geometric(0.08, size=3000)
TIMES = [1.0, 1.02, 0.98, 1.01, 0.99, 1.03]


def test_identical_records_pass(tmp_path: Path) -> None:
    res = gate("--baseline", str(write(tmp_path / "b", RANKS, TIMES)), "--current", str(write(tmp_path / "c", RANKS,
                                                                                                   TIMES)))
    assert res.returncode == 0, res.stdout
    assert "[pass] elcrec/toy NDCG@10: baseline" in res.stdout and "gate: pass" in res.stdout


def test_another_thread_count_is_warned_about_but_judged(tmp_path: Path) -> None:
    res = gate("--baseline", str(write(tmp_path / "b", RANKS, TIMES)), "--current",
               str(write(tmp_path / "c", RANKS, TIMES, threads=1)))
    assert res.returncode == 0 and "gate: pass" in res.stdout
    assert "warning: the baseline ran with [2] torch threads per run, the current records with [1]" in res.stdout
    same = gate("--baseline", str(tmp_path / "b"), "--current", str(write(tmp_path / "d", RANKS, TIMES)))
    assert "torch threads" not in same.stdout and "kernels" not in same.stdout


def test_other_kernels_are_warned_about_but_judged(tmp_path: Path) -> None:
    res = gate("--baseline", str(write(tmp_path / "b", RANKS, TIMES)), "--current",
               str(write(tmp_path / "c", RANKS, TIMES, kernels="torch")))
    assert res.returncode == 0 and "gate: pass" in res.stdout
    said = "warning: the baseline's training passes ran ['native'] kernels, the current records' ['torch']"
    assert said in res.stdout


def test_significant_quality_drop_is_a_regression(tmp_path: Path) -> None:
    worse = RANKS * 3
    res = gate("--baseline", str(write(tmp_path / "b", RANKS, TIMES)), "--current", str(write(tmp_path / "c", worse,
                                                                                                TIMES)))
    assert res.returncode == 1 and "[REGRESSION] elcrec/toy NDCG@10" in res.stdout
    assert "Holm-corrected: overall false-failure rate <= 0.05" in res.stdout


def test_one_seed_a_side_never_fails_the_gate(tmp_path: Path) -> None:
    res = gate("--baseline", str(write(tmp_path / "b", RANKS, TIMES, seeds=1)), "--current",
               str(write(tmp_path / "c", RANKS * 3, [3 * t for t in TIMES], seeds=1)))
    assert res.returncode == 3, res.stdout
    assert "[inconclusive] elcrec/toy NDCG@10" in res.stdout and "not tested: 1 seed(s)" in res.stdout


def test_small_drop_within_the_margin_passes(tmp_path: Path) -> None:
    slightly = RANKS.copy()
    slightly[:30] += 1
    res = gate("--baseline", str(write(tmp_path / "b", RANKS, TIMES)), "--current",
               str(write(tmp_path / "c", slightly, TIMES)), "--max-quality-drop", "0.05")
    assert res.returncode == 0, res.stdout


def test_cost_regression_needs_significance_and_margin(tmp_path: Path) -> None:
    b = write(tmp_path / "b", RANKS, TIMES)
    slow = gate("--baseline", str(b), "--current", str(write(tmp_path / "c", RANKS, [2 * t for t in TIMES])))
    assert slow.returncode == 1 and "[REGRESSION] elcrec/toy epoch time" in slow.stdout
    within = gate("--baseline", str(b), "--current", str(write(tmp_path / "d", RANKS, [1.3 * t for t in TIMES])))
    assert within.returncode == 0
    noisy = gate("--baseline", str(b), "--current", str(write(tmp_path / "e", RANKS, [1.6] * 6, spread=0.6)))
    assert noisy.returncode == 3 and "[inconclusive] elcrec/toy epoch time" in noisy.stdout


def test_other_protocol_warns_and_is_inconclusive(tmp_path: Path) -> None:
    res = gate("--baseline", str(write(tmp_path / "b", RANKS, TIMES)), "--current",
               str(write(tmp_path / "c", RANKS, TIMES, replace(PROTO, hash="p2"))))
    assert res.returncode == 3 and "warning: elcrec/toy: protocol fingerprint" in res.stdout


def test_update_baseline_is_explicit(tmp_path: Path) -> None:
    cur = write(tmp_path / "c", RANKS, TIMES)
    res = gate("--baseline", str(tmp_path / "base"), "--current", str(cur), "--update-baseline")
    assert res.returncode == 0 and len(read_records([tmp_path / "base"])) == 3
    assert gate("--baseline", str(tmp_path / "base"), "--current", str(cur)).returncode == 0


def test_missing_baseline_is_a_usage_error(tmp_path: Path) -> None:
    res = gate("--baseline", str(tmp_path / "nope"), "--current", str(tmp_path))
    assert res.returncode == 2 and "no such record file or directory" in res.stderr


def test_a_zero_learning_rate_model_fails_the_gate(tmp_path: Path) -> None:
    run = [sys.executable, "-m", "bench", "run", "--models", "sasrec", "--profile", "smoke", "--datasets",
           "synthetic:users=300,items=60,intents=3", "--epochs", "4", "--seeds", "1,2,3"]
    assert subprocess.run([*run, "--out", str(tmp_path / "base")], capture_output=True).returncode == 0
    assert subprocess.run([*run, "--set", "sasrec.lr=0", "--out", str(tmp_path / "cur")],
                          capture_output=True).returncode == 0
    res = gate("--baseline", str(tmp_path / "base"), "--current", str(tmp_path / "cur"))
    assert res.returncode == 1 and "[REGRESSION] sasrec/synthetic" in res.stdout
    assert "compared with sasrec[lr=0]: the settings differ" in res.stdout + res.stderr
