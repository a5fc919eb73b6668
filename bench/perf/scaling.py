"""The scaling study: an experiment file of `kind = "scaling"` (`experiments/scaling.toml`), its points and
their states, run by `python -m bench reproduce FILE`.

A point is (model, scale, repeat): one fresh process (`bench.perf.scale_worker`, started and watched by
`bench.perf.scale_point`) on Beauty-shaped synthetic data (`bench.data.beautylike`) at `scale` x Beauty's
users, with Beauty's preset. Points run one at a time, repeat after repeat (`points`). Each point
appends one record of kind "scaling" to `out`; a rerun skips the points that have an ok record for
the same settings (`config_hash`), so a killed study resumes where it was. A point that cannot fit
(predicted from the same model's smaller points, or stopped at the memory limit, or killed by the
kernel) is recorded with what limits it and is tried again only when more memory is available
(`bench.perf.scale_point`, which also has the command). Then the report
(`bench.results.scaling_report`) is written. No torch here.
"""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.errors import BenchError
from bench.experiment import _check_keys, _read

_NUMS = (lambda v: isinstance(v, list) and bool(v) and all(type(x) in (int, float) and x > 0 for x in v),
         "a non-empty list of positive numbers")
_STRS = (lambda v: isinstance(v, list) and bool(v) and all(isinstance(x, str) for x in v),
         "a non-empty list of strings")
_SETS = (lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v), "a list of strings")
_STR = (lambda v: isinstance(v, str), "a string")
_INT0 = (lambda v: type(v) is int and v >= 0, "an integer >= 0")
_INT1 = (lambda v: type(v) is int and v >= 1, "an integer >= 1")
_NUM0 = (lambda v: type(v) in (int, float) and v >= 0, "a number >= 0")
KEYS = {"kind": _STR, "name": _STR, "description": _STR, "models": _STRS, "scales": _NUMS, "repeats": _INT1,
        "seed": _INT0, "data_seed": _INT0, "shape": _STR, "intents": _INT1, "batches": _INT1, "warmup": _INT0,
        "eval_users": _INT0, "batch_size": _INT1, "threads": _INT0, "device": _STR, "set": _SETS,
        "memory_limit_gb": _NUM0, "memory_reserve_gb": _NUM0, "timeout": _NUM0, "claims": _STR, "out": _STR,
        "report": _STR, "data_dir": _STR}
REQUIRED = ("kind", "models", "scales", "out", "report")


@dataclass(frozen=True)
class ScalingStudy:
    path: Path
    name: str
    description: str
    models: tuple[str, ...]
    scales: tuple[float, ...]
    out: Path
    report: Path
    repeats: int = 1
    seed: int = 1  # of the models' weights and the epoch's batches
    data_seed: int = 0  # of the generated data
    shape: str = "auto"  # bench.data.beautylike: Beauty.txt's shape, else the parametric fit
    intents: int = 64
    batches: int = 20  # timed training batches, extrapolated to the epoch
    warmup: int = 3  # untimed batches before them
    eval_users: int = 0  # users evaluated, extrapolated to all (0: no evaluation)
    batch_size: int = 256
    threads: int = 0  # torch threads of each point (0: torch's default, all cores)
    device: str = "cpu"
    set: tuple[str, ...] = ()  # hyper-parameter overrides, MODEL.KEY=VALUE, over Beauty's preset
    memory_limit_gb: float = 0.0  # a point is stopped above this RSS (0: what is available at its start)
    memory_reserve_gb: float = 1.0  # left to the machine when the limit is what is available
    timeout: float = 0.0  # seconds per point (0: none)
    claims: Path | None = None
    data_dir: Path | None = None


def load_study(path: Path, top: dict[str, Any] | None = None) -> ScalingStudy:
    """Parses and checks a scaling experiment file: every problem is a one-line BenchError."""
    top = _read(path) if top is None else top
    _check_keys(top, KEYS, REQUIRED, str(path))
    kw: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in top.items() if k != "kind"}
    for key in ("out", "report", "claims", "data_dir"):
        if key in kw:
            kw[key] = Path(kw[key])
    kw["scales"] = tuple(sorted(float(s) for s in kw["scales"]))
    study = ScalingStudy(path=path, name=kw.pop("name", path.stem), description=kw.pop("description", ""), **kw)
    _check_values(study)
    return study


def _check_values(study: ScalingStudy) -> None:
    from bench.data.beautylike import SHAPES
    from bench.runner import parse_sets

    where = str(study.path)
    if study.device not in ("cpu", "cuda"):
        raise BenchError(f"{where}: device must be cpu or cuda, got {study.device!r}")
    if study.shape not in SHAPES:
        raise BenchError(f"{where}: shape must be one of {', '.join(SHAPES)}, got {study.shape!r}")
    if len(set(study.scales)) != len(study.scales):
        raise BenchError(f"{where}: scales repeat a value: {list(study.scales)}")
    if study.claims is not None and not study.claims.is_file():
        raise BenchError(f"{where}: claims file {study.claims} does not exist")
    if study.out.exists() and not study.out.is_dir():
        raise BenchError(f"{where}: out {study.out} is a file; records go into a folder")
    if len(parse_sets(study.set, study.models)) != 1:
        raise BenchError(f"{where}: set gives one value per setting (a study is no grid): {list(study.set)}")


def validate(study: ScalingStudy) -> None:
    """Models, settings and the data spec as a run checks them (imports the model registry: torch)."""
    from bench.config import require_device
    from bench.data import check_dataset
    from bench.modelio import model_config

    for point in points(study)[: len(study.models)]:
        try:
            model_config(point["model"], point["hp"])
        except BenchError as e:
            raise BenchError(f"{study.path}: {e}") from None
    check_dataset(dataset_spec(study, study.scales[0]), study.data_dir)
    require_device(study.device)


def dataset_spec(study: ScalingStudy, scale: float) -> str:
    return f"beauty-like:scale={scale:g},seed={study.data_seed},intents={study.intents},shape={study.shape}"


def _overrides(study: ScalingStudy) -> dict[str, dict[str, Any]]:
    from bench.runner import parse_sets

    return parse_sets(study.set, study.models)[0]


def point_spec(study: ScalingStudy, model: str, scale: float, repeat: int) -> dict[str, Any]:
    """What the worker gets, with the hash of everything but the scale, the repeat and the data folder."""
    from bench.presets import preset

    hp = {**preset("beauty-like", model), **_overrides(study).get(model, {})}
    spec = {"model": model, "hp": hp, "seed": study.seed, "data_seed": study.data_seed, "shape": study.shape,
            "intents": study.intents, "batches": study.batches, "warmup": study.warmup,
            "eval_users": study.eval_users, "batch_size": study.batch_size, "threads": study.threads,
            "device": study.device}
    spec["config_hash"] = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]
    return {**spec, "scale": scale, "repeat": repeat, "dataset": dataset_spec(study, scale),
            "data_dir": str(study.data_dir) if study.data_dir else None}


def points(study: ScalingStudy) -> list[dict[str, Any]]:
    """Repeat after repeat; scales ascending in odd repeats (the first one's smaller scales size the
    larger ones' memory) and descending in even ones, and the models' order rotated per repeat, so that
    a drift of the machine's speed over the hours of a study cancels out of the slopes, as the ABAB
    order of `bench cost` cancels it out of a ratio."""
    out = []
    for r in range(1, study.repeats + 1):
        k = (r - 1) % len(study.models)
        for scale in study.scales if r % 2 else reversed(study.scales):
            for model in (*study.models[k:], *study.models[:k]):
                out.append(point_spec(study, model, scale, r))
    return out


def key(rec: dict[str, Any]) -> tuple[str, float, int]:
    return rec["config_hash"], float(rec["scale"]), int(rec["repeat"])


def latest(out: Path, *more: Path) -> dict[tuple[str, float, int], dict[str, Any]]:
    """Per point the latest ok record, else its latest record of any status (of `out` and the
    folders `more`: a report's committed copy, which a study on a fresh clone restores)."""
    from bench.results.scaling import read_points

    best: dict[tuple[str, float, int], dict[str, Any]] = {}
    for rec in [p for folder in (out, *more) for p in read_points(folder)]:
        if rec["status"] == "ok" or best.get(key(rec), {}).get("status") != "ok":
            best[key(rec)] = rec
    return best


GIB = 1024.0


def describe(rec: dict[str, Any]) -> str:
    """One line of what a point's record says."""
    if rec["status"] != "ok":
        return f"{rec['status'].replace('_', ' ')}: {rec.get('reason', '')}"
    s, ex, mem = rec["seconds"], rec["extrapolation"], rec["memory"]
    return (f"done: epoch {s['epoch']:.1f} s (train extrapolated from {ex['train_batches_timed']} of "
            f"{ex['train_batches_per_epoch']} batches), epoch start {s['epoch_start']:.2f} s, init {s['init']:.2f} s, "
            f"peak RSS {mem['peak_rss_mb'] / GIB:.2f} GiB")


def settings(study: ScalingStudy) -> dict[str, Any]:
    """The study's settings as its report names them."""
    return {"experiment": str(study.path), "name": study.name, "description": study.description,
            "models": list(study.models), "scales": list(study.scales), "repeats": study.repeats,
            "seed": study.seed, "data_seed": study.data_seed, "shape": study.shape, "intents": study.intents,
            "batches": study.batches, "warmup": study.warmup, "eval_users": study.eval_users,
            "batch_size": study.batch_size, "threads": study.threads, "device": study.device, "set": list(study.set),
            "memory_limit_gb": study.memory_limit_gb, "memory_reserve_gb": study.memory_reserve_gb,
            "timeout": study.timeout}


def users_of(scale: float) -> int:
    from bench.data.beautylike import BEAUTY_USERS

    return max(1, round(scale * BEAUTY_USERS))


def eprint(*args: Any) -> None:
    print(*args, file=sys.stderr, flush=True)
