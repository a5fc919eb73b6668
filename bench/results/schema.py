"""Typed records: one frozen dataclass per kind of record, and their JSON form. No torch.

A record is one JSON object on one line of `records.jsonl` (`bench.results.records` writes and
reads the files). Its `kind` and `status` say which dataclass it is:

- `RunRecord` (kind "run", status "ok"): a finished training run: test metrics, validation curve,
  timing, memory;
- `FailureRecord` (kind "run", status "failed"): a run that crashed, was killed or timed out, and why;
- `EvalRecord` (kind "eval"): a checkpoint's test metrics (`bench eval --out`);
- `CostRecord` (kind "cost"): one model's side of the paired cost benchmark (`bench cost`).

Every record has an id, its creation time, model, dataset, seed and the `Provenance` of the process
that wrote it. Nested parts that readers use by name are dataclasses too; maps keyed by data
(metrics by name, hyper-parameters, seconds by phase) stay dicts.

Schema versions (the `schema` field):
1. untyped records, written up to commit 46e3ebb: fields were left out where the writer had none
   (a failure without provenance, an old run without `timing.setup_s`, an eval without `device`).
2. typed records: the same JSON shape, with every field written (null where unknown).
A line of either loads: an absent field takes its default (None, or an empty map or list), which is
what readers of schema 1 took an absent field for. A newer schema, an unknown kind or status, or a
field this code does not know is a one-line BenchError naming the file and line.
"""

from __future__ import annotations

import typing
import uuid
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from types import UnionType
from typing import Any, ClassVar, TypeVar

from bench.errors import BenchError
from bench.fileio import now
from bench.spec import TrainConfig

SCHEMA_VERSION = 2
T = TypeVar("T")


def new_id() -> str:
    return uuid.uuid4().hex[:16]


# ---------------------------------------------------------------- JSON <-> dataclasses


_HINTS: dict[type, dict[str, Any]] = {}  # resolving annotations takes longer than loading a record


def _hints(cls: type) -> dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def _load(cls: type[T], obj: Any, where: str) -> T:
    """A dataclass from its JSON object; absent fields take their defaults."""
    if not isinstance(obj, dict):
        raise BenchError(f"{where}: expected an object, got {type(obj).__name__}")
    known = {f.name for f in fields(cls) if f.init and f.metadata.get("json", True)}  # type: ignore[arg-type]
    unknown = sorted(set(obj) - known)
    if unknown:
        raise BenchError(f"{where}: unknown field(s) {', '.join(unknown)} (written by other code?)")
    hints = _hints(cls)
    given = {k: v for k, v in obj.items() if v is not None or _optional(hints[k])}  # null: unknown, as absent
    try:
        return cls(**{k: _value(hints[k], v, f"{where}.{k}") for k, v in given.items()})
    except (TypeError, ValueError) as e:  # a required field absent, a value out of range
        raise BenchError(f"{where}: {e}") from None


def _optional(tp: Any) -> bool:
    return tp is Any or (isinstance(tp, UnionType) and type(None) in typing.get_args(tp))


def _value(tp: Any, v: Any, where: str) -> Any:
    """A JSON value as the annotated type: nested dataclasses and tuples of them; the rest as is."""
    if v is None:
        return None
    if isinstance(tp, UnionType):  # `X | None`: the one non-None type
        tp = next(a for a in typing.get_args(tp) if a is not type(None))
    if is_dataclass(tp):
        return tp.from_json(v, where) if hasattr(tp, "from_json") else _load(tp, v, where)  # type: ignore[arg-type]
    if typing.get_origin(tp) is tuple:
        if not isinstance(v, list | tuple):
            raise BenchError(f"{where}: expected a list, got {type(v).__name__}")
        item = typing.get_args(tp)[0]
        return tuple(_value(item, x, f"{where}[{i}]") for i, x in enumerate(v))
    return v


def _dump(v: Any) -> Any:
    if is_dataclass(v) and not isinstance(v, type):
        return v.to_json() if hasattr(v, "to_json") else {f.name: _dump(getattr(v, f.name)) for f in fields(v)}
    if isinstance(v, tuple | list):
        return [_dump(x) for x in v]
    return v


LATER = {"later": True}  # field metadata: added after records were committed; omitted from JSON while None


class _Json:
    """`to_json` / `from_json` of a dataclass whose fields all go to JSON (except `folder`)."""

    @classmethod
    def from_json(cls: type[T], obj: Any, where: str = "record") -> T:
        return _load(cls, obj, where)

    def to_json(self) -> dict[str, Any]:
        # fields added after records were committed are left out while None (LATER), so that
        # re-saving an older record (a report's copy) gives back its very bytes
        return {f.name: _dump(getattr(self, f.name)) for f in fields(self)  # type: ignore[arg-type]
                if f.metadata.get("json", True) and not (f.metadata.get("later") and getattr(self, f.name) is None)}


# ---------------------------------------------------------------- nested parts


@dataclass(frozen=True, kw_only=True)
class CodeVersion(_Json):
    """The code a process ran (`bench.results.codeversion`)."""

    commit: str | None = None  # None outside a git checkout
    dirty: bool | None = None
    source_sha256: str | None = None  # None in records of code before source hashes
    run_sha256: str | None = field(default=None, metadata=LATER)  # the sources less bench/results/


@dataclass(frozen=True, kw_only=True)
class CodeChange(_Json):
    """A run resumed, with --allow-code-change, from a state saved by other code."""

    state_code: CodeVersion | None = None  # None: saved before code versions were recorded
    code: CodeVersion | None = None
    allowed: bool = True


@dataclass(frozen=True, kw_only=True)
class Provenance(_Json):
    """Where a record was written (empty in schema-1 failure records, which had none)."""

    host: str | None = None
    platform: str | None = None
    machine: str | None = None
    cpu: str | None = None
    cpu_count: int | None = None
    python: str | None = None
    libraries: dict[str, str | None] = field(default_factory=dict)
    git: CodeVersion | None = None  # None in records of code before code versions were recorded


@dataclass(frozen=True, kw_only=True)
class Device(_Json):
    """What ran it: "cpu" or "cuda", the CPU or GPU model, torch threads, and on CPU whether the
    native kernels or torch computed the training passes (None in records of older code)."""

    type: str | None = None
    name: str | None = None
    torch_threads: int | None = None
    kernels: str | None = None


@dataclass(frozen=True, kw_only=True)
class RecordedProtocol(_Json):
    """The evaluation protocol as recorded (`bench.protocol.Protocol.as_dict()` of its day): its
    fingerprint `hash` decides which records may be compared."""

    hash: str | None = None
    dataset: str | None = None
    dataset_sha256: str | None = None
    seen_items: str | None = None
    split: str | None = None
    candidates: str | None = None
    ties: str | None = None
    cutoffs: tuple[int, ...] = ()
    max_len: int | None = None


@dataclass(frozen=True, kw_only=True)
class CurvePoint(_Json):
    """One epoch of a run: validation metrics, mean losses, seconds per phase, seconds of training
    so far. In JSON the validation metrics are flat `valid_<metric>` fields."""

    epoch: int
    elapsed: float
    seconds: dict[str, float] = field(default_factory=dict)
    losses: dict[str, float] = field(default_factory=dict)
    valid: dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_json(cls, obj: Any, where: str = "curve point") -> CurvePoint:
        if not isinstance(obj, dict):
            raise BenchError(f"{where}: expected an object, got {type(obj).__name__}")
        valid = {k.removeprefix("valid_"): v for k, v in obj.items() if k.startswith("valid_")}
        rest = {k: v for k, v in obj.items() if not k.startswith("valid_")}
        return _load(cls, {**rest, "valid": valid}, where)

    def to_json(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "elapsed": self.elapsed, "seconds": self.seconds, "losses": self.losses,
                **{f"valid_{k}": v for k, v in self.valid.items()}}


@dataclass(frozen=True, kw_only=True)
class Timing(_Json):
    """A run's wall times (seconds); None where the run's code did not measure it."""

    setup_s: float | None = None
    train_total_s: float | None = None
    time_to_best_s: float | None = None
    test_s: float | None = None
    epoch_mean_s: float | None = None
    train_sequences_per_s: float | None = None
    phase_total_s: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class MemorySamples(_Json):
    """The memory sampler's summary (`bench.memory`): per phase the samples and the averages and
    peaks of each counter; `timeline`: one epoch's samples as columns (t, phase, rss_mb, ...)."""

    interval_s: float | None = None
    by_phase: dict[str, dict[str, float]] = field(default_factory=dict)
    timeline: dict[str, Any] | None = None


@dataclass(frozen=True, kw_only=True)
class Memory(_Json):
    """Peak resident memory of the process (MB), and where sampled the average over training, the
    samples, and the GPU allocator's counters per phase (bytes)."""

    peak_rss_mb: float | None = None
    rss_avg_mb: float | None = None
    gpu_peak_by_phase: dict[str, dict[str, int]] = field(default_factory=dict)
    gpu_avg_by_phase: dict[str, dict[str, int]] = field(default_factory=dict)
    sampled: MemorySamples | None = None


@dataclass(frozen=True, kw_only=True)
class CostEpoch(_Json):
    """One epoch of the paired cost benchmark, with its place in the interleaving and the load."""

    epoch: int
    epoch_s: float
    round: int
    position: int
    warmup: bool
    started: float | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    valid_ndcg20: float | None = None
    loadavg_before: tuple[float, ...] = ()
    loadavg_after: tuple[float, ...] = ()
    gpu_avg_mb: float | None = field(default=None, metadata=LATER)  # average reserved GPU memory (CUDA only)


# ---------------------------------------------------------------- records

NOT_JSON = {"json": False}


@dataclass(frozen=True, kw_only=True)
class Record(_Json):
    """What every record has. `folder`: the folder of the file it was read from (its per-user
    sidecar's path is relative to it); not written."""

    KIND: ClassVar[str]
    STATUS: ClassVar[str] = "ok"

    id: str = field(default_factory=new_id)
    created: str = field(default_factory=now)
    model: str
    dataset: str
    seed: int | None = None
    provenance: Provenance = field(default_factory=Provenance)
    folder: Path | None = field(default=None, compare=False, repr=False, metadata=NOT_JSON)

    @property
    def kind(self) -> str:
        return self.KIND

    @property
    def status(self) -> str:
        return self.STATUS

    def to_json(self) -> dict[str, Any]:
        return {"schema": SCHEMA_VERSION, "kind": self.KIND, "status": self.STATUS, **super().to_json()}


@dataclass(frozen=True, kw_only=True)
class Attempt(Record):
    """A try at a sweep's run (`bench.runner`): which try, and the run's spec as hashed."""

    attempt: str | None = None
    config_hash: str | None = None
    config: dict[str, Any] = field(default_factory=dict)  # `RunSpec.as_dict()`
    resumed: bool | None = None  # None: the try failed before it knew, or older code
    code_change: CodeChange | None = None


@dataclass(frozen=True, kw_only=True)
class Measured(Record):
    """A record of a process that measured something: on which device, with how much memory."""

    device: Device = field(default_factory=Device)
    memory: Memory = field(default_factory=Memory)


@dataclass(frozen=True, kw_only=True)
class Evaluated(Measured):
    """Test metrics under a protocol, with per-user arrays in a sidecar (`per_user_file`)."""

    metrics: dict[str, float] = field(default_factory=dict)
    protocol: RecordedProtocol = field(default_factory=RecordedProtocol)
    per_user_file: str | None = None


@dataclass(frozen=True, kw_only=True)
class RunRecord(Attempt, Evaluated):
    KIND = "run"

    dataset_sha256: str | None = None
    epochs_run: int | None = None
    best_epoch: int | None = None  # 0-based
    best_valid_ndcg20: float | None = None
    stop_reason: str | None = None  # "max_epochs" or "early_stopping"
    curve: tuple[CurvePoint, ...] = ()
    pretrain_curve: tuple[dict[str, float], ...] | None = field(default=None, metadata=LATER)  # per pre-training epoch
    timing: Timing = field(default_factory=Timing)
    train_config: TrainConfig | None = None  # the settings it trained with, defaults included
    diagnostics: dict[str, float] | None = None  # clustering diagnostics of intent models (best weights)
    diagnostics_init: dict[str, float] | None = None  # the same of the initial centres, after epoch 0's hook
    # how alike the users' test scoring vectors are (best weights; `bench.evaluate.representation_stats`):
    # mean_cosine near 1 is a collapse, every user ranked alike
    representation: dict[str, float] | None = field(default=None, metadata=LATER)
    model_config: dict[str, Any] | None = None  # every hyper-parameter of the model, defaults included
    model_info: dict[str, Any] | None = None  # `models.protocol.model_info`
    weights_file: str | None = field(default=None, metadata=LATER)  # the tested weights, relative to the folder
    # each stretch the run trained in one process (from_epoch, host, cpu, device, torch_threads): more
    # than one when it was resumed; its times mix machines when their cpus differ
    segments: tuple[dict[str, Any], ...] | None = field(default=None, metadata=LATER)


@dataclass(frozen=True, kw_only=True)
class FailureRecord(Attempt):
    KIND = "run"
    STATUS = "failed"

    reason: str = ""
    stderr_tail: str | None = None
    wall_s: float | None = None  # set where the runner, not the worker, wrote it


@dataclass(frozen=True, kw_only=True)
class EvalRecord(Evaluated):
    KIND = "eval"

    checkpoint: str | None = None
    checkpoint_sha256: str | None = None
    n_users: int | None = None
    diagnostics: dict[str, float] | None = field(default=None, metadata=LATER)  # as RunRecord's
    representation: dict[str, float] | None = field(default=None, metadata=LATER)  # as RunRecord's


@dataclass(frozen=True, kw_only=True)
class CostRecord(Measured):
    KIND = "cost"

    pair: str  # the id shared by the records of one `bench cost` command
    config_hash: str | None = None
    config: dict[str, Any] = field(default_factory=dict)  # `RunSpec.as_dict()` of the paper run
    models: tuple[str, ...] = ()  # the compared models, the subject first
    warmup: int = 0
    rounds: int = 0
    epochs: tuple[CostEpoch, ...] = ()
    summary: dict[str, Any] = field(default_factory=dict)  # as printed: median epochs, ratios


KINDS: dict[tuple[str, str], type[Record]] = {
    (c.KIND, c.STATUS): c for c in (RunRecord, FailureRecord, EvalRecord, CostRecord)}


def parse_record(obj: Any, where: str) -> Record:
    """The record of one JSON line (schema 1 or 2); `where` ("file:line") names it in errors."""
    if not isinstance(obj, dict):
        raise BenchError(f"{where}: not a record (a JSON {type(obj).__name__}, not an object)")
    schema = obj.get("schema")
    if type(schema) is not int or not 1 <= schema <= SCHEMA_VERSION:
        newer = type(schema) is int and schema > SCHEMA_VERSION
        raise BenchError(f"{where}: schema {schema!r}, this version reads 1 to {SCHEMA_VERSION}"
                         + ("; it was written by newer code" if newer else ""))
    kind, status = obj.get("kind"), obj.get("status")
    cls = KINDS.get((str(kind), str(status)))
    if cls is None:
        known = ", ".join(f"{k} ({s})" for k, s in KINDS)
        raise BenchError(f"{where}: unknown record kind {kind!r} with status {status!r}; known: {known}")
    missing = [k for k in ("id", "created") if obj.get(k) is None]  # every writer set them: not made up here
    if missing:
        raise BenchError(f"{where}: a {kind} record without {' or '.join(missing)}")
    body = {k: v for k, v in obj.items() if k not in ("schema", "kind", "status")}
    return cls.from_json(body, f"{where}: {kind} record")
