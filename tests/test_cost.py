"""The paired cost benchmark: alternating epochs, records of kind "cost", a ratio CI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
from scipy import stats as sps

from bench.results.records import read_records
from bench.results.schema import CostEpoch, CostRecord, CurvePoint, RunRecord
from bench.results.stats import paired_ratio

TINY = "synthetic:users=200,items=60,intents=3,seed=2"


def test_the_ratio_ci_is_the_t_interval_of_the_log_ratios() -> None:
    rng = np.random.default_rng(0)
    b = rng.uniform(10, 12, size=7)
    a = b * 0.8 * rng.lognormal(0, 0.05, size=7)
    est = paired_ratio(a, b)
    ratio, (lo, hi) = est.ratio, est.interval()
    ci = sps.ttest_1samp(np.log(a / b), 0.0).confidence_interval(0.95)
    assert np.isclose(ratio, np.exp(np.log(a / b).mean()))
    assert np.isclose(lo, np.exp(ci.low)) and np.isclose(hi, np.exp(ci.high)) and lo < 0.8 < hi
    # drift common to both sides of a pair cancels: a machine twice as slow in later rounds changes nothing
    drift = np.linspace(1, 2, 7)
    drifted = paired_ratio(a * drift, b * drift)
    assert np.allclose((drifted.ratio, *drifted.interval()), (ratio, lo, hi))


def test_cost_alternates_epochs_and_writes_a_cost_record_per_model(tmp_path: Path) -> None:
    out = tmp_path / "cost"
    res = subprocess.run([sys.executable, "-m", "bench", "cost", "--models", "elcrec,sasrec", "--dataset", TINY,
                          "--rounds", "2", "--warmup", "1", "--out", str(out)], capture_output=True, text=True,
                         timeout=600)
    assert res.returncode == 0, res.stderr
    recs = [r for r in read_records([out]) if isinstance(r, CostRecord)]
    assert len(recs) == 2 and len({r.pair for r in recs}) == 1 and recs[0].models == ("elcrec", "sasrec")
    by_model = {r.model: r for r in recs}
    for r in recs:
        assert [e.round for e in r.epochs] == [0, 1, 2] and [e.warmup for e in r.epochs] == [True, False, False]
        assert all(len(e.loadavg_before) == 3 for e in r.epochs)
        assert r.memory.sampled and r.memory.sampled.by_phase["train"]["samples"] > 0
        assert all(e.gpu_avg_mb is None for e in r.epochs)  # a GPU counter only on CUDA
        assert r.config_hash == r.config["config_hash"] and r.config["train"] == {"epochs": 300, "patience": 40}
    # A B, then B A, then A B: each model as often first as last
    assert [e.position for e in by_model["elcrec"].epochs] == [0, 1, 0]
    assert [e.position for e in by_model["sasrec"].epochs] == [1, 0, 1]
    ratio = recs[0].summary["ratios"]["sasrec"]
    assert ratio["rounds"] == 2 and ratio["low"] <= ratio["ratio"] <= ratio["high"]
    assert "per-epoch cost" in res.stdout


def test_cost_refuses_a_single_model_with_one_line(tmp_path: Path) -> None:
    res = subprocess.run([sys.executable, "-m", "bench", "cost", "--models", "elcrec", "--dataset", TINY,
                          "--out", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and res.stderr.count("\n") == 1


def _run(model: str, seed: int, curve: list[float]) -> RunRecord:
    return RunRecord(model=model, dataset="d", seed=seed, best_epoch=int(np.argmax(curve)),
                     curve=tuple(CurvePoint(epoch=i, elapsed=i + 1.0, valid={"NDCG@20": v}, seconds={"train": 1.0})
                                 for i, v in enumerate(curve)))


def _cost(model: str, models: list[str], pair: str, created: str, secs: list[float],
          gpu_mb: list[float] | None = None) -> CostRecord:
    return CostRecord(model=model, dataset="d", models=tuple(models), pair=pair, created=created,
                      epochs=tuple(CostEpoch(epoch=i, round=i, position=0, epoch_s=s, warmup=i == 0,
                                             loadavg_before=(0.1, 0.1, 0.1), gpu_avg_mb=gpu_mb[i] if gpu_mb else None)
                                   for i, s in enumerate(secs)))


def test_an_epochs_average_gpu_memory_is_its_largest_phase_mean_of_the_epochs_own_samples() -> None:
    from bench.perf.cost_worker import epoch_gpu_avg_mb

    before = {"train": (10, 1000.0), "validation": (2, 150.0)}  # (samples so far, sum of MB)
    after = {"train": (20, 3000.0), "validation": (4, 450.0), "other": (9, 9e9)}
    assert epoch_gpu_avg_mb(before, after) == 200.0  # train (3000 - 1000) / 10 over validation's 150
    assert epoch_gpu_avg_mb({}, {"batches": (4, 40.0)}) == 10.0  # the first epoch: nothing before
    assert epoch_gpu_avg_mb({}, {}) is None  # no GPU counter (CPU)


def test_the_gpu_memory_claim_is_judged_on_the_latest_benchmark_that_ran_on_a_gpu() -> None:
    import pandas as pd

    from bench.results.claims import Claim, judge

    claim = Claim(id="m", subject="a", reference="b", dataset="d", metric="gpu_memory", direction="lower",
                  claimed=0.1135, source="test", kind="cost", min_seeds=3)
    ok = pd.DataFrame({"model": ["a", "b"], "NDCG@10": [0.1, 0.1],
                       "record": [_run("a", 1, [0.1, 0.2]), _run("b", 1, [0.1, 0.2])]})
    assert "needs a GPU" in judge(claim, ok, None).reason
    gpu = [_cost("a", ["a", "b"], "p1", "2026-01-01", [9, 8, 8, 8, 8], [1500, 1594, 1594, 1595, 1594]),
           _cost("b", ["a", "b"], "p1", "2026-01-01", [9, 9, 9, 9, 9], [1700, 1798, 1799, 1798, 1798])]
    cpu = [_cost(m, ["a", "b"], "p2", "2026-02-01", [9, 8, 8, 8, 8]) for m in ("a", "b")]  # newer, no GPU
    v = judge(claim, ok, pd.DataFrame({"record": gpu + cpu}))
    assert "average GPU memory" in v.test and v.n.startswith("4 paired rounds")
    assert np.isclose(v.estimate, 1 - 1594.25 / 1798.25, atol=1e-3) and v.low <= v.estimate <= v.high
    assert v.verdict == "REPRODUCED"
    # the paired table gets the memory columns, filled for the benchmark that ran on a GPU
    from bench.results.render import _md_paired
    from bench.results.report import Section, _paired_costs

    rows = _paired_costs(ok, pd.DataFrame({"record": gpu + cpu}))
    assert rows[0].gpu_memory is not None and np.isclose(rows[0].gpu_memory.ratio, 1594.25 / 1798.25, atol=1e-4)
    assert rows[1].gpu_memory is None
    sec = Section("d", None, [], [], [], 0, None, ok)  # type: ignore[arg-type]
    sec.paired = rows
    table = "\n".join(_md_paired(sec))
    header = [c.strip() for c in table.splitlines()[2].split("|")]
    assert header[header.index("average GPU memory ratio") + 1] == "95% CI"
    assert f"| {1594.25 / 1798.25:.3f} " in table


def test_time_to_target_is_the_epochs_ratio_per_seed_times_the_per_epoch_ratio() -> None:
    import pandas as pd

    from bench.results.claims import time_to_target_ratio

    # the reference peaks at epoch 3 (4 epochs); the subject first reaches that value at epoch 7 (8
    # epochs) in seed 1 and at epoch 3 in seed 2, and never in seed 3
    ref = pd.DataFrame({"record": [_run("b", 1, [0.1, 0.2, 0.3, 0.4, 0.35]), _run("b", 2, [0.1, 0.2, 0.3, 0.4]),
                                   _run("b", 3, [0.5])]})
    subj = pd.DataFrame({"record": [_run("a", 1, [0.1] * 7 + [0.4]), _run("a", 2, [0.0, 0.1, 0.2, 0.41]),
                                    _run("a", 3, [0.1])]})
    cost = paired_ratio(np.array([8.0, 8.2, 7.9]), np.array([10.0, 10.1, 9.8]))
    est, note = time_to_target_ratio(subj, ref, cost)
    assert est is not None and "2 seed(s)" in note and "never reached in seed(s) 3" in note
    epochs = np.log([8 / 4, 4 / 4])
    assert np.isclose(est.log_ratio, epochs.mean() + cost.log_ratio)
    assert np.isclose(est.se**2, epochs.var(ddof=1) / 2 + cost.se**2)


def test_a_per_epoch_cost_claim_is_judged_on_the_latest_paired_rounds() -> None:
    import pandas as pd

    from bench.results.claims import Claim, judge

    claim = Claim(id="c", subject="a", reference="b", dataset="d", metric="epoch_time", direction="lower",
                  claimed=0.2, source="test", kind="cost", min_seeds=3)
    ok = pd.DataFrame({"model": ["a", "b"], "NDCG@10": [0.1, 0.1],
                       "record": [_run("a", 1, [0.1, 0.2]), _run("b", 1, [0.1, 0.2])]})
    old = [_cost("a", ["a", "b"], "p1", "2026-01-01", [9, 10, 10, 10, 10]),
           _cost("b", ["a", "b"], "p1", "2026-01-01", [9, 10, 10, 10, 10])]
    new = [_cost("a", ["a", "b"], "p2", "2026-02-01", [9, 7.9, 8.1, 8.0, 8.0]),
           _cost("b", ["a", "b"], "p2", "2026-02-01", [9, 10.0, 10.0, 10.1, 9.9])]
    costs = pd.DataFrame({"record": old + new})
    v = judge(claim, ok, costs)
    assert "paired rounds" in v.test and v.n.startswith("4 paired rounds")
    assert np.isclose(v.estimate, 0.2, atol=0.01)  # from p2 only; p1's ratio is 1
    no_pairs = judge(claim, ok, None)
    assert "paired" not in no_pairs.test


def test_a_cost_verdict_says_what_the_benchmarks_on_other_machines_say() -> None:
    """A per-epoch ratio holds for the CPU it was measured on: the claim is judged on the latest
    benchmark, and its reason names each earlier benchmark's verdict and how many agree."""
    import pandas as pd

    from bench.results.claims import Claim, judge

    claim = Claim(id="c", subject="a", reference="b", dataset="d", metric="epoch_time", direction="lower",
                  claimed=0.2, source="test", kind="cost", min_seeds=3)
    ok = pd.DataFrame({"model": ["a", "b"], "NDCG@10": [0.1, 0.1],
                       "record": [_run("a", 1, [0.1, 0.2]), _run("b", 1, [0.1, 0.2])]})

    def bench(pair: str, created: str, a: list[float], b: list[float]) -> list[CostRecord]:
        return [_cost("a", ["a", "b"], pair, created, [9, *a]), _cost("b", ["a", "b"], pair, created, [9, *b])]

    even = bench("p1", "2026-01-01", [10, 10.1, 9.9, 10], [10, 10, 10.1, 9.9])  # no saving
    saving = bench("p2", "2026-02-01", [7.9, 8.1, 8.0, 8.0], [10.0, 10.0, 10.1, 9.9])  # the claimed 20%
    alone = judge(claim, ok, pd.DataFrame({"record": saving}))
    assert alone.verdict == "REPRODUCED" and "earlier" not in alone.reason
    v = judge(claim, ok, pd.DataFrame({"record": even + saving}))
    assert v.verdict == "REPRODUCED" and v.reason.startswith(alone.reason)
    assert "; the same on 0 of the 1 earlier benchmark(s): NOT REPRODUCED on " in v.reason
    again = bench("p3", "2026-03-01", [8.0, 8.1, 7.9, 8.0], [10.0, 10.1, 10.0, 9.9])
    assert "; the same on 1 of the 1 earlier benchmark(s): REPRODUCED on " in judge(
        claim, ok, pd.DataFrame({"record": saving + again})).reason
    mixed = judge(claim, ok, pd.DataFrame({"record": even + saving + again})).reason
    assert "; the same on 1 of the 2 earlier benchmark(s): " in mixed  # the count, not all-or-nothing


def test_each_paired_benchmark_gets_its_own_row() -> None:
    """Benchmarks of one pair on two machines are listed side by side, each with its own rounds
    (not the latest one's twice); the claim is judged on the latest (test above)."""
    import pandas as pd

    from bench.results.report import _paired_costs

    old = [_cost(m, ["a", "b"], "p1", "2026-01-01", [9, 10, 10, 10, 10.2] if m == "a" else [9, 10, 10, 10, 9.8])
           for m in ("a", "b")]
    new = [_cost(m, ["a", "b"], "p2", "2026-02-01", [9, 7.9, 8.1, 8.0, 8.0] if m == "a" else [9, 10, 10, 10.1, 9.9])
           for m in ("a", "b")]
    ok = pd.DataFrame({"model": ["a", "b"], "record": [_run("a", 1, [0.1, 0.2]), _run("b", 1, [0.1, 0.2])]})
    rows = _paired_costs(ok, pd.DataFrame({"record": new + old}))
    assert [(p.subject, p.reference, p.rounds) for p in rows] == [("a", "b", 4)] * 2
    assert np.isclose(rows[0].per_epoch.ratio, 1.0, atol=0.02)  # p1, the older, first
    assert np.isclose(rows[1].per_epoch.ratio, 0.8, atol=0.01)  # p2
