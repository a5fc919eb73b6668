"""Typed, frozen configs whose fields map 1:1 onto command-line flags (`--field-name`)."""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


def opt(default: Any = dataclasses.MISSING, help: str = "", choices: tuple[str, ...] | None = None,
        many: bool = False, positional: bool = False, flag: str | None = None) -> Any:
    """A config field: its help text, allowed values, whether the flag repeats (`many`) or is a
    positional argument (one or more values), and its flag where `--field-name` cannot be it
    (`--from`: a Python keyword)."""
    meta = {"help": help, "choices": choices, "many": many, "positional": positional, "flag": flag}
    return field(default=default, metadata=meta)


def check_types(cls: type, values: dict[str, Any], what: str) -> dict[str, Any]:
    """`--set` values against a config dataclass's annotations (bool, int, float, str); an int is
    accepted where a float is declared. Raises a one-line BenchError naming the setting."""
    from bench.errors import BenchError

    hints = typing.get_type_hints(cls)
    out = {}
    for key, value in values.items():
        kind = hints[key]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
            raise BenchError(f"{what}: {key} must be {kind.__name__}, got {value!r}")
        out[key] = value
    return out


def build_config(cls: type[T], values: dict[str, Any], what: str) -> T:
    """A config dataclass from `--set` values: their types (`check_types`), then the config's own range
    checks; either failure is a one-line BenchError naming `what`."""
    from bench.errors import BenchError

    try:
        return cls(**check_types(cls, values, what))
    except ValueError as e:
        raise BenchError(f"{what}: {e}") from None


def require_device(device: str) -> None:
    """A one-line BenchError where `--device cuda` asks for a GPU this machine does not show."""
    if device == "cuda":
        import torch

        from bench.errors import BenchError

        if not torch.cuda.is_available():
            raise BenchError("--device cuda: no CUDA device is visible here")


def _csv(kind: type) -> typing.Callable[[str], tuple[Any, ...]]:
    def parse(text: str) -> tuple[Any, ...]:
        try:
            return tuple(kind(x) for x in text.split(",") if x)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list of {kind.__name__}: {text!r}") from None

    return parse


def add_arguments(parser: argparse.ArgumentParser, cls: type) -> None:
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        hint, meta = hints[f.name], f.metadata
        flag = meta.get("flag") or "--" + f.name.replace("_", "-")
        kw: dict[str, Any] = {"help": meta.get("help", "").replace("%", "%%"), "dest": f.name}  # argparse formats help
        if f.default is dataclasses.MISSING:
            kw["required"] = True
        else:
            kw["default"] = f.default
        args = typing.get_args(hint)
        if meta.get("positional"):
            parser.add_argument(f.name, nargs="+", type=args[0], help=kw["help"])
            continue
        if hint is bool:
            kw["action"] = argparse.BooleanOptionalAction
        elif meta.get("many"):
            kw.update(nargs="+", action="extend", default=[])
        elif typing.get_origin(hint) is tuple:
            kw["type"] = _csv(args[0])
        elif isinstance(hint, types.UnionType):  # X | None
            kw["type"] = next(a for a in args if a is not type(None))
        else:
            kw["type"] = hint
        if meta.get("choices"):
            kw["choices"] = meta["choices"]
        parser.add_argument(flag, **kw)


def from_namespace(cls: type[T], ns: argparse.Namespace) -> T:
    values = {f.name: getattr(ns, f.name) for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.metadata.get("many") or f.metadata.get("positional"):
            values[f.name] = tuple(values[f.name])
    return cls(**values)


@dataclass(frozen=True)
class EvalConfig:
    model: str = opt(help="model name (see `bench list`)")
    dataset: str = opt(help="dataset name (see `bench list`)")
    checkpoint: Path = opt(help="a state dict in the authors' format")
    data_dir: Path | None = opt(None, help="folder with the dataset file (else $INTENTBENCH_DATA_DIR, cache, download)")
    seen_items: str = opt("zero", help="score of already-seen items: zero (authors) or exclude (-inf)",
                          choices=("zero", "exclude"))
    json: bool = opt(False, help="print one JSON object instead of a table")
    out: Path | None = opt(None, help="append an eval record (JSON line + per-user sidecar) to this folder")
