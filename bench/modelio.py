"""Building models from the registry and loading the authors' checkpoints strictly."""

from __future__ import annotations

import dataclasses
import pickle
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.config import build_config
from bench.errors import BenchError
from models import REGISTRY
from models.encoder import infer_layers
from models.protocol import RecModel


def check_model(name: str) -> None:
    if name not in REGISTRY:
        raise BenchError(f"unknown model {name!r}; known: {', '.join(REGISTRY)}")


def model_config(name: str, overrides: dict[str, Any]) -> Any:
    check_model(name)
    cls = REGISTRY[name].config
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise BenchError(f"{name}: unknown hyper-parameter(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    return build_config(cls, overrides, name)


def build_model(name: str, item_size: int, overrides: dict[str, Any], n_users: int = 0,
                attributes: Callable[[], np.ndarray] | None = None) -> RecModel:
    """A registry model; `n_users` sizes the user embeddings of the models that have them, and
    `attributes()` gives the (item_size, A) item-attribute matrix to the models that need one."""
    cfg = model_config(name, overrides)
    spec = REGISTRY[name]
    extra: tuple[Any, ...] = (n_users,) if spec.needs_users else ()
    if spec.needs_attributes:
        if attributes is None:
            raise BenchError(f"{name} needs item attributes, and none were given")
        extra += (attributes(),)
    try:
        return spec.model(item_size, cfg, *extra)  # type: ignore[no-any-return]
    except ValueError as e:
        raise BenchError(str(e)) from None


def _mismatches(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> list[str]:
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
              for k in own if k in state and state[k].shape != own[k].shape]
    out = []
    if missing:
        out.append("missing: " + ", ".join(missing))
    if unexpected:
        out.append("unexpected: " + ", ".join(unexpected))
    if shapes:
        out.append("shape (checkpoint vs model): " + ", ".join(shapes))
    return out


def _read_state(path: Path) -> Any:
    """torch.load with the safe (weights-only) unpickler; every way it can fail is one line."""
    if not path.is_file():
        raise BenchError(f"{path}: no such checkpoint file")
    try:
        return torch.load(path, weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as e:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(e))
        if found:  # a pickled Python object: loading it could run code
            raise BenchError(f"{path}: refused by the safe loader: it holds the Python object {found.group(1)}, "
                             "not only tensors; this tool never unpickles code from a checkpoint") from None
        detail = re.search(r"WeightsUnpickler error:\s*(.+)", str(e))
        why = detail.group(1).strip() if detail else str(e).strip().splitlines()[0]
        raise BenchError(f"{path}: not a torch checkpoint ({why[:160]})") from None
    except Exception as e:  # not a torch file: the legacy reader raises KeyError, EOFError, RuntimeError, ...
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise BenchError(f"{path}: not a torch checkpoint ({type(e).__name__}{': ' + first[:160] if first else ''})") \
            from None


def load_checkpoint(name: str, path: Path, item_size: int) -> RecModel:
    """An authors'-format state dict -> model; layers and k are inferred from the tensors."""
    check_model(name)
    state = _read_state(path)
    if not isinstance(state, dict) or "item_embeddings.weight" not in state:
        raise BenchError(f"{path}: not a state dict of this encoder (no item_embeddings.weight)")
    overrides: dict[str, Any] = {"layers": infer_layers(state)}
    fields = {f.name for f in dataclasses.fields(REGISTRY[name].config)}
    if "k" in fields and "cluster_centers" in state:
        overrides["k"] = int(state["cluster_centers"].shape[0])
    model = build_model(name, item_size, overrides)
    problems = _mismatches(model, state)  # type: ignore[arg-type]
    if problems:
        raise BenchError(f"{path} does not fit model {name} on this dataset: {'; '.join(problems)}")
    model.load_state_dict(state, strict=True)
    return model
