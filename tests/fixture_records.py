"""Deterministic record fixtures (as the runner and `bench eval` write them) for report tests."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from bench.metrics import per_user_metrics
from bench.results.records import append_record
from bench.results.schema import (
    CodeVersion,
    CurvePoint,
    Device,
    EvalRecord,
    FailureRecord,
    Memory,
    Provenance,
    RecordedProtocol,
    RunRecord,
    Timing,
)

PROTO = RecordedProtocol(hash="feedc0ffee000001", seen_items="zero", dataset_sha256="ab" * 32, split="leave-one-out",
                         candidates="all item ids", ties="pessimistic", cutoffs=(5, 10, 20))
PROV = Provenance(git=CodeVersion(commit="0" * 40, dirty=False), host="fixture", machine="x86_64", cpu_count=2,
                  libraries={"torch": "2.13.0+cpu"})
CREATED = "2026-01-01T00:00:00+00:00"


def _run(out: Path, model: str, seed: int, ranks: np.ndarray, epoch_s: float, curve_scale: float) -> None:
    per_user = per_user_metrics(ranks)
    clustering = 0.2 if model == "iclrec" else 0.0
    seconds = {"batches": 0.1, "clustering": clustering, "train": epoch_s, "validation": 0.3}
    curve = tuple(CurvePoint(epoch=e, valid={"NDCG@20": curve_scale * (1 - 0.7**(e + 1))}, seconds=seconds,
                             losses={"loss": 1.0 / (e + 1)}, elapsed=(e + 1) * (epoch_s + 0.4 + clustering))
                  for e in range(6))
    total = curve[-1].elapsed
    rec = RunRecord(id=f"{model}-{seed}", created=CREATED, model=model, dataset="toyset", seed=seed,
                    config_hash=f"cfg-{model}", metrics={k: float(v.mean()) for k, v in per_user.items()},
                    protocol=PROTO, curve=curve, epochs_run=6, best_epoch=5, stop_reason="max_epochs", provenance=PROV,
                    device=Device(type="cpu", name="fixture", torch_threads=2),
                    timing=Timing(epoch_mean_s=total / 6, train_total_s=total, time_to_best_s=total),
                    memory=Memory(peak_rss_mb=900.0 + 10 * seed))
    append_record(out, rec, {**per_user, "rank": ranks})


def write_fixture(out: Path) -> Path:
    """Two models x three seeds on one dataset, one failed run, one eval record of another protocol."""
    users = 400
    for seed in (1, 2, 3):
        rng = np.random.default_rng(seed)
        base = rng.geometric(0.04, size=users)  # 1-based ranks
        better = np.maximum(1, base - rng.integers(0, 4, size=users))
        _run(out, "iclrec", seed, base, 2.0 + 0.05 * seed, 0.05)
        _run(out, "elcrec", seed, better, 1.6 + 0.05 * seed, 0.055)
    append_record(out, FailureRecord(id="sasrec-1", created=CREATED, model="sasrec", dataset="toyset", seed=1,
                                     config_hash="cfg-sasrec",
                                     reason="RunFailure: non-finite loss (nan) at epoch 3, batch 7_a & 50%"))
    ranks = np.random.default_rng(9).geometric(0.05, size=users)
    proto = replace(PROTO, hash="feedc0ffee000002", seen_items="exclude")
    append_record(out, EvalRecord(id="eval-1", created=CREATED, model="elcrec", dataset="toyset", protocol=proto,
                                  metrics={k: float(v.mean()) for k, v in per_user_metrics(ranks).items()},
                                  provenance=PROV), {**per_user_metrics(ranks), "rank": ranks})
    return out
