from __future__ import annotations

import json
import multiprocessing as mp
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from bench.errors import BenchError
from bench.results.records import RECORDS_FILE, append_record, load_per_user, read_records, save_copies
from bench.results.schema import (
    SCHEMA_VERSION,
    CodeChange,
    CodeVersion,
    CostEpoch,
    CostRecord,
    CurvePoint,
    Device,
    EvalRecord,
    FailureRecord,
    Memory,
    MemorySamples,
    Provenance,
    Record,
    RecordedProtocol,
    RunRecord,
    Timing,
    parse_record,
)
from bench.spec import RunSpec, TrainConfig

REPO = Path(__file__).resolve().parent.parent
COMMITTED = sorted(p.relative_to(REPO) for p in (REPO / "reports").rglob(RECORDS_FILE))


def _writer(args: tuple[str, int]) -> None:
    out, worker = args
    for i in range(20):
        append_record(Path(out), FailureRecord(model=f"w{worker}", dataset="d", seed=i, reason="x" * 5000))


def test_concurrent_appends_never_interleave(tmp_path: Path) -> None:
    with mp.get_context("fork").Pool(4) as pool:
        pool.map(_writer, [(str(tmp_path), w) for w in range(4)])
    recs = read_records([tmp_path])
    assert len(recs) == 80 and len({r.id for r in recs}) == 80


def test_sidecar_round_trip(tmp_path: Path) -> None:
    arrays = {"NDCG@5": np.array([0.5, 0.0]), "rank": np.array([3, 40])}
    append_record(tmp_path, EvalRecord(model="m", dataset="d"), arrays)
    (rec,) = read_records([tmp_path])
    back = load_per_user(rec)
    assert np.array_equal(back["NDCG@5"], arrays["NDCG@5"]) and np.array_equal(back["rank"], arrays["rank"])


def test_a_torn_last_line_is_skipped_but_a_bad_middle_line_is_an_error(tmp_path: Path) -> None:
    append_record(tmp_path, EvalRecord(model="m", dataset="d"))
    f = tmp_path / "records.jsonl"
    with f.open("a") as fh:
        fh.write('{"schema": 2, "kind": "ev')  # a writer killed mid-line
    assert len(read_records([tmp_path])) == 1
    append_record(tmp_path, EvalRecord(model="m", dataset="d"))  # the next writer cuts the torn tail first
    assert len(read_records([tmp_path])) == 2
    with f.open("a") as fh:
        fh.write("not json\n")
    append_record(tmp_path, EvalRecord(model="m", dataset="d"))
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


# ---------------------------------------------------------------- the schema

PROV = Provenance(host="h", platform="Linux", machine="x86_64", cpu="AMD EPYC", cpu_count=2, python="3.11.7",
                  libraries={"torch": "2.13.0+cpu", "faiss-cpu": None},
                  git=CodeVersion(commit="a" * 40, dirty=False, source_sha256="1" * 64))
PROTO = RecordedProtocol(hash="p1", dataset="toy", dataset_sha256="ab" * 32, seen_items="zero", split="loo",
                         candidates="all", ties="pessimistic", cutoffs=(5, 10, 20), max_len=50)
DEVICE = Device(type="cpu", name="AMD EPYC", torch_threads=2, kernels="native")
MEMORY = Memory(peak_rss_mb=900.5, rss_avg_mb=850.0, gpu_peak_by_phase={"train": {"allocated": 5, "reserved": 8}},
                sampled=MemorySamples(interval_s=0.1, by_phase={"train": {"samples": 3, "avg_rss_mb": 850.0}},
                                      timeline={"epoch": 1, "t": [0.0, 0.1], "rss_mb": [849.0, 851.0]}))
CONFIG = {"model": "elcrec", "dataset": "toy", "seed": 1, "hp": {"k": 8}, "train": {"epochs": 2}, "device": "cpu",
          "data_dir": None, "threads": 2, "config_hash": "c0ffee"}
EXAMPLES: list[Record] = [
    RunRecord(model="elcrec", dataset="toy", seed=1, provenance=PROV, attempt="a1", config_hash="c0ffee",
              config=CONFIG, resumed=True, code_change=CodeChange(state_code=None, code=PROV.git),
              metrics={"NDCG@10": 0.25}, protocol=PROTO, per_user_file="per_user/x.npz", device=DEVICE, memory=MEMORY,
              dataset_sha256="ab" * 32, epochs_run=2, best_epoch=1, best_valid_ndcg20=0.3, stop_reason="max_epochs",
              curve=(CurvePoint(epoch=0, elapsed=1.5, seconds={"train": 1.5}, losses={"loss": 2.0},
                                valid={"NDCG@20": 0.2, "HR@5": 0.1}),),
              timing=Timing(setup_s=0.1, train_total_s=3.0, time_to_best_s=3.0, test_s=0.2, epoch_mean_s=1.5,
                            train_sequences_per_s=400.0, phase_total_s={"train": 3.0}),
              train_config=TrainConfig(epochs=2), diagnostics={"nmi": 0.5}, model_info={"samples": "last"}),
    FailureRecord(model="sasrec", dataset="toy", seed=2, provenance=PROV, attempt="a2", config_hash="c1",
                  config=CONFIG, reason="RunFailure: nan loss", stderr_tail="Traceback ...", wall_s=12.5),
    EvalRecord(model="elcrec", dataset="beauty", provenance=PROV, metrics={"HR@5": 0.05}, protocol=PROTO,
               per_user_file="per_user/e.npz", device=DEVICE, memory=Memory(peak_rss_mb=344.6),
               checkpoint="ELCRec-Beauty-1.pt", checkpoint_sha256="56" * 32, n_users=22363),
    CostRecord(model="elcrec", dataset="beauty", seed=1, provenance=PROV, pair="p0", config_hash="c0ffee",
               config=CONFIG, models=("elcrec", "iclrec"), warmup=1, rounds=2, device=DEVICE, memory=MEMORY,
               epochs=(CostEpoch(epoch=0, epoch_s=29.9, round=0, position=0, warmup=True, started=1.7e9,
                                 seconds={"train": 25.9}, valid_ndcg20=0.0015, loadavg_before=(2.4, 3.5, 4.7),
                                 loadavg_after=(2.3, 3.4, 4.6)),),
               summary={"median_epoch_s": {"elcrec": 29.9}}),
]


@pytest.mark.parametrize("rec", EXAMPLES, ids=lambda r: type(r).__name__)
def test_every_kind_round_trips_through_its_json_line(rec: Record) -> None:
    line = json.loads(json.dumps(rec.to_json(), sort_keys=True))
    assert line["schema"] == SCHEMA_VERSION and (line["kind"], line["status"]) == (rec.kind, rec.status)
    assert parse_record(line, "here") == rec


@pytest.mark.parametrize("path", COMMITTED, ids=str)
def test_every_committed_records_file_loads(path: Path) -> None:
    recs = read_records([REPO / path])
    for rec in recs:  # and says the same in the current schema
        assert parse_record(json.loads(json.dumps(rec.to_json())), "again") == rec
    if recs and isinstance(recs[0], RunRecord | EvalRecord):
        assert recs[0].protocol.hash and recs[0].provenance.git and recs[0].metrics
    # a report's copy re-saves them: fields added within a schema version are left out while empty,
    # so a record of the current version keeps its bytes
    lines = (REPO / path / RECORDS_FILE if (REPO / path).is_dir() else REPO / path).read_text().splitlines()
    for rec, line in zip(recs, lines, strict=True):
        if json.loads(line)["schema"] == SCHEMA_VERSION:
            assert json.dumps(rec.to_json(), sort_keys=True, allow_nan=True) == line


def test_a_recorded_config_is_a_run_spec_with_the_recorded_hash() -> None:
    """The config hash decides which runs a repeated sweep skips: a spec must hash as the runner did."""
    configs = [r for p in COMMITTED for r in read_records([REPO / p]) if isinstance(r, RunRecord | CostRecord)]
    assert configs
    for rec in configs:
        spec = RunSpec.from_dict(rec.config)
        assert spec.as_dict() == rec.config and spec.config_hash == rec.config_hash
        assert replace(spec, seed=9, threads=1, data_dir="/x", allow_code_change=True).config_hash == rec.config_hash
        assert replace(spec, train={**spec.train, "epochs": 7}).config_hash != rec.config_hash


OLD_RUN = {  # a schema-1 run record of early code: no device, setup time, code version or train config
    "schema": 1, "kind": "run", "status": "ok", "id": "r1", "created": "2026-11-20T10:00:00+00:00", "model": "sasrec",
    "dataset": "beauty", "seed": 1, "config_hash": "f3fe66d86745", "metrics": {"NDCG@10": 0.03},
    "protocol": {"hash": "99b6", "seen_items": "zero", "dataset_sha256": "22"},
    "curve": [{"epoch": 0, "valid_NDCG@20": 0.01, "seconds": {"train": 30.0}, "elapsed": 31.0}],
    "epochs_run": 1, "best_epoch": 0, "stop_reason": "max_epochs",
    "timing": {"epoch_mean_s": 31.0, "train_total_s": 31.0, "time_to_best_s": 31.0},
    "memory": {"peak_rss_mb": 1300.0, "gpu_peak_by_phase": {}}, "provenance": {"machine": "x86_64", "cpu_count": 2}}


def test_a_schema_1_line_loads_with_defaults_and_is_written_back_as_the_current_schema(tmp_path: Path) -> None:
    (tmp_path / RECORDS_FILE).write_text(json.dumps(OLD_RUN) + "\n")
    (rec,) = read_records([tmp_path])
    assert isinstance(rec, RunRecord) and rec.curve[0].valid == {"NDCG@20": 0.01} and rec.memory.peak_rss_mb == 1300
    assert rec.device == Device() and rec.timing.setup_s is None and rec.train_config is None
    assert rec.provenance.git is None and rec.provenance.machine == "x86_64" and rec.resumed is None
    save_copies([rec], tmp_path / "copy")
    line = json.loads((tmp_path / "copy" / RECORDS_FILE).read_text())
    assert line["schema"] == SCHEMA_VERSION and line["device"]["type"] is None and line["timing"]["setup_s"] is None
    kept = [k for k in OLD_RUN if k not in ("schema", "memory", "timing", "provenance", "protocol", "curve")]  # + nulls
    assert [line[k] for k in kept] == [OLD_RUN[k] for k in kept] and line["memory"]["peak_rss_mb"] == 1300
    assert read_records([tmp_path / "copy"]) == [rec]


@pytest.mark.parametrize(("change", "message"), [
    ({"schema": 99}, "schema 99, this version reads 1 to 2; it was written by newer code"),
    ({"schema": None}, "schema None, this version reads 1 to 2"),
    ({"kind": "bench"}, "unknown record kind 'bench' with status 'ok'"),
    ({"status": "partial"}, "unknown record kind 'run' with status 'partial'"),
    ({"timing": {"epoch_s": 1.0}}, "run record.timing: unknown field(s) epoch_s"),
    ({"train_config": {"epochs": 0}}, "run record.train_config: out of range: epochs=0"),
    ({"id": None}, "a run record without id"),
    ({"curve": {"epoch": 0}}, "run record.curve: expected a list, got dict"),
])
def test_a_line_this_code_cannot_read_is_a_one_line_error_naming_file_and_line(
        tmp_path: Path, change: dict, message: str) -> None:
    (tmp_path / RECORDS_FILE).write_text(json.dumps(OLD_RUN) + "\n" + json.dumps({**OLD_RUN, **change}) + "\n")
    with pytest.raises(BenchError) as e:
        read_records([tmp_path])
    assert str(e.value).startswith(f"{tmp_path / RECORDS_FILE}:2: ") and message in str(e.value)
    assert "\n" not in str(e.value)


def test_append_returns_the_record_as_written(tmp_path: Path) -> None:
    rec = append_record(tmp_path, EXAMPLES[2], {"rank": np.array([1, 2])})
    assert isinstance(rec, EvalRecord) and rec.per_user_file == f"per_user/{rec.id}.npz" and rec.folder == tmp_path
    assert read_records([tmp_path]) == [rec] and replace(rec, per_user_file="per_user/e.npz") == EXAMPLES[2]
