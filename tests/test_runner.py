from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from bench.errors import BenchError
from bench.results.records import load_per_user, read_records
from bench.results.schema import FailureRecord, RunRecord, Timing
from bench.runner import _summary_line, parse_sets

TINY = "synthetic:users=200,items=60,intents=3,seed=2"


def run(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bench", "run", *args], capture_output=True, text=True,
                          timeout=timeout)


def ok_runs(out: Path) -> list[RunRecord]:
    return [r for r in read_records([out]) if isinstance(r, RunRecord)]


def test_set_expands_lists_into_a_grid() -> None:
    grid = parse_sets(("elcrec.k=4,8", "*.lr=0.01,0"), ("elcrec", "sasrec"))
    assert len(grid) == 4
    assert grid[3]["elcrec"] == {"k": 8, "lr": 0} and grid[3]["sasrec"] == {"lr": 0}
    with pytest.raises(BenchError, match="not in --models"):
        parse_sets(("iclrec.k=4",), ("elcrec",))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "elcrec.kk=3"], "elcrec: unknown hyper-parameter(s) kk"),
        (["--set", "elcrec.k=abc"], "elcrec: k must be int, got 'abc'"),
        (["--set", "elcrec.dropout=1.5"], "elcrec: dropout and attn_dropout must be in [0, 1), got 1.5"),
        (["--set", "*.lr=-1"], "elcrec: out of range: lr=-1.0"),
        (["--jobs", "0"], "--jobs must be at least 1"),
        pytest.param(["--device", "cuda"], "--device cuda: no CUDA device is visible here",
                     marks=pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")),
        (["--datasets", "beauty", "--data-dir", "/nonexistent"], "--data-dir: /nonexistent/Beauty.txt does not exist"),
        (["--datasets", "synthetic:users=many"], "synthetic: option users needs a number, got 'many'"),
    ],
)
def test_bad_settings_are_a_one_line_usage_error_before_anything_runs(
    args: list[str], message: str, tmp_path: Path
) -> None:
    res = run("--models", "elcrec", "--datasets", TINY, *args, "--out", str(tmp_path))
    assert res.returncode == 2 and res.stderr.startswith(f"error: {message}")
    assert len(res.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "records.jsonl").exists() and not (tmp_path / "logs").exists()


def test_same_seed_same_metrics_other_seed_differs_and_reruns_skip(tmp_path: Path) -> None:
    args = ["--models", "sasrec", "--datasets", TINY, "--epochs", "2", "--profile", "smoke"]
    a, b = tmp_path / "a", tmp_path / "b"
    assert run(*args, "--seeds", "1,2", "--out", str(a)).returncode == 0
    assert run(*args, "--seeds", "1", "--out", str(b)).returncode == 0
    ra = {r.seed: r for r in ok_runs(a)}
    (rb,) = ok_runs(b)
    assert rb.metrics == ra[1].metrics and rb.curve[-1].losses == ra[1].curve[-1].losses
    assert ra[2].metrics != ra[1].metrics
    again = run(*args, "--seeds", "1,2", "--out", str(a))
    assert "2 of 2 runs already finished" in again.stderr and len(ok_runs(a)) == 2
    rec = ra[1]
    assert set(rec.timing.phase_total_s) == {"batches", "clustering", "train", "validation"}
    assert rec.epochs_run == 2 and len(rec.curve) == 2 and rec.protocol.hash
    assert rec.provenance.git and rec.provenance.git.commit and rec.memory.peak_rss_mb
    assert rec.config["train"] == {"epochs": 2, "patience": 10, "batch_size": 64}  # the smoke profile's
    assert rec.config["config_hash"] == rec.config_hash
    cpu = rec.provenance.cpu  # the model name where Linux has one ("x86_64" says nothing)
    assert cpu and cpu == rec.device.name
    if "model name" in Path("/proc/cpuinfo").read_text():
        assert cpu != rec.provenance.machine
    assert load_per_user(rec)["NDCG@10"].shape == (200,)


def test_a_killed_run_resumes_and_ends_exactly_like_an_uninterrupted_one(tmp_path: Path) -> None:
    args = ["--models", "elcrec", "--datasets", TINY, "--epochs", "6", "--set", "elcrec.k=3", "--profile", "smoke"]
    full, killed = tmp_path / "full", tmp_path / "killed"
    assert run(*args, "--threads", "2", "--out", str(full)).returncode == 0
    proc = subprocess.Popen([sys.executable, "-m", "bench", "run", *args, "--threads", "2", "--out", str(killed)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    state_dir = killed / "state"
    while time.time() < deadline and not (state_dir.exists() and _epochs_saved(state_dir) >= 2):
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the whole sweep, worker included, mid-run
    proc.wait()
    assert _epochs_saved(state_dir) < 6 and not (killed / "records.jsonl").exists()
    # resumed with another thread count, it goes on with the one it started with: some reductions sum
    # in an order set by the thread count
    assert run(*args, "--threads", "1", "--out", str(killed)).returncode == 0
    (a,), (b,) = ok_runs(full), ok_runs(killed)
    assert b.resumed and not a.resumed
    assert a.device.torch_threads == b.device.torch_threads == 2
    assert any("with 2 torch threads, as the run started" in f.read_text() for f in (killed / "logs").iterdir())
    assert a.metrics == b.metrics and a.best_epoch == b.best_epoch
    assert [c.valid["NDCG@20"] for c in a.curve] == [c.valid["NDCG@20"] for c in b.curve]


def _epochs_saved(state_dir: Path) -> int:
    import torch

    files = list(state_dir.glob("*.pt"))
    if not files:
        return 0
    try:
        return int(torch.load(files[0], weights_only=False)["progress"].epoch)
    except Exception:  # being replaced right now
        return 0


def test_failures_become_records_and_the_sweep_goes_on(tmp_path: Path) -> None:
    res = run("--models", "sasrec,cl4srec,iclrec", "--datasets", TINY, "--epochs", "2", "--profile", "smoke",
              "--set", "sasrec.lr=1e30", "--set", "iclrec.k=1000", "--out", str(tmp_path))
    assert res.returncode == 1
    recs = {r.model: r for r in read_records([tmp_path])}
    sasrec, iclrec = recs["sasrec"], recs["iclrec"]
    assert isinstance(sasrec, FailureRecord) and "non-finite loss" in sasrec.reason
    assert sasrec.wall_s is None and sasrec.attempt and sasrec.resumed is False  # written by the worker
    # more centres than users only shows at run time: the worker crashes, its last error line is the reason
    assert isinstance(iclrec, FailureRecord) and "exited with code 1" in iclrec.reason
    assert "k-means needs at least k=1000 points" in iclrec.reason and iclrec.wall_s  # written by the runner
    assert iclrec.stderr_tail and "Traceback" in iclrec.stderr_tail  # a crash keeps its traceback
    assert iclrec.config_hash == iclrec.config["config_hash"] and iclrec.provenance.git
    assert isinstance(recs["cl4srec"], RunRecord)


def test_timeout_becomes_a_failure_record_with_stderr_tail(tmp_path: Path) -> None:
    res = run("--models", "sasrec", "--datasets", TINY, "--epochs", "300", "--set", "sasrec.patience=300",
              "--profile", "smoke", "--timeout", "3", "--out", str(tmp_path))
    assert res.returncode == 1
    (rec,) = read_records([tmp_path])
    assert isinstance(rec, FailureRecord) and rec.reason.startswith("timeout after 3 s")
    assert rec.stderr_tail is not None


def test_ray_executor_runs_the_same_function(tmp_path: Path) -> None:
    pytest.importorskip("ray")
    args = ["--models", "sasrec", "--datasets", TINY, "--epochs", "1", "--profile", "smoke", "--seeds", "1,2"]
    res = run(*args, "--executor", "ray", "--jobs", "2", "--out", str(tmp_path / "ray"))
    assert res.returncode == 0, res.stderr[-2000:]
    local = run(*args, "--seeds", "1", "--threads", "1", "--out", str(tmp_path / "local"))  # as each Ray task
    assert local.returncode == 0
    ray_recs = {r.seed: r for r in ok_runs(tmp_path / "ray")}
    assert len(ray_recs) == 2 and ray_recs[1].metrics == ok_runs(tmp_path / "local")[0].metrics
    again = run(*args, "--executor", "ray", "--out", str(tmp_path / "ray"))
    assert "2 of 2 runs already finished" in again.stderr


def test_a_collapsed_run_is_flagged_in_its_summary_line() -> None:
    def rec(cos: float) -> RunRecord:
        return RunRecord(model="gsasrec", dataset="beauty", seed=1, metrics={"NDCG@10": 0.0001, "HR@10": 0.0003},
                         epochs_run=3, stop_reason="max_epochs", timing=Timing(epoch_mean_s=60.0),
                         representation={"mean_cosine": cos})

    assert "collapsed? users' scoring vectors have mean cosine 0.990" in _summary_line(rec(0.99))
    assert "collapsed" not in _summary_line(rec(0.30))
