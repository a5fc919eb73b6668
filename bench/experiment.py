"""Experiment files: a study as data (`experiments/*.toml`), and the state of each of its runs.

An experiment names its profile, datasets, settings, claims file, records folder (`out`), report
folder, record folders of other studies its report also reads (`compare`), and one or more
`[[runs]]` groups of (models, seeds, optionally their own datasets). Each group is exactly one
`bench run` command (a `RunConfig`), expanded by `bench.runner.expand`, so runs
started by hand with the equivalent `bench run` count as done or partial here. A group marked
`optional = true` is shown by `--dry-run` but only run with `--extended`. Relative paths are taken
from the current directory, as `bench run --out` does. No torch here (`bench.runner` imports none).
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from bench.errors import BenchError
from bench.results.codeversion import recent_epoch_s
from bench.results.schema import FailureRecord, RunRecord
from bench.runner import PROFILES, Outcome, RunConfig, expand, state_file
from bench.spec import RunSpec

# key -> (type check, what it must be)
_STR = (lambda v: isinstance(v, str), "a string")
_STRS = (lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v), "a list of strings")
_INTS = (lambda v: isinstance(v, list) and bool(v) and all(type(x) is int for x in v), "a non-empty list of integers")
_INT = (lambda v: type(v) is int, "an integer")
_NUM = (lambda v: type(v) in (int, float), "a number")
_BOOL = (lambda v: isinstance(v, bool), "true or false")
_TABLES = (lambda v: isinstance(v, list) and bool(v) and all(isinstance(x, dict) for x in v),
           "a non-empty array of tables ([[runs]])")
TOP_KEYS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "name": _STR, "description": _STR, "profile": _STR, "datasets": _STRS, "claims": _STR, "out": _STR,
    "report": _STR, "formats": _STRS, "epochs": _INT, "set": _STRS, "device": _STR, "jobs": _INT,
    "threads": _INT, "timeout": _NUM, "data_dir": _STR, "runs": _TABLES, "compare": _STRS, "kind": _STR,
    "published": _STR,
}
GROUP_KEYS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "name": _STR, "models": _STRS, "seeds": _INTS, "optional": _BOOL, "set": _STRS, "datasets": _STRS,
}
REQUIRED_TOP = ("profile", "out", "report", "runs")
REQUIRED_GROUP = ("models", "seeds")
# what a file's top-level `kind` may be: "runs" (the default: [[runs]] groups of `bench run`), or a study
# whose points are no training runs ("scaling": bench.perf.scaling)
STUDY_KINDS = ("runs", "scaling")


@dataclass(frozen=True)
class Group:
    name: str
    optional: bool
    cfg: RunConfig  # the equivalent `bench run` command


@dataclass(frozen=True)
class Experiment:
    path: Path
    name: str
    groups: tuple[Group, ...]
    claims: Path | None
    report: Path
    formats: tuple[str, ...]
    compare: tuple[Path, ...] = ()  # record folders of other studies that the report also reads
    published: Path | None = None  # published numbers beside ours (default: the file the claims file names)

    @property
    def out(self) -> Path:
        return self.groups[0].cfg.out


def _check_keys(table: dict[str, Any], allowed: dict[str, tuple[Callable[[Any], bool], str]],
                required: tuple[str, ...], where: str) -> None:
    unknown = sorted(set(table) - set(allowed))
    if unknown:
        raise BenchError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(allowed)}")
    missing = [k for k in required if k not in table]
    if missing:
        raise BenchError(f"{where}: missing key(s) {', '.join(missing)}")
    for key, value in table.items():
        ok, what = allowed[key]
        if not ok(value):
            raise BenchError(f"{where}: {key} must be {what}, got {value!r}")


def _read(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise BenchError(f"{path}: no such experiment file") from None
    except tomllib.TOMLDecodeError as e:
        raise BenchError(f"{path}: not valid TOML ({e})") from None


def study_kind(path: Path) -> tuple[str, dict[str, Any]]:
    """The file's `kind` (default "runs") and its parsed table; an unknown kind is a one-line BenchError."""
    top = _read(path)
    kind = top.get("kind", "runs")
    if kind not in STUDY_KINDS:
        raise BenchError(f"{path}: unknown kind {kind!r}; known: {', '.join(STUDY_KINDS)}")
    return kind, top


def _group(raw: dict[str, Any], i: int, top: dict[str, Any], path: Path) -> Group:
    where = f"{path}: [[runs]] #{i + 1}"
    _check_keys(raw, GROUP_KEYS, REQUIRED_GROUP, where)
    datasets = raw.get("datasets", top.get("datasets", ()))  # a group may train on other data than the study's
    cfg = RunConfig(models=tuple(raw["models"]), datasets=tuple(datasets), seeds=tuple(raw["seeds"]),
                    profile=top["profile"], epochs=top.get("epochs"), set=(*top.get("set", ()), *raw.get("set", ())),
                    device=top.get("device", "cpu"), jobs=top.get("jobs", 1), threads=top.get("threads", 0),
                    timeout=float(top.get("timeout", 0.0)),
                    data_dir=Path(top["data_dir"]) if "data_dir" in top else None, out=Path(top["out"]))
    return Group(raw.get("name", f"group {i + 1}"), raw.get("optional", False), cfg)


def load_experiment(path: Path) -> Experiment:
    """Parses and checks an experiment file: unknown or mistyped keys, an unknown profile, a missing
    claims file are one-line BenchErrors. Models, datasets and settings are checked by `validate`."""
    top = _read(path)
    _check_keys(top, TOP_KEYS, REQUIRED_TOP, str(path))
    if top["profile"] not in PROFILES:
        raise BenchError(f"{path}: unknown profile {top['profile']!r}; known: {', '.join(PROFILES)}")
    claims = Path(top["claims"]) if "claims" in top else None
    published = Path(top["published"]) if "published" in top else None
    for what, file in (("claims", claims), ("published numbers", published)):
        if file is not None and not file.is_file():
            raise BenchError(f"{path}: {what} file {file} does not exist")
    groups = tuple(_group(raw, i, top, path) for i, raw in enumerate(top["runs"]))
    formats = tuple(top.get("formats", ("md",)))
    compare = tuple(Path(p) for p in top.get("compare", ()))
    return Experiment(path, top.get("name", path.stem), groups, claims, Path(top["report"]), formats, compare,
                      published)


def override(exp: Experiment, **changes: Any) -> Experiment:
    """The experiment with command-line overrides (None: keep the file's) applied to every group."""
    changes = {k: v for k, v in changes.items() if v is not None}
    return replace(exp, groups=tuple(replace(g, cfg=replace(g.cfg, **changes)) for g in exp.groups))


def validate(exp: Experiment) -> list[tuple[Group, RunSpec]]:
    """Every run of every group as (group, RunSpec), checked as `bench run` checks them
    (options, models, datasets, settings): the first problem is a one-line BenchError."""
    from bench.runner import _check_options, _validate

    runs = []
    for g in exp.groups:
        _check_options(g.cfg)
        specs = expand(g.cfg)
        try:
            _validate(g.cfg, specs)
        except BenchError as e:
            raise BenchError(f"{exp.path}: {g.name}: {e}") from None
        runs += [(g, s) for s in specs]
    return runs


def legacy_epoch(state: Path) -> int:
    """Epochs done in a state saved before sidecars existed: needs torch (the state is a pickle)."""
    return int(_progress(state).epoch)


def _progress(state: Path) -> Any:
    import torch

    return torch.load(state, map_location="cpu", weights_only=False)["progress"]


@dataclass(frozen=True)
class Left:
    """What a run not yet done still needs: `least` epochs if early stopping comes at its first
    chance, `most` the budget's; `pace` seconds an epoch (None: not measured yet), `borrowed` when
    that pace is its model's under other settings (no run of its own settings has one), `scaled`
    when it is its model's on other datasets, scaled to this one's size (no run on this one)."""

    least: int
    most: int
    pace: float | None = None
    borrowed: bool = False
    scaled: bool = False


def epochs_left(spec: RunSpec, side: dict[str, Any] | None, state: Path | None) -> Left:
    """A run's `Left` from its state's sidecar (a run with no state: all of it, pace unknown). The
    pace is the state's last epochs' (read from the state itself where older code wrote no
    `epoch_s` beside it)."""
    tc = spec.train_config
    if not side or state is None:
        return Left(min(tc.epochs, tc.patience + 1), tc.epochs)
    epoch, best = int(side.get("epoch", 0)), side.get("best_epoch")
    best = -1 if best is None else int(best)
    least = max(0, min(tc.epochs, max(best, 0) + tc.patience + 1) - epoch)  # no best yet: as if epoch 0's
    try:
        pace = side.get("epoch_s") or recent_epoch_s(_progress(state).curve)
    except Exception:  # a torn or foreign state: no pace, the epochs alone
        pace = None
    return Left(least, tc.epochs - epoch, pace)


def _time_left(spec: RunSpec, side: dict[str, Any], state: Path, epoch: int) -> str:
    """"; 38-123 epochs left, 0.7-2.4 h at 70 s an epoch": at least the epochs early stopping needs
    if validation never improves again, at most the budget's."""
    best = side.get("best_epoch", -1)
    if best is None or best < 0:
        return ""
    left = epochs_left(spec, {**side, "epoch": epoch}, state)
    least, most, pace = left.least, left.most, left.pace
    score = side.get("best_valid_ndcg20")
    text = f" (best validation NDCG@20 {score:.4f} at epoch {best + 1})" if score is not None else ""
    text += f"; {least}-{most} epochs left" if least < most else f"; {most} epoch{'s' * (most != 1)} left"
    if pace:
        span = f"{duration(least * pace)}-" if least < most else ""
        text += f", {span}{duration(most * pace)} at {pace:.0f} s an epoch"
    return text


def duration(seconds: float) -> str:
    """"45 s", "12 min", "2.7 h"."""
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min" if seconds < 5400 \
        else f"{seconds / 3600:.1f} h"


def run_state(spec: RunSpec, out: Path, records: dict[tuple[str | None, int | None], Outcome],
              state: Path | None = None) -> tuple[str, str]:
    """(kind, text): ("done", "done (best epoch 7 of 12, test NDCG@5 0.0351)"), ("partial", "partial
    at epoch 3 of 300"), or ("todo", "to do"), with the last failure's reason where one is recorded.
    Epochs count from 1 here (records keep the 0-based `best_epoch`). `state`: read the run's
    state there instead of in `out` (a carried state, `bench.carry`)."""
    from bench.results.codeversion import code_version, describe, read_sidecar, same_code, sidecar_code

    rec = records.get((spec.config_hash, spec.seed))
    if isinstance(rec, RunRecord):
        return "done", (f"done (best epoch {(rec.best_epoch or 0) + 1} of {rec.epochs_run}, "
                        f"test NDCG@5 {rec.metrics['NDCG@5']:.4f})")
    state = state or state_file(out, spec)
    failed = f" (last attempt failed: {rec.reason})" if isinstance(rec, FailureRecord) else ""
    if not state.exists():
        return "todo", "to do" + failed
    side = read_sidecar(state)
    try:
        epoch = side["epoch"] if side else legacy_epoch(state)
    except Exception as e:  # a torn or foreign state: the run will say more when it resumes
        return "partial", f"partial (state unreadable: {type(e).__name__})"
    text = f"partial at epoch {epoch} of {spec.train_config.epochs}" + (_time_left(spec, side, state, epoch)
                                                                         if side else "")
    pre = side.get("pretrain_epoch") if side else None
    if side and epoch == 0 and pre:  # still pre-training (S3-Rec)
        text = f"partial: pre-training at epoch {pre} of {side.get('pretrain_epochs', '?')}, training not started"
    code = sidecar_code(side)
    if not same_code(code, code_version()):
        text += f", saved by code {describe(code)}: resuming needs --allow-code-change"
    return "partial", text + failed


def latest_records(out: Path) -> dict[tuple[str | None, int | None], Outcome]:
    """Per (config hash, seed) the latest ok run record, else the latest failed one."""
    from bench.results.records import RECORDS_FILE, read_records

    if not (out / RECORDS_FILE).exists():
        return {}
    best: dict[tuple[str | None, int | None], Outcome] = {}
    for rec in read_records([out / RECORDS_FILE]):  # the file, not the folder: no nested copies
        if not isinstance(rec, Outcome):
            continue
        key = (rec.config_hash, rec.seed)
        if isinstance(rec, RunRecord) or not isinstance(best.get(key), RunRecord):
            best[key] = rec
    return best
