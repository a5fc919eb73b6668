"""The scaling study as `bench reproduce` runs it: the shipped experiment file, one-line errors, a tiny study end
to end (records, a kill, a resume that repeats no point), and points that cannot fit recorded, not crashing."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from bench.cli import main
from bench.perf.scale_point import verdict
from bench.perf.scaling import key, latest, load_study, points
from bench.results.scaling import read_points

REPO = Path(__file__).resolve().parent.parent
CLAIMS = REPO / "bench" / "claims" / "elcrec-scaling.toml"


def study_file(tmp: Path, body: str = "", models: str = '["elcrec", "iclrec"]', limit: float = 3.0,
               name: str = "tiny", shape: str = "parametric") -> Path:
    """A tiny study: 112 and 224 users, one timed batch, small k (k-means needs k <= users)."""
    path = tmp / f"{name}.toml"
    sets = [f'"{m}.k=8"' for m in ("elcrec", "iclrec") if m in models]
    path.write_text(f'kind = "scaling"\nname = "tiny"\nmodels = {models}\nscales = [0.005, 0.01]\nbatches = 1\n'
                    f'warmup = 0\neval_users = 32\nthreads = 1\nshape = "{shape}"\nset = [{", ".join(sets)}]\n'
                    f'memory_limit_gb = {limit}\nclaims = "{CLAIMS}"\nout = "{tmp / "runs"}"\n'
                    f'report = "{tmp / "report"}"\n{body}')
    return path


def test_the_shipped_experiment_covers_1x_to_100x_for_the_three_models() -> None:
    study = load_study(REPO / "experiments" / "scaling.toml")
    assert study.models == ("elcrec", "iclrec", "sasrec") and study.scales == (1.0, 3.0, 10.0, 30.0, 100.0)
    pts = points(study)
    assert len(pts) == 15 * study.repeats and pts[-1]["dataset"].startswith("beauty-like:scale=100,")
    assert study.claims is not None and study.claims.is_file()
    assert all(p["hp"]["k"] == 256 for p in pts if p["model"] != "sasrec")  # Beauty's preset


@pytest.mark.parametrize(("body", "message"), [
    ("colour = 1\n", r"unknown key\(s\) colour"),
    ('device = "tpu"\n', "device must be cpu or cuda"),
    ("repeats = 0\n", "repeats must be an integer >= 1"),
])
def test_bad_scaling_files_are_one_line_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str], body: str,
                                               message: str) -> None:
    rc = main(["reproduce", str(study_file(tmp_path, body)), "--dry-run"])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1 and err.startswith("error: ") and re.search(message, err)


def test_unknown_models_shapes_kinds_and_scales_are_one_line_errors(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    cases = [(study_file(tmp_path, models='["nosuchmodel"]', name="model"), "unknown model 'nosuchmodel'"),
             (study_file(tmp_path, shape="round", name="shape"), "shape must be one of")]
    bad_kind = tmp_path / "kind.toml"
    bad_kind.write_text('kind = "sweep"\n')
    cases.append((bad_kind, "unknown kind 'sweep'"))
    scales = study_file(tmp_path, name="scales")
    scales.write_text(scales.read_text().replace("scales = [0.005, 0.01]", "scales = [0, 1]"))
    cases.append((scales, "scales must be a non-empty list of positive numbers"))
    for path, message in cases:
        assert main(["reproduce", str(path), "--dry-run"]) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and message in err, err


def _records(tmp: Path) -> list[dict[str, Any]]:
    return read_points(tmp / "runs")


def _kill_after_first_point(path: Path, tmp: Path) -> int:
    """Starts the study as its own command and SIGTERMs it once a point is recorded; its exit code."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "bench", "reproduce", str(path)], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not _records(tmp) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout=60)


@pytest.mark.slow
def test_a_tiny_study_runs_resumes_after_a_kill_and_repeats_no_point(tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    path = study_file(tmp_path)
    assert _kill_after_first_point(path, tmp_path) == 128 + signal.SIGTERM
    first = _records(tmp_path)
    assert 1 <= len(first) < 4 and all(r["status"] == "ok" for r in first)
    assert main(["reproduce", str(path)]) == 0
    recs = _records(tmp_path)
    assert len(recs) == 4 and len({key(r) for r in recs}) == 4  # each point once: the kill left no record
    assert {r["id"] for r in first} <= {r["id"] for r in recs}
    for r in recs:
        assert r["status"] == "ok" and r["extrapolation"]["train_batches_timed"] == 1
        assert r["seconds"]["init_embedding_s"] > 0 and r["memory"]["peak_rss_mb"] > r["memory"]["rss_start_mb"]
        assert r["provenance"]["git"]["source_sha256"] and r["device"]["torch_threads"] == 1
    iclrec = [r for r in recs if r["model"] == "iclrec"]
    assert all(r["seconds"]["epoch_start_embedding_s"] > 0 for r in iclrec)  # its k-means at every epoch
    assert all(r["seconds"]["epoch_start_embedding_s"] == 0 for r in recs if r["model"] == "elcrec")
    assert main(["reproduce", str(path)]) == 0 and len(_records(tmp_path)) == 4  # nothing left to run
    capsys.readouterr()
    assert main(["reproduce", str(path), "--dry-run"]) == 0
    assert "total: 4 done" in capsys.readouterr().out
    md = (tmp_path / "report" / "report.md").read_text()
    assert "scaling-epoch-slope" in md and "**INCONCLUSIVE**" in md  # two sizes: no slope CI to judge
    # a fresh clone has the report's copy of the points, not the runs folder: nothing is measured again
    import shutil

    shutil.rmtree(tmp_path / "runs")
    assert main(["reproduce", str(path), "--dry-run"]) == 0 and "total: 4 done" in capsys.readouterr().out
    assert not (tmp_path / "runs").exists()  # a dry run writes nothing
    assert main(["reproduce", str(path)]) == 0
    assert "restored 4 measured points" in capsys.readouterr().err
    assert sorted(r["id"] for r in _records(tmp_path)) == sorted(r["id"] for r in recs)


def test_points_that_cannot_fit_are_recorded_and_the_study_goes_on(tmp_path: Path) -> None:
    """A limit below what importing torch takes: the first point is stopped at the limit, the larger one
    is not started; both are recorded, the study ends normally, and a rerun keeps them."""
    path = study_file(tmp_path, models='["sasrec"]', limit=0.15)
    assert main(["reproduce", str(path)]) == 0
    small, big = sorted(_records(tmp_path), key=lambda r: r["scale"])
    assert small["status"] == "out_of_memory" and re.search(r"stopped in phase \w+ at RSS", small["reason"])
    assert big["status"] == "too_big" and "a smaller scale of sasrec (0.005x) did not fit" in big["reason"]
    assert main(["reproduce", str(path)]) == 0 and len(_records(tmp_path)) == 2


def test_a_point_predicted_above_the_limit_is_not_started(tmp_path: Path) -> None:
    study = load_study(study_file(tmp_path, models='["sasrec"]'))
    small, big = points(study)
    done = {key(small): {**small, "status": "ok", "users": 112, "wall_s": 10.0,
                         "memory": {"peak_rss_mb": 1500.0, "rss_start_mb": 300.0}}}
    action, why = verdict(big, done, limit_mb=2900.0)  # 2.6 GiB + 10% > 2.83 GiB
    assert action == "too_big" and "predicted peak RSS 2.6 GiB" in why  # 300 + 1200 x 224 / 112 MiB
    assert verdict(big, done, limit_mb=4000.0)[0] == "run"
    assert verdict(small, done, limit_mb=10.0)[0] == "keep" and latest(study.out) == {}
