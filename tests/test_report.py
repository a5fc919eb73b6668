from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.errors import BenchError
from bench.results.claims import Claim, decide, judge, load_claims
from bench.results.frame import load_frame
from bench.results.render import tex_escape, write_outputs
from bench.results.report import ReportConfig, build_report, provenance_table
from bench.spec import TrainConfig
from tests.fixture_records import _run, write_fixture

GOLDEN = Path(__file__).parent / "golden"
CLAIMS = """
[[claim]]
id = "toy-ndcg5"
subject = "elcrec"
reference = "runner-up"
dataset = "toyset"
metric = "NDCG@5"
direction = "higher"
claimed = 0.05
min_seeds = 3
source = "fixture, Table_1 & 100%"

[[claim]]
id = "toy-epoch"
kind = "cost"
subject = "elcrec"
reference = "iclrec"
dataset = "toyset"
metric = "epoch_time"
direction = "lower"
claimed = 0.15
min_seeds = 3
source = "fixture"

[[published]]
source = "fixture paper, Table_1 & 100%"
dataset = "toyset"
metrics = ["HR@5", "NDCG@5"]
[published.values]
elcrec = [0.12, 0.08]
"""


def report(tmp: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    rec = write_fixture(tmp / "records")
    (tmp / "claims.toml").write_text(CLAIMS)
    return subprocess.run([sys.executable, "-m", "bench", "report", str(rec), "--claims", str(tmp / "claims.toml"),
                           "--format", "md,tex,csv,json", "--out", str(tmp / "out"), *extra],
                          capture_output=True, text=True, timeout=300)


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text(), f"{name} differs from the golden file (UPDATE_GOLDEN=1 to accept)"


def test_markdown_and_latex_match_golden_files(tmp_path: Path) -> None:
    res = report(tmp_path)
    assert res.returncode == 0, res.stderr
    md = (tmp_path / "out" / "report.md").read_text()
    check_golden("report.md", md)
    check_golden("report.tex", (tmp_path / "out" / "report.tex").read_text())
    for png in ("curves-toyset-feedc0ffee000001.png", "phases-toyset-feedc0ffee000001.png",
                "scatter-toyset-feedc0ffee000001.png", "claim-toy-ndcg5.png"):
        assert (tmp_path / "out" / png).stat().st_size > 1000 and f"]({png})" in md
    summary = pd.read_csv(tmp_path / "out" / "summary.csv")
    assert set(summary.model) == {"elcrec", "iclrec"} and len(summary) == 3  # two protocols, never mixed


def test_every_training_run_has_a_row_in_markdown_and_json(tmp_path: Path) -> None:
    res = report(tmp_path)
    assert res.returncode == 0, res.stderr
    md = (tmp_path / "out" / "report.md").read_text()
    runs = md.split("### Runs", 1)[1].split("\n\n")[1].splitlines()[2:]  # the table's body
    assert sorted(r.split("|")[1].strip() + r.split("|")[2].strip() for r in runs) == \
        sorted(f"{m}{s}" for m in ("elcrec", "iclrec") for s in (1, 2, 3))  # no row for the failed run
    rows = json.loads((tmp_path / "out" / "summary.json").read_text())["runs"]
    assert len(rows) == 6 and all(r["best_epoch"] == 6 and r["stop_reason"] == "max_epochs" for r in rows)


def test_report_lists_failures_and_separates_protocols(tmp_path: Path) -> None:
    report(tmp_path)
    md = (tmp_path / "out" / "report.md").read_text()
    assert "sasrec / toyset / seed 1: RunFailure: non-finite loss" in md
    assert "records of 2 evaluation protocols are reported in separate tables" in md


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="no LaTeX engine (pdflatex) installed here")
def test_latex_compiles(tmp_path: Path) -> None:
    report(tmp_path)
    doc = tmp_path / "doc.tex"
    body = (tmp_path / "out" / "report.tex").read_text()
    doc.write_text("\\documentclass{article}\\usepackage{booktabs}\\begin{document}\n" + body + "\\end{document}\n")
    res = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", doc.name], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout[-2000:]


def test_tex_escape_covers_every_special_character() -> None:
    assert tex_escape("a_b & 50% #1 $x {y} ~ ^ \\") == (
        r"a\_b \& 50\% \#1 \$x \{y\} \textasciitilde{} \textasciicircum{} \textbackslash{}")


@pytest.mark.parametrize(("low", "high", "verdict"), [
    (0.02, 0.12, "REPRODUCED"), (0.01, 0.12, "INCONCLUSIVE"), (0.01, 0.04, "SMALLER THAN CLAIMED"),
    (-0.02, 0.03, "SMALLER THAN CLAIMED"), (-0.02, 0.01, "NOT REPRODUCED"), (0.005, 0.01, "SMALLER THAN CLAIMED"),
    (-0.09, -0.01, "NOT REPRODUCED"), (-0.02, 0.10, "INCONCLUSIVE")])
def test_verdict_rules(low: float, high: float, verdict: str) -> None:
    assert decide(low, high, 0.05)[0] == verdict


REPO = Path(__file__).resolve().parent.parent
BEAUTY = "reports/reproduction/beauty"
COMMITTED = {  # committed report -> its records folders (docs/statistics.md, experiments/elcrec-beauty.toml)
    "reports/audit/report.md": ("reports/audit/records",),
    "reports/beauty-10ep/report/report.md": ("reports/beauty-10ep",),
    f"{BEAUTY}/report.md": (f"{BEAUTY}/records", f"{BEAUTY}/cost"),
}


@pytest.mark.parametrize("committed", sorted(COMMITTED))
def test_committed_records_render_their_committed_report(committed: str, tmp_path: Path) -> None:
    """Records written by older code (evaluations, training runs, the paired cost benchmark) give
    their committed report byte for byte."""
    cfg = ReportConfig(records=tuple(REPO / p for p in COMMITTED[committed]), out=tmp_path,
                       claims=REPO / "bench" / "claims" / "elcrec.toml")
    write_outputs(build_report(cfg), cfg)
    assert (tmp_path / "report.md").read_text() == (REPO / committed).read_text(), \
        f"{committed} is not what its records give now: re-render it if the claims or the report changed on purpose"


def test_claims_use_records_only(tmp_path: Path) -> None:
    df = load_frame([write_fixture(tmp_path)])
    ok = df[(df.status == "ok") & (df.protocol == "feedc0ffee000001")]
    claim = Claim("c", "elcrec", "runner-up", "toyset", "NDCG@5", "higher", 0.05, "s", min_seeds=4)
    v = judge(claim, ok)
    assert v.reference == "iclrec" and v.verdict == "INCONCLUSIVE" and "too few seeds (3 < 4)" in v.reason
    assert v.why == "3 of the 4 seeds a verdict needs"
    assert v.low < v.estimate < v.high
    cost = judge(Claim("t", "elcrec", "iclrec", "toyset", "epoch_time", "lower", 0.15, "s", kind="cost"), ok)
    geo = np.exp(np.log([2.05, 2.10, 2.15]).mean() - np.log([2.65, 2.70, 2.75]).mean())  # run means, per side
    assert cost.estimate == pytest.approx(1 - geo, abs=1e-9)
    assert cost.verdict == "REPRODUCED" and "run means" in cost.test


def test_the_runner_up_is_the_best_model_with_enough_seeds_and_the_others_ahead_are_named(tmp_path: Path) -> None:
    """A model with one lucky seed must not become the runner-up a claim is judged against: the verdict
    compares with the best model that has `min_seeds` seeds, and names the better-by-mean ones it skipped."""
    rec = write_fixture(tmp_path)
    _run(rec, "sasrec", 1, np.random.default_rng(5).geometric(0.2, size=400), 1.0, 0.04)  # far ahead, one seed
    df = load_frame([rec])
    ok = df[(df.status == "ok") & (df.protocol == "feedc0ffee000001")]
    claim = Claim("c", "elcrec", "runner-up", "toyset", "NDCG@5", "higher", 0.05, "s", min_seeds=3)
    v = judge(claim, ok)
    assert v.reference == "iclrec" and not v.verdict.startswith("THESE SEEDS ONLY")
    assert "sasrec" in v.reason and "1 seed" in v.reason
    few = judge(replace(claim, min_seeds=4), ok)  # no model has enough seeds: the best by mean, and it says so
    assert few.reference == "sasrec" and few.verdict.startswith("THESE SEEDS ONLY")
    assert "no other model has 4 seeds" in few.reason


def test_one_seed_a_side_is_never_a_verdict_on_the_models(tmp_path: Path) -> None:
    df = load_frame([write_fixture(tmp_path)])
    ok = df[(df.status == "ok") & (df.protocol == "feedc0ffee000001") & (df.seed == 1)]
    v = judge(Claim("c", "elcrec", "iclrec", "toyset", "NDCG@5", "higher", 0.05, "s", min_seeds=1), ok)
    assert v.verdict.startswith("THESE SEEDS ONLY") and "these seeds only" in v.reason
    assert "seed spread unmeasured" in v.power_note and v.seeds_needed is None


def test_a_comparison_with_one_seed_on_a_side_is_marked_as_covering_these_seeds_only(tmp_path: Path) -> None:
    """A model with one seed beside a best model with three: its row's interval is over users (these
    seeds only) and says so; rows with seeds on both sides are not marked."""
    rec = write_fixture(tmp_path / "records")
    _run(rec, "sasrec", 1, np.random.default_rng(5).geometric(0.03, size=400), 1.0, 0.04)
    cfg = ReportConfig(records=(rec,), out=tmp_path / "out", plots=False)
    write_outputs(build_report(cfg), cfg)
    table = (tmp_path / "out" / "report.md").read_text().split("### Paired comparisons with the best model")[1]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in table.split("\n\n")[1].splitlines()[2:]]
    assert {r[0] for r in rows} == {"iclrec", "sasrec"}
    for model, _, _, seeds, _, ci, *_ in rows:
        assert seeds == ("1+3" if model == "sasrec" else "3+3")
        assert ci.endswith("‡") == (model == "sasrec"), (model, ci)
    assert "‡ one seed on a side" in table


def test_a_lucky_single_seed_is_not_the_best_that_others_are_tested_against(tmp_path: Path) -> None:
    """A model with one seed far ahead by mean is shown in bold, but the daggers and the paired
    comparisons measure the others against the best model with enough seeds: a single seed does
    not silence every test of the table."""
    rec = write_fixture(tmp_path / "records")
    for seed in (1, 2, 3):  # clearly worse than ELCRec, three seeds
        _run(rec, "sasrec", seed, np.random.default_rng(20 + seed).geometric(0.01, size=400), 1.0, 0.02)
    _run(rec, "bsarec", 1, np.random.default_rng(5).geometric(0.2, size=400), 1.0, 0.04)  # far ahead, one seed
    cfg = ReportConfig(records=(rec,), out=tmp_path / "out", plots=False)
    sec = build_report(cfg).sections[0]
    assert {c.best for c in sec.comparisons} == {"elcrec"}
    assert {c.model for c in sec.comparisons} == {"bsarec", "iclrec", "sasrec"}
    assert sec.untested == ["bsarec"] and all(r.worse.get("HR@20") for r in sec.rows if r.model == "sasrec")
    assert max(sec.rows, key=lambda r: r.mean["NDCG@5"]).model == "bsarec"  # still the best by mean (bold)


def test_the_glance_table_says_why_a_claim_is_inconclusive(tmp_path: Path) -> None:
    """A reader of the first table sees why each INCONCLUSIVE is one: too few seeds (and how many),
    no GPU, no training records; decided verdicts carry no such note."""
    (tmp_path / "c.toml").write_text(CLAIMS.replace("min_seeds = 3", "min_seeds = 4", 1) + """
[[claim]]
id = "toy-memory"
kind = "cost"
subject = "elcrec"
reference = "iclrec"
dataset = "toyset"
metric = "gpu_memory"
direction = "lower"
claimed = 0.1
source = "fixture"
""")
    cfg = ReportConfig(records=(write_fixture(tmp_path / "r"),), claims=tmp_path / "c.toml", out=tmp_path / "o",
                       plots=False)
    write_outputs(build_report(cfg), cfg)
    glance = (tmp_path / "o" / "report.md").read_text().split("## Verdicts at a glance")[1].split("\n\n")[1]
    cells: dict[str, set[str]] = {}  # claim -> its verdict cells (the fixture has a second, eval-only protocol)
    for line in glance.splitlines()[2:]:
        row = [c.strip() for c in line.strip("|").split("|")]
        cells.setdefault(row[0], set()).add(row[-1])
    assert cells["toy-ndcg5"] == {"**INCONCLUSIVE** (3 of the 4 seeds a verdict needs)",
                                  "**INCONCLUSIVE** (no records)"}
    assert "**INCONCLUSIVE** (needs a GPU)" in cells["toy-memory"]
    assert "**REPRODUCED**" in cells["toy-epoch"]


def test_claims_not_runnable_are_listed_and_unknown_keys_rejected(tmp_path: Path) -> None:
    (tmp_path / "c.toml").write_text(CLAIMS + """
[[claim]]
id = "ml1m-hr5"
subject = "elcrec"
reference = "iclrec"
dataset = "ml-1m"
metric = "HR@5"
direction = "higher"
claimed = 0.1365
source = "Table 8"
runnable = false
not_runnable = "ML-1M is not on this machine"
""")
    rep = build_report(ReportConfig(records=(write_fixture(tmp_path / "r"),), claims=tmp_path / "c.toml"))
    assert [(v.claim.id, v.verdict) for v in rep.unjudged] == [("ml1m-hr5", "NOT RUNNABLE")]
    (tmp_path / "bad.toml").write_text(CLAIMS.replace('source = "fixture"', 'source = "fixture"\nwhatever = 1'))
    with pytest.raises(BenchError, match="whatever"):
        load_claims(tmp_path / "bad.toml")


def test_frame_api_loads_records(tmp_path: Path) -> None:
    df = load_frame([write_fixture(tmp_path)])
    assert len(df) == 8 and set(df.status) == {"ok", "failed"}
    assert df[df.model == "elcrec"]["NDCG@10"].notna().all()


def test_runs_cut_by_a_small_epoch_budget_cannot_verify_a_quality_claim(tmp_path: Path) -> None:
    df = load_frame([write_fixture(tmp_path)])
    ok = df[(df.status == "ok") & (df.protocol == "feedc0ffee000001")]
    ok = ok.assign(record=[replace(rec, train_config=TrainConfig(epochs=6)) for rec in ok["record"]])  # `--epochs 6`
    claim = Claim("c", "elcrec", "iclrec", "toyset", "NDCG@5", "higher", 0.05, "s", min_seeds=3)
    v = judge(claim, ok)
    assert v.verdict == "INCONCLUSIVE" and "stopped by the epoch budget" in v.reason and v.estimate > 0


def test_the_provenance_table_shows_every_commit_machine_and_thread_count_of_a_model(tmp_path: Path) -> None:
    path = write_fixture(tmp_path) / "records.jsonl"
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    odd = next(r for r in lines if r["model"] == "iclrec" and r["seed"] == 2)  # one run from elsewhere
    odd["provenance"] = {**odd["provenance"], "git": {"commit": "abcdef0123", "dirty": True}}
    odd["device"] = {"type": "cpu", "name": "other", "torch_threads": 1}
    path.write_text("".join(json.dumps(r) + "\n" for r in lines))
    sec = build_report(ReportConfig(records=(tmp_path,))).sections[0]
    rows = {row[0]: row for row in provenance_table(sec)}
    assert rows["iclrec"][1:5] == ["3", "0000000, abcdef0+dirty", "cpu: fixture, cpu: other", "1, 2"]
    assert rows["elcrec"][1:5] == ["3", "0000000", "cpu: fixture", "2"]


def test_a_run_resumed_on_another_machine_is_flagged_beside_its_times(tmp_path: Path) -> None:
    """VMs name CPU generations of other speeds alike ("AMD EPYC"); a run's stretches record the full
    identity, and a run that trained on two is listed under both machines and warned about."""
    path = write_fixture(tmp_path) / "records.jsonl"
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    seg = {"from_pretrain_epoch": 0, "host": "vm", "torch_threads": 1, "started": "2026-01-01T00:00:00+00:00"}
    for r in lines:
        if r["model"] == "elcrec" and r["seed"] == 1:  # resumed at epoch 3 on a CPU of another generation
            r["segments"] = [{**seg, "from_epoch": 0, "cpu": "AMD EPYC (family 25 model 1, AVX2)",
                              "device": "cpu: AMD EPYC (family 25 model 1, AVX2)"},
                             {**seg, "from_epoch": 3, "cpu": "AMD EPYC (family 25 model 17, AVX-512)",
                              "device": "cpu: AMD EPYC (family 25 model 17, AVX-512)"}]
        elif r["model"] == "iclrec" and r["seed"] == 1:  # resumed on the same machine: no warning
            r["segments"] = [{**seg, "from_epoch": e, "cpu": "x", "device": "cpu: fixture"} for e in (0, 2)]
    path.write_text("".join(json.dumps(r) + "\n" for r in lines))
    cfg = ReportConfig(records=(tmp_path,), out=tmp_path / "r", format=("md",))
    sec = build_report(cfg).sections[0]
    rows = {row[0]: row for row in provenance_table(sec)}
    assert rows["elcrec"][3] == ("cpu: AMD EPYC (family 25 model 1, AVX2), cpu: AMD EPYC (family 25 model 17, "
                                 "AVX-512), cpu: fixture")
    write_outputs(build_report(cfg), cfg)
    warned = [ln for ln in (tmp_path / "r" / "report.md").read_text().splitlines() if "more than one machine" in ln]
    assert warned == ["> **Warning:** elcrec s1 trained on more than one machine (from epoch 1 on cpu: AMD EPYC "
                      "(family 25 model 1, AVX2); from epoch 4 on cpu: AMD EPYC (family 25 model 17, AVX-512)): "
                      "its times are no one machine's."]


@pytest.mark.parametrize("path", sorted((Path(__file__).parents[1] / "bench" / "claims").glob("*.toml")),
                         ids=lambda p: p.name)
def test_every_shipped_claims_file_loads_on_known_data_and_models(path: Path) -> None:
    """A shipped claim names a registered model (or the runner-up) and a dataset of the manifest or one
    the claim says this machine lacks; a claim that could never be judged would sit in a report as
    'no records' for ever."""
    from bench.data.datasets import known_datasets
    from models import REGISTRY

    for c in load_claims(path):
        assert not c.runnable or c.dataset in known_datasets(), c.id
        assert not c.runnable or {c.subject, c.reference} <= {*REGISTRY, "runner-up"}, c.id


def test_runs_of_one_model_under_other_settings_are_another_model_not_more_seeds(tmp_path: Path) -> None:
    """ELCRec with k = 64 (a grid point) next to ELCRec as the preset has it: two rows of three seeds
    each, and the claims about "elcrec" are judged on the preset's runs alone."""
    from bench.results.records import append_record, read_records
    from bench.results.schema import RunRecord

    out, claims = write_fixture(tmp_path / "r"), tmp_path / "c.toml"
    claims.write_text(CLAIMS)
    plain = build_report(ReportConfig(records=(out,), claims=claims))
    for rec in read_records([out]):
        if rec.model == "elcrec" and isinstance(rec, RunRecord):
            per_user = np.load(rec.folder / rec.per_user_file)
            grid = replace(rec, id=rec.id + "-k64", config_hash="cfg-elcrec-k64", per_user_file=None,
                           config={"model": "elcrec", "dataset": "toyset", "hp": {"k": 64}, "train": {"epochs": 6}},
                           metrics={k: v / 2 for k, v in rec.metrics.items()})
            append_record(out, grid, {k: per_user[k] * 2 if k == "rank" else per_user[k] / 2 for k in per_user.files})
    both = build_report(ReportConfig(records=(out,), claims=claims))
    rows = {r.model: r.n for r in both.sections[0].rows}
    assert rows == {"elcrec": 3, "elcrec[k=64]": 3, "iclrec": 3}
    assert [(v.verdict, v.estimate) for v in both.sections[0].verdicts] == \
        [(v.verdict, v.estimate) for v in plain.sections[0].verdicts]


def test_a_profiles_own_settings_are_the_protocol_not_a_variant(tmp_path: Path) -> None:
    """The smoke profile trains at batch 64: its runs are the model itself (the README's smoke report
    judges "elcrec"); the same model at another batch size is a variant."""
    from bench.results.frame import variant
    from bench.results.records import read_records
    from bench.spec import PROFILES

    rec = next(r for r in read_records([write_fixture(tmp_path / "r")]) if r.model == "elcrec")
    smoke = {"model": "elcrec", "dataset": "toyset", "hp": {}, "train": {"epochs": 6, **PROFILES["smoke"].train}}
    assert variant(replace(rec, config=smoke)) == "elcrec"
    other = {**smoke, "train": {"epochs": 6, "batch_size": 128}}
    assert variant(replace(rec, config=other)) == "elcrec[batch_size=128]"


def test_a_report_can_keep_to_its_studys_datasets(tmp_path: Path) -> None:
    """A study comparing with committed records of other data (the zoo with the checkpoint audit,
    which also holds Toys) reports its own datasets only."""
    rec = write_fixture(tmp_path / "records")
    every = build_report(ReportConfig(records=(rec,), out=tmp_path / "out"))
    assert {s.dataset for s in every.sections} == {"toyset"}
    assert len(build_report(ReportConfig(records=(rec,), out=tmp_path / "out", datasets=("toyset",))).sections) \
        == len(every.sections)
    with pytest.raises(BenchError, match=r"no records in .* of beauty"):
        build_report(ReportConfig(records=(rec,), out=tmp_path / "out", datasets=("beauty",)))


def test_an_evaluated_checkpoint_is_never_one_more_seed_of_the_trained_model(tmp_path: Path) -> None:
    """The zoo study reads the released checkpoints' evaluations beside trained runs: where both exist
    for a model under one protocol, the checkpoint is its own row and claims use the runs."""
    from bench.results.records import append_record
    from bench.results.schema import EvalRecord
    from tests.fixture_records import PROTO, PROV

    rec = write_fixture(tmp_path / "records")
    ranks = np.full(400, 1)  # a perfect checkpoint: pooled with the runs, it would lift their mean
    from bench.metrics import per_user_metrics

    metrics = {k: float(v.mean()) for k, v in per_user_metrics(ranks).items()}
    append_record(rec, EvalRecord(model="elcrec", dataset="toyset", protocol=PROTO, metrics=metrics, provenance=PROV),
                  {**per_user_metrics(ranks), "rank": ranks})
    (tmp_path / "claims.toml").write_text(CLAIMS)
    report = build_report(ReportConfig(records=(rec,), claims=tmp_path / "claims.toml"))
    sec = next(s for s in report.sections if s.protocol.hash == "feedc0ffee000001")
    rows = {r.model: r for r in sec.rows}
    assert rows["elcrec"].n == 3 and rows["elcrec[checkpoint]"].n == 1 and rows["elcrec[checkpoint]"].mean["HR@5"] == 1
    v = next(v for v in sec.verdicts if v.claim.id == "toy-ndcg5")
    assert v.reference == "iclrec" and v.n.startswith("3+3 seeds")  # the runs, not the checkpoint


ROOT = Path(__file__).resolve().parents[1]
QUALITY = ("HR@5", "NDCG@5", "HR@20", "NDCG@20")


def _readme_verdict_rows() -> dict[str, list[str]]:
    """The cells of the README's Beauty verdict table, per quality metric (the row's first word)."""
    text = (ROOT / "README.md").read_text().split("## Where the verdicts stand (Beauty)", 1)[1]
    rows = {}
    for line in text.split("\n## ", 1)[0].splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0].split(" ")[0] in QUALITY:
            rows[cells[0].split(" ")[0]] = cells
    return rows


def _quoted(cell: str) -> tuple[str, ...]:
    m = re.search(r"([+-]\d+\.\d)% \[([+-]\d+\.\d)%, ([+-]\d+\.\d)%\]: ([A-Z][A-Z ]*[A-Z](?: \([a-z ]+\))?)", cell)
    assert m, f"no 'effect [CI]: VERDICT' in {cell!r}"
    return m.groups()


def test_the_readme_verdict_table_quotes_the_committed_reports() -> None:
    """Each quality row of the README's headline table gives the effect, 95% CI and verdict of the
    paper's claim as the committed summaries have them: the released-checkpoint audit
    (`reports/audit/`) in the third column, our paper-protocol runs (`reports/reproduction/beauty/`)
    in the fourth. Re-rendered reports with a stale README fail here."""
    rows = _readme_verdict_rows()
    assert sorted(rows) == sorted(QUALITY)
    for column, folder in ((2, "reports/audit"), (3, "reports/reproduction/beauty")):
        claims = json.loads((ROOT / folder / "summary.json").read_text())["claims"]
        for metric, cells in rows.items():
            claim = next(c for c in claims if c["id"] == f"beauty-{metric.lower().replace('@', '')}")
            want = (f"{100 * claim['estimate']:+.1f}", *(f"{100 * x:+.1f}" for x in claim["ci"]), claim["verdict"])
            assert _quoted(cells[column]) == want, (folder, metric)


def _with_checkpoint(tmp: Path, rank: int) -> Path:
    """The fixture's two models plus a third, far worse one (3 seeds each) and a released
    checkpoint of elcrec evaluated once, every user's target at `rank`."""
    from bench.metrics import per_user_metrics
    from bench.results.records import append_record
    from bench.results.schema import EvalRecord
    from tests.fixture_records import PROTO, PROV, _run

    rec = write_fixture(tmp / "records")
    for seed in (1, 2, 3):
        _run(rec, "sasrec", seed, np.random.default_rng(10 + seed).geometric(0.005, size=400), 1.0, 0.02)
    ranks = np.full(400, rank)
    metrics = {k: float(v.mean()) for k, v in per_user_metrics(ranks).items()}
    append_record(rec, EvalRecord(model="elcrec", dataset="toyset", protocol=PROTO, metrics=metrics, provenance=PROV),
                  {**per_user_metrics(ranks), "rank": ranks})
    return rec


def test_a_model_with_too_few_seeds_is_left_out_of_the_significance_marks(tmp_path: Path) -> None:
    """An evaluated checkpoint (one seed) beside trained models: the models with enough seeds are
    still tested against the best, the checkpoint is never marked and the caption names it; where
    the checkpoint itself is the best, the marks are the same: against the best tested model."""
    from bench.results.report import significance_caption

    claims = tmp_path / "claims.toml"
    claims.write_text(CLAIMS)
    weak = build_report(ReportConfig(records=(_with_checkpoint(tmp_path / "weak", 5000),), claims=claims))
    sec = next(s for s in weak.sections if s.protocol.hash == "feedc0ffee000001")
    rows = {r.model: r for r in sec.rows}
    assert sec.n_tests and rows["sasrec"].worse.get("NDCG@5") and not any(rows["elcrec[checkpoint]"].worse.values())
    assert "not tested, too few seeds: elcrec[checkpoint]" in significance_caption(sec, weak.alpha)
    best = build_report(ReportConfig(records=(_with_checkpoint(tmp_path / "best", 1),), claims=claims))
    top = next(s for s in best.sections if s.protocol.hash == "feedc0ffee000001")
    assert max(top.rows, key=lambda r: r.mean["NDCG@5"]).model == "elcrec[checkpoint]"
    assert {r.model: r.worse for r in top.rows} == {r.model: r.worse for r in sec.rows}
