"""Published numbers beside ours: what a user reads next to the paper's table cells."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as sps

from bench.errors import BenchError
from bench.results.frame import load_frame
from bench.results.published import load_published, published_path
from bench.results.render import write_outputs
from bench.results.report import ReportConfig, build_report
from tests.fixture_records import write_fixture

CLAIMS_DIR = Path(__file__).parents[1] / "bench" / "claims"
PUBLISHED = """
[[published]]
source = "fixture paper, Table 1"
dataset = "toyset"
metrics = ["NDCG@5", "HR@20"]
[published.values]
elcrec = [0.05, 0.25]
iclrec = [0.04, nan]
"""


def _claims(tmp: Path, published: str = PUBLISHED) -> Path:
    (tmp / "pub.toml").write_text(published)
    (tmp / "claims.toml").write_text('published = "pub.toml"\n')
    return tmp / "claims.toml"


def test_a_report_shows_each_models_seed_mean_beside_the_published_number(tmp_path: Path) -> None:
    records = write_fixture(tmp_path / "records")
    cfg = ReportConfig(records=(records,), out=tmp_path / "out", claims=_claims(tmp_path), format=("md", "json"),
                       plots=False)
    report = build_report(cfg)
    sec = next(s for s in report.sections if s.protocol.hash == "feedc0ffee000001")  # the training runs
    got = {(b.model, b.metric): b for b in sec.published}
    assert set(got) == {("elcrec", "NDCG@5"), ("elcrec", "HR@20"), ("iclrec", "NDCG@5")}  # nan: no number given
    df = load_frame([records])
    seeds = df[(df.status == "ok") & (df.model == "elcrec") & (df.protocol == "feedc0ffee000001")]["NDCG@5"]
    b = got[("elcrec", "NDCG@5")]
    lo, hi = sps.t.interval(0.95, len(seeds) - 1, loc=seeds.mean(), scale=sps.sem(seeds))
    assert b.seeds == 3 and b.ours == pytest.approx(seeds.mean()) and b.rel == pytest.approx(seeds.mean() / 0.05 - 1)
    assert (b.low, b.high) == pytest.approx((lo / 0.05 - 1, hi / 0.05 - 1))
    other = next(s for s in report.sections if s.protocol.hash != "feedc0ffee000001")  # one evaluation, one seed
    assert [x.seeds for x in other.published] == [1, 1] and all(np.isnan(x.low) for x in other.published)
    write_outputs(report, cfg)
    md = (tmp_path / "out" / "report.md").read_text()
    assert "### Beside published numbers" in md and f"{b.ours:.4f} / 0.0500: {100 * b.rel:+.1f}%" in md
    rows = json.loads((tmp_path / "out" / "summary.json").read_text())["published"]
    assert len(rows) == 5 and {r["source"] for r in rows} == {"fixture paper, Table 1"}


def test_a_variant_is_shown_beside_its_models_number_under_its_own_name(tmp_path: Path) -> None:
    """A run under other settings (the quick zoo's "s3rec[pretrain_epochs=10]") still sits beside
    its model's published number, named so that the difference is visible, never pooled with it."""
    records = write_fixture(tmp_path / "records")
    path = records / "records.jsonl"
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    for r in lines:
        if r.get("model") == "elcrec" and r.get("seed") == 3 and r.get("kind") == "run":
            r["config"] = {**(r.get("config") or {}), "hp": {"k": 4}}
    path.write_text("".join(json.dumps(r) + "\n" for r in lines))
    cfg = ReportConfig(records=(records,), claims=_claims(tmp_path), plots=False)
    sec = next(s for s in build_report(cfg).sections if s.protocol.hash == "feedc0ffee000001")
    got = {(b.model, b.metric): b.seeds for b in sec.published}
    assert got == {("elcrec", "NDCG@5"): 2, ("elcrec", "HR@20"): 2, ("elcrec[k=4]", "NDCG@5"): 1,
                   ("elcrec[k=4]", "HR@20"): 1, ("iclrec", "NDCG@5"): 3}


def test_a_claims_file_without_published_numbers_adds_no_table(tmp_path: Path) -> None:
    (tmp_path / "claims.toml").write_text("")
    cfg = ReportConfig(records=(write_fixture(tmp_path / "records"),), claims=tmp_path / "claims.toml")
    assert all(not s.published for s in build_report(cfg).sections)


@pytest.mark.parametrize(("text", "message"), [
    (PUBLISHED.replace("0.05, 0.25", "0.05"), "elcrec needs 2 numbers, one per metric"),
    (PUBLISHED.replace('"HR@20"', '"HR@21"'), "unknown metric(s) HR@21"),
    (PUBLISHED.replace("0.04, nan", "0.0, nan"), "iclrec: a published number must be positive"),
    (PUBLISHED.replace('dataset = "toyset"', 'datasets = "toyset"'), "needs exactly source, dataset, metrics"),
])
def test_a_malformed_published_file_is_a_one_line_error(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(BenchError) as err:
        load_published(published_path(_claims(tmp_path, text)) or Path("-"))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_the_report_command_exits_2_when_the_named_file_is_missing(tmp_path: Path) -> None:
    (tmp_path / "claims.toml").write_text('published = "nowhere.toml"\n')
    res = subprocess.run([sys.executable, "-m", "bench", "report", str(write_fixture(tmp_path / "records")),
                          "--claims", str(tmp_path / "claims.toml"), "--out", str(tmp_path / "out")],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 2 and "nowhere.toml" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out" / "report.md").exists()


@pytest.mark.parametrize("claims", sorted(p for p in CLAIMS_DIR.glob("*.toml") if published_path(p)),
                         ids=lambda p: p.name)
def test_every_shipped_published_number_names_a_registered_model_and_known_data(claims: Path) -> None:
    """A published number under a name no model or dataset has would never appear beside ours."""
    from bench.data.datasets import known_datasets
    from models import REGISTRY

    entries = load_published(published_path(claims) or Path("-"))
    assert entries
    for p in entries:
        assert p.model in REGISTRY and p.dataset in known_datasets() and p.values, p


def test_published_numbers_need_no_claims_file(tmp_path: Path) -> None:
    """`--published FILE` (an experiment's `published` key) shows them in a report that judges nothing."""
    (tmp_path / "pub.toml").write_text(PUBLISHED)
    cfg = ReportConfig(records=(write_fixture(tmp_path / "records"),), published=tmp_path / "pub.toml")
    report = build_report(cfg)
    assert not any(s.verdicts for s in report.sections)
    assert {(b.model, b.metric) for s in report.sections for b in s.published} >= {("elcrec", "NDCG@5")}


def test_an_experiment_naming_a_missing_published_file_is_a_one_line_error(tmp_path: Path) -> None:
    from bench.experiment import load_experiment

    path = tmp_path / "study.toml"
    path.write_text(f'profile = "smoke"\nout = "{tmp_path}/runs"\nreport = "{tmp_path}/rep"\n'
                    f'published = "{tmp_path}/none.toml"\n[[runs]]\nmodels = ["sasrec"]\nseeds = [1]\n')
    with pytest.raises(BenchError) as err:
        load_experiment(path)
    assert "published numbers file" in str(err.value) and "\n" not in str(err.value)
    (tmp_path / "none.toml").write_text(PUBLISHED)
    assert load_experiment(path).published == tmp_path / "none.toml"
