"""`bench reproduce`: experiment files, dry-run states, a real tiny study end to end, resume refusal."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import pytest

from bench.cli import main
from bench.data.datasets import manifest
from bench.experiment import duration, load_experiment, study_kind, validate
from bench.perf.scaling import load_study
from bench.results.claims import load_claims
from bench.results.records import append_record, read_records
from bench.results.schema import FailureRecord, RunRecord
from bench.runner import RunConfig, expand, state_file
from bench.spec import RunSpec
from tests.fixture_records import write_fixture

REPO = Path(__file__).resolve().parent.parent
TINY_DS = "synthetic:users=200,items=60,intents=3,seed=2"
CLAIMS = REPO / "bench" / "claims" / "elcrec.toml"
DATA = "synthetic:users=200,items=60,intents=3"


def experiment(tmp: Path, body: str = "", runs: str | None = None) -> Path:
    """A tiny smoke study: sasrec seed 1 (required), sasrec seed 2 (optional)."""
    if runs is None:
        runs = ('[[runs]]\nmodels = ["sasrec"]\nseeds = [1]\n'
                '[[runs]]\nname = "more"\noptional = true\nmodels = ["sasrec"]\nseeds = [2]\n')
    path = tmp / "tiny.toml"
    path.write_text(f'profile = "smoke"\ndatasets = ["{DATA}"]\nepochs = 2\nout = "{tmp / "runs"}"\n'
                    f'report = "{tmp / "report"}"\nclaims = "{CLAIMS}"\nformats = ["md", "json"]\n{body}{runs}')
    return path


def dry(path: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> list[str]:
    assert main(["reproduce", str(path), "--dry-run", *extra]) == 0
    return capsys.readouterr().out.splitlines()


def test_the_shipped_experiment_has_the_hashes_of_the_equivalent_bench_run() -> None:
    exp = load_experiment(REPO / "experiments" / "elcrec-beauty.toml")
    main_group = exp.groups[0]
    assert (main_group.cfg.models, main_group.cfg.seeds, main_group.optional) == (("elcrec", "iclrec", "sasrec"),
                                                                                (1, 2, 3), False)
    assert all(g.optional for g in exp.groups[1:]) and exp.claims == Path("bench/claims/elcrec.toml")
    ours = {(s.model, s.seed): s.config_hash for s in expand(main_group.cfg)}
    # what `bench run --profile paper --datasets beauty --models elcrec,iclrec --seeds 1 --threads 1` ran
    by_hand = expand(RunConfig(models=("elcrec", "iclrec"), datasets=("beauty",), seeds=(1,), profile="paper",
                               threads=1, jobs=2, data_dir=Path("/elsewhere")))
    assert all(ours[(s.model, s.seed)] == s.config_hash for s in by_hand)


def test_the_cross_domain_study_trains_video_only_in_its_own_group() -> None:
    """A group's own datasets replace the study's: the LastFM groups never train Video and the Video
    group trains nothing else, each run with the hash of the equivalent `bench run`."""
    exp = load_experiment(REPO / "experiments" / "cross-domain.toml")
    runs = {(g.name, s.dataset) for g, s in validate(exp)}
    assert {d for _, d in runs} == {"lastfm", "video"}
    assert all((d == "video") == ("Video" in name) for name, d in runs)
    video = next(g for g in exp.groups if "Video" in g.name)
    assert video.optional and video.cfg.datasets == ("video",)
    by_hand = expand(RunConfig(models=("elcrec",), datasets=("video",), seeds=(1,), profile="paper"))
    assert by_hand[0].config_hash in {s.config_hash for s in expand(video.cfg)}


@pytest.mark.parametrize("path", sorted((REPO / "experiments").glob("*.toml")), ids=lambda p: p.stem)
def test_every_shipped_experiment_loads_and_trains_both_sides_of_its_runnable_claims(
        path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A shipped study file that `bench reproduce` would refuse, or one whose required runs leave a
    runnable claim on its datasets without one of the two models it compares, fails here."""
    monkeypatch.chdir(REPO)  # study files name their paths from the repository root
    kind, _ = study_kind(path)
    if kind == "scaling":
        load_study(path)
        return
    exp = load_experiment(path)
    trained = {(s.model, s.dataset) for g, s in validate(exp) if not g.optional}
    assert all(p.is_dir() for p in exp.compare), exp.compare
    if exp.claims is None:
        return
    datasets = {d for _, d in trained}
    # models that the compared folders already have need no run of their own
    have = trained | {(r.model, r.dataset) for r in read_records(list(exp.compare)) if isinstance(r, RunRecord)}
    for c in load_claims(exp.claims):
        if not c.runnable or c.dataset not in datasets or c.kind not in ("quality", "cost"):
            continue
        sides = [c.subject] + ([] if c.reference == "runner-up" else [c.reference])
        assert all((m.split("[")[0], c.dataset) in have for m in sides), (c.id, sides)


@pytest.mark.parametrize(("body", "runs", "message"), [
    ("colour = 1\n", None, r"tiny.toml: unknown key\(s\) colour; allowed: name, "),
    ("", '[[runs]]\nmodels = ["sasrec"]\nseeds = [1]\nwhen = "now"\n', r"\[\[runs\]\] #1: unknown key\(s\) when"),
    ("", '[[runs]]\nmodels = ["nosuchmodel"]\nseeds = [1]\n', "unknown model 'nosuchmodel'"),
    ("", '[[runs]]\nmodels = ["sasrec"]\nseeds = "1"\n', "seeds must be a non-empty list of integers"),
    ("", '[[runs]]\nmodels = ["sasrec"]\n', r"missing key\(s\) seeds"),
    ("", "", r"missing key\(s\) runs"),
    ("jobs = 0\n", None, "--jobs must be at least 1"),
])
def test_bad_experiment_files_are_one_line_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str], body: str,
                                                  runs: str | None, message: str) -> None:
    path = experiment(tmp_path, body, runs)
    assert main(["reproduce", str(path), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: ")
    assert re.search(message, err), err


def test_bad_names_paths_and_syntax_are_one_line_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cases = {
        "datasets": ('datasets = ["movielens"]', "unknown dataset 'movielens'"),
        "claims": (f'claims = "{tmp_path / "none.toml"}"', "claims file"),
        "profile": ('profile = "huge"', "unknown profile 'huge'"),
        "toml": ("profile = ", "not valid TOML"),
    }
    for key, (line, message) in cases.items():
        path = experiment(tmp_path)
        text = path.read_text()
        path.write_text("\n".join(line if ln.startswith(f"{key} =") or (key == "toml" and ln.startswith("profile"))
                                  else ln for ln in text.splitlines()) + "\n")
        assert main(["reproduce", str(path), "--dry-run"]) == 2, key
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and message in err, (key, err)
    assert main(["reproduce", str(tmp_path / "absent.toml"), "--dry-run"]) == 2
    assert "no such experiment file" in capsys.readouterr().err


def _partial(path: Path, seed: int = 1) -> Path:
    """A real resume state of the run `seed` after 1 of its 2 epochs, as a killed worker leaves it."""
    from bench.train import train_run

    exp = load_experiment(path)
    spec = next(s for _, s in validate(exp) if s.seed == seed)
    state = state_file(exp.out, spec)
    state.parent.mkdir(parents=True)
    train_run(replace(spec, train={**spec.train, "epochs": 1}), state)
    return state


def test_the_dry_run_says_how_long_a_partial_run_may_take(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """At least the epochs early stopping needs if validation never improves again, at most the
    budget's, at the pace of the run's last epochs; from the state itself where older code wrote no
    pace beside it."""
    path = experiment(tmp_path)
    path.write_text(path.read_text().replace("epochs = 2\n", "epochs = 50\n"))
    state = _partial(path)
    side = json.loads(state.with_suffix(".json").read_text())
    patience = next(s for _, s in validate(load_experiment(path))).train_config.patience
    least = side["best_epoch"] + patience + 1 - 1  # one epoch done
    pace = side["epoch_s"]
    assert 0 < pace < 600 and least < 49
    line = dry(path, capsys)[1]
    assert f"partial at epoch 1 of 50 (best validation NDCG@20 {side['best_valid_ndcg20']:.4f} at epoch 1); " \
        f"{least}-49 epochs left, " in line and f" at {pace:.0f} s an epoch" in line
    # the study's total: the optional seed 2 has no state and trains at seed 1's pace (same settings)
    from bench.experiment import duration

    fresh = min(50, patience + 1)
    assert dry(path, capsys)[-1] == (
        f"time left at the paces measured so far: required groups {duration(least * pace)}-{duration(49 * pace)} "
        f"of training; all groups {duration((least + fresh) * pace)}-{duration(99 * pace)} of training")
    del side["epoch_s"]
    state.with_suffix(".json").write_text(json.dumps(side))
    assert f"{least}-49 epochs left, " in (older := dry(path, capsys)[1]) and f" at {pace:.0f} s an epoch" in older


def test_a_grids_runs_with_no_pace_take_their_models_pace_under_other_settings(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A sensitivity grid's first runs give the rest of the grid an estimate, said as such."""
    runs = ('[[runs]]\nmodels = ["sasrec"]\nseeds = [1]\n'
            '[[runs]]\nname = "grid"\nmodels = ["sasrec"]\nseeds = [1]\nset = ["sasrec.layers=2"]\n')
    path = experiment(tmp_path, runs=runs)
    path.write_text(path.read_text().replace("epochs = 2\n", "epochs = 50\n"))
    assert "required groups unknown (2 runs with no pace yet: no run of their model on their dataset has " \
        "trained an epoch)" in dry(path, capsys)[-1]
    state = _partial(path)  # the first group's run: one epoch at its pace
    side = json.loads(state.with_suffix(".json").read_text())
    spec = next(s for _, s in validate(load_experiment(path)))
    least = side["best_epoch"] + spec.train_config.patience + 1 - 1
    fresh = min(50, spec.train_config.patience + 1)
    from bench.experiment import duration

    pace = side["epoch_s"]
    assert dry(path, capsys)[-1] == (
        f"time left at the paces measured so far: required groups {duration((least + fresh) * pace)}-"
        f"{duration((49 + 50) * pace)} of training (1 of the runs at their model's pace under other settings); "
        f"all groups {duration((least + fresh) * pace)}-{duration((49 + 50) * pace)} of training "
        f"(1 of the runs at their model's pace under other settings)")


def test_a_study_of_new_datasets_takes_its_models_pace_elsewhere_scaled_to_their_size(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """No run of SASRec or BSARec has trained on Toys, but the study's compared folder has each on
    Beauty: the dry run estimates Toys at that pace times Toys' size over Beauty's, in users for a
    model with one training sequence per user, in interactions for one trained on every prefix."""
    fixture = read_records([write_fixture(tmp_path / "fixture")])
    run = next(r for r in fixture if isinstance(r, RunRecord))
    elsewhere = tmp_path / "elsewhere"
    for model, pace, samples in (("sasrec", 40.0, "sequence"), ("bsarec", 100.0, "prefixes")):
        timing = replace(run.timing, epoch_mean_s=pace)
        append_record(elsewhere, replace(run, id=model, model=model, dataset="beauty", config_hash=f"cfg-{model}",
                                         model_info={"samples": samples}, timing=timing))
    path = experiment(tmp_path, f'compare = ["{elsewhere}"]\n',
                      '[[runs]]\nmodels = ["sasrec", "bsarec"]\ndatasets = ["toys"]\nseeds = [1]\n')
    sizes = manifest()
    toys, beauty = sizes["toys"], sizes["beauty"]
    seconds = 2 * (40.0 * toys.users / beauty.users + 100.0 * toys.interactions / beauty.interactions)  # 2 epochs
    last = dry(path, capsys)[-1]
    assert f"required groups {duration(seconds)}-{duration(seconds)} of training" in last, last
    assert "(2 of the runs at their model's pace on other datasets, scaled by users" in last


def test_dry_run_states_and_a_refused_then_allowed_resume(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = experiment(tmp_path)
    lines = dry(path, capsys)
    assert lines[-2] == "total: 2 runs, 0 done, 0 partial, 2 to do; required groups: 1 runs, 0 done, 0 partial, 1 to do"
    assert lines[-1].startswith("time left at the paces measured so far: required groups unknown (1 run with no pace")
    assert lines[1].split()[:4] == ["sasrec", "synthetic", "seed", "1"] and lines[1].endswith("to do")
    assert lines[2].endswith("to do  [more, optional]")
    state = _partial(path)
    assert "partial at epoch 1 of 2" in dry(path, capsys)[1]
    # the code changes under the run: simulate it by editing the version its sidecar recorded
    side = json.loads(state.with_suffix(".json").read_text())
    side["code"] = {"commit": "d" * 40, "dirty": True, "source_sha256": "e" * 64}
    state.with_suffix(".json").write_text(json.dumps(side))
    assert "saved by code ddddddd+dirty (sources eeeeeeeeeeee): resuming needs --allow-code-change" \
        in dry(path, capsys)[1]
    assert main(["reproduce", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: refusing to resume ") and "ddddddd+dirty" in err and "--allow-code-change" in err
    assert not (tmp_path / "runs" / "records.jsonl").exists()  # nothing ran
    assert main(["reproduce", str(path), "--allow-code-change"]) == 0
    rec = read_records([tmp_path / "runs"])[-1]
    assert isinstance(rec, RunRecord) and rec.resumed and rec.epochs_run == 2
    from bench.results.records import cpu_model

    assert rec.segments and [(s["from_epoch"], s["cpu"]) for s in rec.segments] == [(0, cpu_model()), (1, cpu_model())]
    assert rec.code_change and rec.code_change.state_code and rec.code_change.state_code.commit == "d" * 40
    assert RunSpec.from_dict(rec.config).allow_code_change
    assert not state.exists() and not state.with_suffix(".json").exists()
    md = (tmp_path / "report" / "report.md").read_text()
    assert "sasrec s1 was resumed under other code (ddddddd+dirty" in md


def test_the_worker_refuses_a_resume_under_other_code_too(tmp_path: Path) -> None:
    from bench.worker import main as worker_main

    path = experiment(tmp_path)
    state = _partial(path)
    side = json.loads(state.with_suffix(".json").read_text())
    other = {**side["code"], "source_sha256": "f" * 64, "run_sha256": "f" * 64}  # training code changed
    state.with_suffix(".json").write_text(json.dumps({**side, "code": other}))
    spec = next(s for _, s in validate(load_experiment(path)) if s.seed == 1)
    assert worker_main([json.dumps(spec.as_dict()), str(tmp_path / "runs"), "attempt1"]) == 1
    rec = read_records([tmp_path / "runs"])[-1]
    assert isinstance(rec, FailureRecord) and rec.reason.startswith("BenchError: refusing to resume")
    assert rec.resumed and rec.attempt == "attempt1" and rec.config_hash == spec.config_hash
    assert state.exists()  # kept: the right code (or --allow-code-change) can still resume it


def test_a_tiny_study_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = experiment(tmp_path)
    assert main(["reproduce", str(path)]) == 0
    out = capsys.readouterr().out
    report = tmp_path / "report"
    assert f"{report / 'report.md'}\n" in out and (report / "summary.json").exists()
    progress = (report / "progress.md").read_text().splitlines()  # where each run stood beside the report
    rows = [r for r in progress if r.startswith("| sasrec |")]
    assert len(rows) == 2 and "| 1 |" in rows[0] and "done (best epoch" in rows[0]
    assert "| more (optional) |" in rows[1] and rows[1].endswith("| to do |")
    assert "Total: 2 runs, 1 done, 0 partial, 1 to do" in "\n".join(progress)
    lines = dry(path, capsys)
    assert "done (best epoch" in lines[1] and "test NDCG@5 0." in lines[1]
    assert lines[2].endswith("to do  [more, optional]")  # optional groups run with --extended only
    copied = read_records([report / "records"])
    assert [(r.model, r.seed, r.status) for r in copied] == [("sasrec", 1, "ok")]
    assert isinstance(copied[0], RunRecord) and copied[0].per_user_file
    assert (report / "records" / copied[0].per_user_file).is_file()
    # the tested weights stay beside the records: `bench eval` of them gives the record's test metrics
    (rec,) = read_records([tmp_path / "runs"])
    assert isinstance(rec, RunRecord) and rec.weights_file
    assert main(["eval", "--model", "sasrec", "--dataset", DATA, "--json",
                 "--checkpoint", str(tmp_path / "runs" / rec.weights_file)]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert {k: evaluated[k] for k in rec.metrics} == rec.metrics
    # the report folder alone rebuilds the same summary
    assert main(["report", str(report / "records"), "--out", str(tmp_path / "again"), "--format", "json",
                 "--claims", str(CLAIMS)]) == 0
    again = json.loads((tmp_path / "again" / "summary.json").read_text())
    assert again["summary"] == json.loads((report / "summary.json").read_text())["summary"]
    assert main(["reproduce", str(path), "--extended", "--report", str(tmp_path / "r2")]) == 0
    assert dry(path, capsys)[-2].startswith("total: 2 runs, 2 done")
    assert dry(path, capsys)[-1] == "time left at the paces measured so far: required groups done; all groups done"
    assert "Total: 2 runs, 2 done" in (tmp_path / "r2" / "progress.md").read_text()


def test_report_only_writes_the_report_of_a_study_in_progress_with_its_cost_records(tmp_path: Path) -> None:
    """No finished run yet, but the paired cost benchmark's records under <report>/cost judge the
    per-epoch cost claim; nothing is trained."""
    import shutil

    exp = tmp_path / "exp.toml"
    report = tmp_path / "report"
    claims = tmp_path / "claims.toml"
    claims.write_text('[[claim]]\nid = "c"\nkind = "cost"\nsubject = "elcrec"\nreference = "sasrec"\n'
                      f'dataset = "{TINY_DS}"\nmetric = "epoch_time"\ndirection = "lower"\nclaimed = 0.2\n'
                      'min_seeds = 2\nsource = "test"\n')
    exp.write_text(f'name = "t"\nprofile = "smoke"\ndatasets = ["{TINY_DS}"]\nclaims = "{claims}"\n'
                   f'out = "{tmp_path / "runs"}"\nreport = "{report}"\n\n[[runs]]\nmodels = ["elcrec", "sasrec"]\n'
                   'seeds = [1]\n')
    res = subprocess.run([sys.executable, "-m", "bench", "cost", "--models", "elcrec,sasrec", "--dataset", TINY_DS,
                          "--rounds", "2", "--out", str(report / "cost")], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    res = subprocess.run([sys.executable, "-m", "bench", "reproduce", str(exp), "--report-only"], capture_output=True,
                         text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    text = (report / "report.md").read_text()
    assert "`c`" in text and "2 paired rounds (bench cost on cpu" in text
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("*.pt"))  # nothing trained
    shutil.rmtree(report)


def test_a_carried_state_resumes_the_run_from_a_fresh_clone(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The runs folder is lost between machines; a state carried in the report folder is not: the
    study resumes from it (never over a newer state), and the carried copy goes once the run is done."""
    path = experiment(tmp_path)
    state = _partial(path)
    carried = tmp_path / "report" / "resume" / state.name
    assert main(["reproduce", str(path), "--report-only", "--carry-states"]) == 0
    assert "carried sasrec seed 1 at epoch 1" in capsys.readouterr().err
    assert carried.read_bytes() == state.read_bytes() and carried.with_suffix(".json").exists()
    state.with_suffix(".json").rename(tmp_path / "side.json")  # a newer state in the out folder wins
    newer = json.loads((tmp_path / "side.json").read_text())
    state.with_suffix(".json").write_text(json.dumps({**newer, "epoch": 2}))
    from bench.carry import restore_states

    spec = next(s for _, s in validate(load_experiment(path)) if s.seed == 1)
    assert restore_states(tmp_path / "report", tmp_path / "runs", [spec], {}) == []
    assert json.loads(state.with_suffix(".json").read_text())["epoch"] == 2
    import shutil

    shutil.rmtree(tmp_path / "runs")  # the machine is gone; the clone has the report folder
    line = dry(path, capsys)[1]
    assert "partial at epoch 1 of 2" in line and "restored when the study runs" in line
    assert main(["reproduce", str(path), "--carry-states"]) == 0
    assert "restored sasrec seed 1 at epoch 1" in capsys.readouterr().err
    (rec,) = read_records([tmp_path / "runs"])
    assert isinstance(rec, RunRecord) and rec.resumed and rec.epochs_run == 2
    assert not carried.exists() and not carried.with_suffix(".json").exists()  # done: dropped


def test_committed_records_count_as_done_on_a_fresh_clone(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The runs folder is lost; the report's committed records are not: the dry run calls those runs
    done, a report written from an empty runs folder keeps them, and running the study again restores
    the record (with its per-user arrays) instead of training the run again."""
    import shutil

    path = experiment(tmp_path)
    assert main(["reproduce", str(path)]) == 0
    report = tmp_path / "report"
    (committed,) = read_records([report / "records"])
    shutil.rmtree(tmp_path / "runs")
    capsys.readouterr()
    assert "done (best epoch" in dry(path, capsys)[1]
    assert main(["reproduce", str(path), "--report-only"]) == 0
    assert [r.id for r in read_records([report / "records"])] == [committed.id]
    assert "done (best epoch" in (report / "progress.md").read_text()
    capsys.readouterr()
    assert main(["reproduce", str(path)]) == 0
    assert "restored the record of sasrec seed 1 (done)" in capsys.readouterr().err
    (rec,) = read_records([tmp_path / "runs"])  # one record: restored, not trained again
    assert isinstance(rec, RunRecord) and rec.id == committed.id and rec.per_user_file
    assert (tmp_path / "runs" / rec.per_user_file).is_file()


def test_a_study_runs_all_its_groups_in_one_queue(tmp_path: Path) -> None:
    """With two job slots, the second group's run starts while the first group's runs: no slot idles
    at a group boundary (the old group-by-group sweeps ran them one after the other)."""
    # runs of several seconds each, so that a worker's start-up on a loaded machine (seconds of
    # imports) cannot let the first run end before the second one begins
    data = 'datasets = ["synthetic:users=3000,items=200,intents=3"]\n'
    runs = (f'[[runs]]\nname = "a"\nmodels = ["sasrec"]\nseeds = [1]\n{data}'
            f'[[runs]]\nname = "b"\nmodels = ["sasrec"]\nseeds = [2]\n{data}')
    path = experiment(tmp_path, "jobs = 2\nthreads = 1\n", runs)
    assert main(["reproduce", str(path)]) == 0
    recs = read_records([tmp_path / "runs"])
    assert sorted(r.seed for r in recs) == [1, 2]
    spans = []
    for r in recs:
        assert isinstance(r, RunRecord)
        end = datetime.fromisoformat(r.created).timestamp()
        t = r.timing
        spans.append((end - (t.setup_s or 0) - (t.train_total_s or 0) - (t.test_s or 0), end))
    (s1, e1), (s2, e2) = spans
    assert s1 < e2 and s2 < e1  # the two runs overlapped in time


def test_a_study_runs_seed_by_seed_and_finishes_started_runs_first(tmp_path: Path) -> None:
    """Every model's seed 1 comes before any seed 2 (a study stopped half-way leaves whole
    comparisons), and a run with a resume state goes before runs not yet started."""
    runs = '[[runs]]\nmodels = ["sasrec", "bprmf"]\nseeds = [1, 2]\n'
    path = experiment(tmp_path, runs=runs)
    specs = [s for _, s in validate(load_experiment(path))]
    assert [(s.model, s.seed) for s in specs] == [("sasrec", 1), ("bprmf", 1), ("sasrec", 2), ("bprmf", 2)]
    _partial(path, seed=2)
    assert main(["reproduce", str(path), "--jobs", "1"]) == 0
    order = [(r.model, r.seed) for r in read_records([tmp_path / "runs"])]
    assert order == [("sasrec", 2), ("sasrec", 1), ("bprmf", 1), ("bprmf", 2)]
