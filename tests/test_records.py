from __future__ import annotations

import multiprocessing as mp
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bench.errors import BenchError
from bench.results.records import append_record, load_per_user, read_records


def _writer(args: tuple[str, int]) -> None:
    out, worker = args
    for i in range(20):
        append_record(Path(out), {"kind": "run", "worker": worker, "i": i, "pad": "x" * 5000})


def test_concurrent_appends_never_interleave(tmp_path: Path) -> None:
    with mp.get_context("fork").Pool(4) as pool:
        pool.map(_writer, [(str(tmp_path), w) for w in range(4)])
    recs = read_records([tmp_path])
    assert len(recs) == 80 and len({r["id"] for r in recs}) == 80


def test_sidecar_round_trip(tmp_path: Path) -> None:
    arrays = {"NDCG@5": np.array([0.5, 0.0]), "rank": np.array([3, 40])}
    append_record(tmp_path, {"kind": "eval"}, arrays)
    (rec,) = read_records([tmp_path])
    back = load_per_user(rec)
    assert np.array_equal(back["NDCG@5"], arrays["NDCG@5"]) and np.array_equal(back["rank"], arrays["rank"])


def test_a_torn_last_line_is_skipped_but_a_bad_middle_line_is_an_error(tmp_path: Path) -> None:
    append_record(tmp_path, {"kind": "eval"})
    f = tmp_path / "records.jsonl"
    with f.open("a") as fh:
        fh.write('{"schema": 1, "kind": "ev')  # a writer killed mid-line
    assert len(read_records([tmp_path])) == 1
    append_record(tmp_path, {"kind": "eval"})  # the next writer cuts the torn tail first
    assert len(read_records([tmp_path])) == 2
    with f.open("a") as fh:
        fh.write("not json\n")
    append_record(tmp_path, {"kind": "eval"})
    with pytest.raises(BenchError, match=r"records.jsonl:3: not a JSON record"):
        read_records([tmp_path])


def test_peak_rss_is_the_process_own_not_what_it_shared_with_its_parent() -> None:
    """A run launched from a big process (a notebook, `bench perf`) must not report that process's memory."""
    if not Path("/proc/self/status").exists():
        pytest.skip("needs /proc (Linux): elsewhere peak_rss_mb falls back to getrusage")
    ballast = np.ones(2**30 // 8)  # 1 GiB resident in this process, the parent
    code = "from bench.results.records import peak_rss_mb; print(peak_rss_mb())"
    child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert ballast.sum() == 2**30 // 8
    assert float(child.stdout) < 300  # a Python with numpy imported, not the parent's 1 GiB
