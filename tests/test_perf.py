from __future__ import annotations

from bench.perf import verdicts


def test_targets_are_judged_on_the_medians_that_were_measured() -> None:
    results = {"epochs": {"elcrec": {"epoch_s": 31.5, "clustering_s": 2.7}, "iclrec": {"clustering_s": 2.9}}}
    v = verdicts(results)
    assert v["elcrec epoch s"] == {"limit": 30.0, "median": 31.5, "met": False}
    assert v["iclrec clustering s"]["met"] is True
    assert "elcrec run process s" not in v  # --no-process: nothing to judge, no verdict
