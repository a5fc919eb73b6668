"""Published numbers beside ours: each model's seed mean against what a paper (or a released
checkpoint) reports for it on the same data. No torch.

A claims file names its published numbers with a top-level `published = "published.toml"` (a path
relative to the claims file), or holds them itself: one `[[published]]` table per source and dataset:

    [[published]]
    source = "ELCRec paper, Table 1 (mean of three runs)"
    dataset = "beauty"
    metrics = ["HR@5", "HR@20", "NDCG@5", "NDCG@20"]
    [published.values]
    sasrec = [0.0374, 0.0901, 0.0241, 0.0387]   # one number per metric, in that order

This is a description, not a verdict: a published number is one run or a mean of a few, of code
that may differ from ours, so the report shows how far our seed mean lies from it (with a t
interval over our seeds) and judges nothing on it. Claims are judged on our records alone.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.errors import BenchError
from bench.metrics import METRIC_NAMES
from bench.results import stats


@dataclass(frozen=True)
class Published:
    source: str
    dataset: str
    model: str
    values: dict[str, float]  # metric -> the published number


@dataclass(frozen=True)
class Beside:
    """Our seed mean of one model and metric next to one published number."""

    model: str
    source: str
    metric: str
    seeds: int
    ours: float
    published: float
    rel: float  # ours / published - 1
    low: float  # 95% t interval of rel over our seeds; nan with one seed
    high: float


def published_path(claims: Path) -> Path | None:
    """The file holding a claims file's published numbers: the one it names (`published = "..."`),
    itself where it holds `[[published]]` tables, else None."""
    try:
        name = tomllib.loads(claims.read_text()).get("published")
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise BenchError(f"{claims}: cannot read claims ({e})") from None
    if name is None or isinstance(name, list):
        return None if name is None else claims
    if not isinstance(name, str):
        raise BenchError(f"{claims}: published must be a file name or [[published]] tables")
    path = claims.parent / str(name)
    if not path.is_file():
        raise BenchError(f"{claims}: published = {name!r}: no such file {path}")
    return path


def load_published(path: Path) -> list[Published]:
    """Every (source, dataset, model) entry of a published-numbers file; a malformed entry is a
    one-line BenchError."""
    try:
        raw = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise BenchError(f"{path}: cannot read published numbers ({e})") from None
    out = []
    for i, table in enumerate(raw.get("published", []), 1):
        out += _entries(path, i, table)
    return out


def _entries(path: Path, i: int, table: dict[str, Any]) -> list[Published]:
    where = f"{path}: published {i}"
    extra = set(table) - {"source", "dataset", "metrics", "values"}
    if extra or not {"source", "dataset", "metrics", "values"} <= set(table):
        raise BenchError(f"{where}: needs exactly source, dataset, metrics and values (got {', '.join(sorted(table))})")
    metrics = list(table["metrics"])
    unknown = [m for m in metrics if m not in METRIC_NAMES]
    if unknown:
        raise BenchError(f"{where}: unknown metric(s) {', '.join(unknown)}; known: {', '.join(METRIC_NAMES)}")
    out = []
    for model, values in table["values"].items():
        if not isinstance(values, list) or len(values) != len(metrics):
            raise BenchError(f"{where}: {model} needs {len(metrics)} numbers, one per metric")
        nums = [float(v) for v in values]
        if any(v <= 0 for v in nums):  # nan (a cell the source leaves empty, "-") passes
            raise BenchError(f"{where}: {model}: a published number must be positive")
        out.append(Published(str(table["source"]), str(table["dataset"]), str(model),
                             {m: v for m, v in zip(metrics, nums, strict=True) if not math.isnan(v)}))
    return out


def beside(ok: pd.DataFrame, dataset: str, published: list[Published]) -> list[Beside]:
    """Per model with records here and per published entry of it on this dataset: our seed mean of
    each published metric, its ratio to the published number, and a t interval over our seeds. A
    variant (the model under other settings, "s3rec[pretrain_epochs=10]") gets a row of its own
    beside its model's number: its name says how it differs from what was published."""
    out = []
    base = ok["base_model"] if "base_model" in ok else ok["model"]
    for p in published:
        if p.dataset != dataset:
            continue
        for name, runs in ok[base == p.model].groupby("model", sort=True):
            for metric in (m for m in METRIC_NAMES if m in p.values):
                mean, lo, hi = stats.mean_interval(np.asarray(runs[metric], dtype=np.float64))
                pub = p.values[metric]
                out.append(Beside(str(name), p.source, metric, len(runs), mean, pub, mean / pub - 1,
                                  lo / pub - 1, hi / pub - 1))
    return out
