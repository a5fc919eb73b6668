"""Sensitivity grids: found in records, judged by the range-claim rules, rendered from real runs;
the LastFM experiment file."""

from __future__ import annotations

import json
import re
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest

from bench.cli import main
from bench.experiment import load_experiment, validate
from bench.metrics import per_user_metrics
from bench.results import stats
from bench.results.claims import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED
from bench.results.frame import load_frame
from bench.results.records import append_record, read_records
from bench.results.schema import parse_record
from bench.results.sensitivity import RangeClaim, collapse_note, find_grids, judge_range, load_range_claims
from bench.runner import RunConfig, expand
from bench.spec import TrainConfig

REPO = Path(__file__).resolve().parent.parent
K_GRID = (32, 64, 128, 256, 512)


def _record(out: Path, hp: dict, seed: int, hits: np.ndarray, created: str = "2026-01-01T00:00:00",
            defaults: dict | None = None, legacy: bool = False, positions: float | None = None) -> None:
    """A training-run record of ELCRec with these settings; a hit ranks the target 1-5, a miss 50.
    `defaults`: the model's other hyper-parameters in its `model_config`; `legacy`: a record of code
    before `model_config` (its given settings only); `positions`: the effective clusters of real
    sequence positions (newer records)."""
    ranks = np.where(hits, 1 + np.arange(len(hits)) % 5, 50)
    per_user = per_user_metrics(ranks)
    diag = {"centres_used": 3, "usage_entropy_nats": float(np.log(2.0)),
            "max_usage_entropy_nats": float(np.log(hp["k"]))}
    if positions is not None:
        diag |= {"positions_centres_used": 2 * positions, "positions_effective_clusters": positions}
    key = json.dumps(hp, sort_keys=True)
    line = {"schema": 2, "kind": "run", "status": "ok", "model": "elcrec", "dataset": "toy", "seed": seed,
            "id": f"{key}-{seed}-{created}", "created": created, "config_hash": key,
            "config": {"hp": hp, "train": {"epochs": 300, "patience": 40}},
            "model_config": None if legacy else {"fusion": "concat", **(defaults or {}), **hp},
            "train_config": {"epochs": 300, "patience": 40},
            "metrics": {k: float(v.mean()) for k, v in per_user.items()},
            "protocol": {"hash": "p1", "seen_items": "zero"}, "epochs_run": 90, "best_epoch": 49,
            "stop_reason": "early_stopping", "diagnostics": diag, "diagnostics_init": diag}
    append_record(out, parse_record(line, "fixture"), {**per_user, "rank": ranks})


def _k_grid(out: Path, inside: float, outside: float, seeds: int, users: int) -> list:
    """ELCRec over the paper's k grid at alpha 1; hit rate `inside` for k in [256, 512], else
    `outside`; every seed moves its point's hit rate by about 0.5%."""
    rng = np.random.default_rng(0)
    for k in K_GRID:
        for seed in range(1, seeds + 1):
            p = (inside if k >= 256 else outside) * (1 + 0.005 * rng.standard_normal())
            _record(out, {"k": k, "alpha": 1.0}, seed, rng.random(users) < p)
    ok = load_frame([out])
    return [g for g in find_grids(ok[ok.status == "ok"], "toy") if g.axis == "k"]


def _claim(rule: str) -> RangeClaim:
    return RangeClaim("k", "elcrec", "k", (256, 512), rule, "perform well when k in [256, 512]", "Fig. 2")


def test_contrast_ratio_with_one_setting_a_side_is_seed_ratio() -> None:
    rng = np.random.default_rng(1)
    s, r = rng.binomial(1, 0.1, (3, 500)).astype(float), rng.binomial(1, 0.08, (4, 500)).astype(float)
    a, b = stats.seed_ratio(s, r), stats.contrast_ratio([s], [r])
    assert (a.log_ratio, a.se, a.df) == pytest.approx((b.log_ratio, b.se, b.df))
    pooled = stats.contrast_ratio([s, s], [r, r[::-1]])  # a setting repeated: the same estimate
    assert pooled.log_ratio == pytest.approx(a.log_ratio)


@pytest.mark.parametrize(("inside", "outside", "near", "matters"), [
    (0.20, 0.10, REPRODUCED, REPRODUCED),  # the range is the best and clearly so
    (0.10, 0.20, NOT_REPRODUCED, NOT_REPRODUCED),  # the range is the worst
])
def test_range_rules_on_clear_cases(tmp_path: Path, inside: float, outside: float, near: str, matters: str) -> None:
    (grid,) = _k_grid(tmp_path, inside, outside, seeds=3, users=40000)
    assert [p.value for p in grid.points] == list(K_GRID) and all(p.n == 3 for p in grid.points)
    v = judge_range(_claim("near-best"), grid)
    assert v.verdict == near, v.reason
    assert judge_range(_claim("range-matters"), grid).verdict == matters


def test_range_rules_are_inconclusive_with_two_seeds_or_too_few_users(tmp_path: Path) -> None:
    (grid,) = _k_grid(tmp_path / "two", 0.20, 0.10, seeds=2, users=40000)
    v = judge_range(_claim("near-best"), grid)
    assert v.verdict == INCONCLUSIVE and v.reason.startswith("too few seeds (2 < 3 at k = 32)")
    (grid,) = _k_grid(tmp_path / "noisy", 0.15, 0.15, seeds=3, users=300)  # equal, but the CIs span ±20%
    assert [judge_range(_claim(r), grid).verdict for r in ("near-best", "range-matters")] == [INCONCLUSIVE] * 2


def test_grids_share_the_preset_point_and_a_seed_run_twice_counts_once(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    for seed, hp in ((1, {"k": 64, "alpha": 1.0}), (1, {"k": 256, "alpha": 1.0}), (1, {"k": 64, "alpha": 10.0}),
                     (2, {"k": 64, "alpha": 1}), (1, {"k": 256, "alpha": 10.0})):  # alpha 1 is alpha 1.0
        _record(tmp_path, hp, seed, rng.random(50) < 0.2)
    _record(tmp_path, {"k": 256, "alpha": 1.0}, 1, np.ones(50, bool), created="2026-02-01T00:00:00")  # a rerun
    grids = {(g.axis, json.dumps(g.fixed, sort_keys=True)): g for g in find_grids(load_frame([tmp_path]), "toy")}
    train = {f"train.{k}": v for k, v in asdict(TrainConfig(epochs=300, patience=40)).items()}  # defaults included
    k_at_1 = grids["k", json.dumps({"alpha": 1.0, "fusion": "concat", **train}, sort_keys=True)]
    assert [(p.value, p.n) for p in k_at_1.points] == [(64, 2), (256, 1)]  # 1 and 1.0 agree: one point
    assert k_at_1.points[1].metrics["HR@5"][0] == 1.0  # the latest of seed 1's two runs
    alpha_at_64 = next(g for (axis, _), g in grids.items() if axis == "alpha" and g.fixed["k"] == 64)
    assert [p.value for p in alpha_at_64.points] == [1.0, 10.0]
    assert {axis for axis, _ in grids} == {"k", "alpha"} and len(grids) == 4  # (256, 10) closes two more grids
    assert k_at_1.points[0].diag["effective_clusters"] == pytest.approx(2.0)
    assert k_at_1.points[0].diag["effective_share"] == pytest.approx(2 / 64)


def test_a_record_from_before_model_config_joins_the_grids_of_newer_records(tmp_path: Path) -> None:
    """The LastFM study's preset point comes from the cross-domain study's older records, which name
    only the settings they were given; the newer grid points hold every hyper-parameter. The older
    point must still be the grids' preset point, and a setting it leaves out takes the default that
    the newer records show, never a value of its own."""
    rng = np.random.default_rng(3)
    full = {"init": "kmeans", "hidden": 64}  # defaults the newer records hold in `model_config`
    for seed in (1, 2):
        _record(tmp_path, {"k": 64, "alpha": 1.0}, seed, rng.random(50) < 0.2, legacy=True)  # the older preset
        _record(tmp_path, {"k": 32, "alpha": 1.0}, seed, rng.random(50) < 0.2, defaults=full)
        _record(tmp_path, {"k": 64, "alpha": 1.0, "init": "random"}, seed, rng.random(50) < 0.2, defaults=full)
    grids = {g.axis: g for g in find_grids(load_frame([tmp_path]), "toy")}
    assert set(grids) == {"k", "init"}
    assert [(p.value, p.n) for p in grids["k"].points] == [(32, 2), (64, 2)]
    assert [(p.value, p.n) for p in grids["init"].points] == [("kmeans", 2), ("random", 2)]
    assert grids["k"].fixed["init"] == "kmeans" and grids["init"].fixed["k"] == 64


def test_the_claims_file_quotes_the_paper_with_both_rules_per_statement() -> None:
    claims = load_range_claims(REPO / "bench" / "claims" / "elcrec-sensitivity.toml")
    assert {(c.axis, c.range, c.rule) for c in claims} == {(a, r, rule) for a, r in (("k", (256, 512)),
                                                                                   ("alpha", (0.1, 10)))
                                                           for rule in ("near-best", "range-matters")}
    assert all(c.metric == "HR@5" and c.min_seeds == 3 and c.margin == 0.05 for c in claims)
    assert {c.statement for c in claims} == {"perform well when k in [256, 512]",
                                             "promising performance when alpha in [0.1, 10]"}


def test_the_lastfm_experiment_expands_to_the_three_grids(capsys: pytest.CaptureFixture[str]) -> None:
    path = REPO / "experiments" / "sensitivity-lastfm.toml"
    exp = load_experiment(path)
    runs = validate(exp)
    sizes = {g.name: sum(1 for grp, _ in runs if grp is g) for g in exp.groups}
    assert sizes == {"k": 15, "alpha": 12, "init": 6} and exp.report == Path("reports/sensitivity")
    assert {s.seed for _, s in runs} == {1, 2, 3} and {s.dataset for _, s in runs} == {"lastfm"}
    assert all(s.train == {"epochs": 300, "patience": 40} for _, s in runs)
    assert len({(s.config_hash, s.seed) for _, s in runs}) == 33  # no run twice
    preset = expand(RunConfig(models=("elcrec",), datasets=("lastfm",), seeds=(1,), profile="paper"))[0]
    k64 = [s for g, s in runs if g.name == "k" and s.hp["k"] == 64 and s.seed == 1]
    assert k64[0].config_hash == preset.config_hash  # the preset point is the plain preset run
    assert main(["reproduce", str(path), "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("sensitivity-lastfm: 33 runs") and len(lines) == 36
    # each run listed once with its state (which depends on the records committed so far)
    assert sum("alpha=0.01  " in ln for ln in lines) == 3 and sum("init=kmeanspp" in ln for ln in lines) == 3
    assert all(re.search(r"  (done|partial|to do)", ln) for ln in lines[1:34])


def test_the_sensitivity_section_renders_from_real_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    claims = tmp_path / "claims.toml"
    claims.write_text('[[sensitivity]]\nid = "k8"\nmodel = "elcrec"\naxis = "k"\nrange = [8, 8]\nrule = "near-best"\n'
                      'statement = "perform well when k is 8"\nsource = "test"\n')
    exp = tmp_path / "grid.toml"
    exp.write_text(f'profile = "smoke"\ndatasets = ["synthetic:users=200,items=60,intents=3"]\nepochs = 2\n'
                   f'out = "{tmp_path / "runs"}"\nreport = "{tmp_path / "report"}"\nclaims = "{claims}"\n'
                   'formats = ["md", "json"]\njobs = 2\nthreads = 1\n'
                   '[[runs]]\nname = "k"\nmodels = ["elcrec"]\nseeds = [1, 2]\nset = ["elcrec.k=4,8"]\n'
                   '[[runs]]\nname = "init"\nmodels = ["elcrec"]\nseeds = [1, 2]\nset = ["elcrec.init=random"]\n')
    assert main(["reproduce", str(exp)]) == 0
    recs = read_records([tmp_path / "runs"])
    assert len(recs) == 6 and all(r.model_config["k"] in (4, 8) for r in recs)
    assert all(0 < r.diagnostics["effective_share"] <= 1 and r.diagnostics_init for r in recs)
    report = tmp_path / "report"
    md = (report / "report.md").read_text()
    assert "### Sensitivity: elcrec, k" in md and "### Sensitivity: elcrec, init" in md
    assert re.search(r"\| init +\| k +\| centres used", md) and re.search(r"\| k +\| centres used", md)
    assert "**INCONCLUSIVE**" in md and "too few seeds (2 < 3" in md
    # the main table: one row per setting (k 8 is the preset), never the grid pooled as seeds of one model
    rows = ("elcrec", "elcrec[k=4]", "elcrec[init=random]")
    assert all(re.search(rf"^\| {re.escape(m)} +\| 2 ", md, re.M) for m in rows)
    sens = json.loads((report / "summary.json").read_text())["sensitivity"]
    assert sorted(g["axis"] for g in sens["grids"]) == ["init", "k"]
    assert all(p["n"] == 2 for g in sens["grids"] for p in g["points"])
    assert [c["id"] for c in sens["claims"]] == ["k8"] and sens["claims"][0]["verdict"] == INCONCLUSIVE
    pngs = sorted(p.name for p in report.glob("sensitivity-*.png"))
    assert len(pngs) == 4 and all((report / p).read_bytes()[:4] == b"\x89PNG" for p in pngs)
    assert all(f"]({p})" in md for p in pngs)
    # a grid renumbered by later records leaves no plot behind that the report no longer shows
    stale = report / pngs[0].replace("-1-", "-7-").replace("-2-", "-7-")
    stale.write_bytes((report / pngs[0]).read_bytes())
    (report / "mine.png").write_bytes(b"\x89PNG")  # not the report's: kept
    assert main(["reproduce", str(exp), "--report-only"]) == 0
    assert sorted(p.name for p in report.glob("sensitivity-*.png")) == pngs and (report / "mine.png").exists()


def test_a_grid_of_a_model_without_intent_centres_has_no_cluster_columns_or_plot(tmp_path: Path) -> None:
    """SASRec-CE over its sample regime (no intent centres): the grid shows metrics and training length,
    not a table of dashes and an empty cluster-usage plot."""
    exp = tmp_path / "grid.toml"
    exp.write_text(f'profile = "smoke"\ndatasets = ["synthetic:users=200,items=60,intents=3"]\nepochs = 2\n'
                   f'out = "{tmp_path / "runs"}"\nreport = "{tmp_path / "report"}"\n'
                   'formats = ["md"]\njobs = 1\nthreads = 1\n'
                   '[[runs]]\nname = "plain"\nmodels = ["sasrec_ce"]\nseeds = [1]\n'
                   '[[runs]]\nname = "prefixes"\nmodels = ["sasrec_ce"]\nseeds = [1]\n'
                   'set = ["sasrec_ce.prefixes=true"]\n')
    assert main(["reproduce", str(exp)]) == 0
    report = tmp_path / "report"
    md = (report / "report.md").read_text()
    grid = md.split("### Sensitivity: sasrec_ce, prefixes")[1].split("\n## ")[0].split("![validation curves]")[0]
    assert re.search(r"^\| prefixes +\| epochs run +\| best epoch +\| stopped by +\|$", grid, re.M)
    assert "centres used" not in grid and "cluster usage" not in grid
    assert [p.name for p in report.glob("sensitivity-*.png")] == [
        next(report.glob("sensitivity-*-metrics.png")).name]


def test_the_collapse_note_gives_users_and_positions_where_recorded(tmp_path: Path) -> None:
    """Users' mean-pooled encodings pool over padding and read as a collapse; the note also gives the
    effective clusters of real positions, for the points whose records have them, and the most."""
    rng = np.random.default_rng(0)
    for k, pos in ((32, 3.0), (64, None), (128, 12.5)):
        for seed in (1, 2, 3):
            _record(tmp_path, {"k": k, "alpha": 1.0}, seed, rng.random(300) < 0.2, positions=pos)
    ok = load_frame([tmp_path])
    grid = next(g for g in find_grids(ok[ok.status == "ok"], "toy") if g.axis == "k")
    note = collapse_note(grid)
    assert "32: 2.0 / 3.0 of 32; 64: 2.0 of 64; 128: 2.0 / 12.5 of 128" in note, note
    assert "Positions: at most 12.5 (k = 128, 10% of its 128 centres)" in note
