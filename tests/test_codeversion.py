"""Code versions: the source hash, comparisons, and the report's warning on mixed code. No torch."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from bench.errors import BenchError
from bench.results import codeversion as C
from bench.results.records import provenance
from bench.results.render import render_markdown
from bench.results.report import ReportConfig, build_report
from bench.results.schema import CodeChange, CodeVersion, Provenance, RunRecord
from tests.fixture_records import write_fixture

A = CodeVersion(commit="a" * 40, dirty=False, source_sha256="1" * 64)
B = CodeVersion(commit="b" * 40, dirty=True, source_sha256="2" * 64)


def rec(model: str, seed: int, git: CodeVersion, **extra: Any) -> RunRecord:
    return RunRecord(model=model, dataset="d", seed=seed, provenance=Provenance(git=git), **extra)


def test_the_source_hash_follows_the_sources_only(tmp_path: Path) -> None:
    (tmp_path / "bench").mkdir()
    (tmp_path / "models").mkdir()
    (tmp_path / "bench" / "a.py").write_text("x = 1\n")
    (tmp_path / "models" / "k.c").write_text("int x;\n")
    first = C.source_sha256(tmp_path)
    (tmp_path / "bench" / "notes.toml").write_text("not code")
    (tmp_path / "bench" / "__pycache__").mkdir()
    (tmp_path / "bench" / "__pycache__" / "a.py").write_text("stale")
    assert C.source_sha256(tmp_path) == first
    (tmp_path / "models" / "k.c").write_text("int y;\n")
    assert C.source_sha256(tmp_path) != first


def test_the_run_hash_leaves_out_the_results_code_only(tmp_path: Path) -> None:
    """A report change must not block a resume or split a comparison; a training change must."""
    for d in ("bench/results", "models"):
        (tmp_path / d).mkdir(parents=True)
    (tmp_path / "bench" / "train.py").write_text("lr = 1e-3\n")
    (tmp_path / "bench" / "results" / "report.py").write_text("title = 'a'\n")
    (tmp_path / "bench" / "results_extra.py").write_text("x = 1\n")  # a sibling, not the package
    run, src = C.source_sha256(tmp_path, run_only=True), C.source_sha256(tmp_path)
    (tmp_path / "bench" / "results" / "report.py").write_text("title = 'b'\n")
    assert C.source_sha256(tmp_path, run_only=True) == run and C.source_sha256(tmp_path) != src
    for path in ("bench/train.py", "bench/results_extra.py"):
        (tmp_path / path).write_text("changed = True\n")
        assert C.source_sha256(tmp_path, run_only=True) != run
        run = C.source_sha256(tmp_path, run_only=True)


def test_records_carry_the_source_hash() -> None:
    git = provenance().git  # the process's code version, fixed at its first use (a run's start)
    assert git == C.code_version() and git.source_sha256 is not None and len(git.source_sha256) == 64
    assert git.commit and git.dirty is not None  # a git checkout
    assert git.run_sha256 is not None and git.run_sha256 != git.source_sha256


def test_same_code_compares_sources_and_else_clean_commits() -> None:
    assert C.same_code(A, replace(A, commit="c" * 40))  # a docs-only commit: the same code
    assert not C.same_code(A, B) and not C.same_code(A, None)
    legacy = CodeVersion(commit="a" * 40, dirty=False)
    assert C.same_code(legacy, replace(legacy)) and not C.same_code(replace(legacy, dirty=True),
                                                                     replace(legacy, dirty=True))
    assert C.describe(B) == "bbbbbbb+dirty (sources 222222222222)" and C.describe(None) == "unknown"
    report_edit = (replace(A, run_sha256="9" * 64), replace(B, run_sha256="9" * 64))  # results code only
    assert C.same_code(*report_edit) and not C.same_code(replace(A, run_sha256="9" * 64),
                                                         replace(A, run_sha256="8" * 64))
    assert not C.same_code(replace(A, run_sha256="9" * 64), B)  # one without a run hash: the sources decide


def test_code_warnings() -> None:
    assert C.code_warnings([rec("elcrec", 1, A), rec("iclrec", 1, replace(A, commit="c" * 40))]) == []
    mixed = C.code_warnings([rec("elcrec", 1, A), rec("iclrec", 1, A), rec("iclrec", 2, B)])
    assert mixed == ["these runs come from 2 code versions (aaaaaaa (sources 111111111111): elcrec s1, iclrec s1; "
                     "bbbbbbb+dirty (sources 222222222222): iclrec s2): differences may be the code's, not the models'"]
    dirty = CodeVersion(commit="a" * 40, dirty=True)
    assert "cannot be checked" in C.code_warnings([rec("elcrec", 1, dirty), rec("iclrec", 1, dirty)])[0]
    a9, b9 = replace(A, run_sha256="9" * 64), replace(B, dirty=False, run_sha256="9" * 64)
    assert C.code_warnings([rec("elcrec", 1, a9), rec("iclrec", 1, b9)]) == []  # only results code differs
    assert "2 code versions" in C.code_warnings([rec("elcrec", 1, a9), rec("iclrec", 1, b9),
                                                 rec("sasrec", 1, B)])[0]  # an older record: by sources
    resumed = rec("elcrec", 1, A, code_change=CodeChange(state_code=B, code=A, allowed=True))
    assert C.code_warnings([resumed]) == ["elcrec s1 was resumed under other code (bbbbbbb+dirty (sources "
                                          "222222222222) -> aaaaaaa (sources 111111111111), --allow-code-change)"]


def test_the_report_warns_when_a_comparison_mixes_code_versions(tmp_path: Path) -> None:
    path = write_fixture(tmp_path) / "records.jsonl"
    cfg = ReportConfig(records=(tmp_path,), plots=False)
    assert "Warning" not in render_markdown(build_report(cfg))
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    for r in lines:
        if r.get("model") == "iclrec" and r.get("seed") == 2:
            r["provenance"] = {**r["provenance"], "git": B.to_json()}
    path.write_text("".join(json.dumps(r) + "\n" for r in lines))
    md = render_markdown(build_report(cfg))
    assert ("> **Warning:** these runs come from 2 code versions (0000000: elcrec s1, elcrec s2, elcrec s3, "
            "iclrec s1, iclrec s3; ") in md
    assert "bbbbbbb+dirty (sources 222222222222): iclrec s2)" in md


def test_sidecars_round_trip_and_resume_checks(tmp_path: Path) -> None:
    state = tmp_path / "abc-s1.pt"
    assert C.resume_check(state, allow=False) is None  # nothing to resume
    state.write_bytes(b"state")
    C.write_sidecar(state, {"epoch": 3})
    side = C.read_sidecar(state)
    assert side is not None and side["epoch"] == 3 and C.sidecar_code(side) == C.code_version()
    assert C.resume_check(state, allow=False) is None  # same code
    report_edit = {**side["code"], "commit": "c" * 40, "source_sha256": "e" * 64}  # bench/results/ changed
    C.sidecar_path(state).write_text(json.dumps({**side, "code": report_edit}))
    assert C.resume_check(state, allow=False) is None
    C.sidecar_path(state).write_text(json.dumps({**side, "code": {**report_edit, "run_sha256": "e" * 64}}))
    with pytest.raises(BenchError, match=r"refusing to resume abc-s1\.pt: it was saved by code ccccccc"):
        C.resume_check(state, allow=False)
