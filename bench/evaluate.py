"""Full-ranking evaluation over every item id, keeping each user's rank.

Scores are computed in chunks of users small enough to stay in cache; the seen-item rule is
applied to the chunk, then a user's rank is the number of items scoring at least the target's
(ties count against the model). Per-user metric arrays come back with the summary. The `bench
eval` command is `bench.eval_checkpoint`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from bench.data import SeqData, concat_ranges, windows
from bench.metrics import per_user_metrics, summarise
from bench.protocol import SEEN_RULES, Protocol
from bench.results.records import cpu_model
from models import fast
from models.protocol import RecModel


@dataclass(frozen=True)
class EvalResult:
    metrics: dict[str, float]
    per_user: dict[str, np.ndarray]  # metric -> (U,)
    ranks: np.ndarray  # (U,) 1-based
    protocol: Protocol
    representation: dict[str, float] = field(default_factory=dict)  # `representation_stats` of the users


def representation_stats(reps: torch.Tensor) -> dict[str, float]:
    """How alike the users' scoring vectors are, (U, D) -> {"mean_cosine": the mean cosine over all
    pairs of distinct users (1: every user gets the same ranking, a collapse), "mean_norm"}. The mean
    pairwise cosine is (|sum of unit vectors|^2 - U) / (U (U - 1)): no U x U matrix."""
    x = reps.detach().double()
    u = x.shape[0]
    norms = x.norm(dim=1)
    unit = x / norms.clamp_min(1e-12)[:, None]
    total = float(unit.sum(0).square().sum())
    cos = (total - float((norms > 0).sum())) / (u * (u - 1)) if u > 1 else float("nan")
    return {"mean_cosine": cos, "mean_norm": float(norms.mean())}


@torch.inference_mode()
def user_representations(model: RecModel, inputs: np.ndarray, chunk: int = 512) -> torch.Tensor:
    """(U, L) windows -> (U, D) last-position outputs, in eval mode.

    Users are processed in chunks of similar length, each cut to its longest history: a real
    position never attends to a padding key (its -10000 mask underflows to an exact 0 weight), so
    the dropped left-padding columns cannot change the output, and the work shrinks ~5x.
    """
    was_training = model.training  # type: ignore[attr-defined]
    model.eval()
    lengths = (inputs > 0).sum(1)
    order = np.argsort(lengths, kind="stable")
    device = model.item_weights().device
    out = torch.empty(len(inputs), model.item_weights().shape[1], device=device)
    for i in range(0, len(inputs), chunk):
        rows = order[i : i + chunk]
        width = max(int(lengths[rows].max()), 1)
        ids = torch.from_numpy(inputs[rows, -width:]).to(device)
        users = torch.from_numpy(rows).to(device)  # row u of the inputs is user u
        out[users] = model.user_repr(ids, users)
    model.train(was_training)
    return out


@torch.inference_mode()
def ranks_of_targets(reps: torch.Tensor, items: torch.Tensor, targets: np.ndarray, seen_rows: np.ndarray,
                     seen_items: np.ndarray, rule: str, chunk: int = 64) -> np.ndarray:
    """reps (U, D), items (I, D); seen pairs (row, item) sorted by row -> 1-based ranks (U,)."""
    fill = 0.0 if rule == "zero" else float("-inf")
    n = reps.shape[0]
    dev = reps.device
    tgt = torch.from_numpy(targets).to(dev)
    bounds = np.searchsorted(seen_rows, np.arange(0, n + chunk, chunk))
    out = torch.empty(n, dtype=torch.int64, device=dev)
    for c, lo in enumerate(range(0, n, chunk)):
        hi = min(lo + chunk, n)
        scores = reps[lo:hi] @ items.T  # (C, I)
        a, b = bounds[c], bounds[c + 1]
        rows, cols = torch.from_numpy(seen_rows[a:b] - lo).to(dev), torch.from_numpy(seen_items[a:b]).to(dev)
        scores[rows, cols] = fill
        t = scores.gather(1, tgt[lo:hi, None])  # (C, 1)
        out[lo:hi] = (scores >= t).sum(1)
    return out.cpu().numpy()


def evaluate(model: RecModel, data: SeqData, stage: str = "test", seen_items: str = "zero",
             describe_users: bool = False) -> EvalResult:
    """Ranks every user's held-out item among all item ids under the given seen-item rule; with
    `describe_users`, also how alike the users' scoring vectors are (a run's final test, not every
    validation)."""
    if seen_items not in SEEN_RULES:
        raise ValueError(f"seen_items must be one of {SEEN_RULES}, got {seen_items!r}")
    inputs, targets, hist_end = data.eval_split(stage)
    lengths = hist_end - data.starts
    seen_rows = np.repeat(np.arange(data.n_users), lengths)
    seen = data.flat[concat_ranges(data.starts, hist_end)]
    reps = user_representations(model, inputs)
    with torch.inference_mode():
        items = model.item_weights().detach()
    ranks = ranks_of_targets(reps, items, targets, seen_rows, seen, seen_items)
    per_user = per_user_metrics(ranks)
    proto = Protocol(dataset=data.name, dataset_sha256=data.sha256, seen_items=seen_items)
    return EvalResult(summarise(per_user), per_user, ranks, proto, representation_stats(reps) if describe_users else {})


def mean_pooled_train_outputs(model: RecModel, data: SeqData, device: torch.device) -> np.ndarray:
    """(U, D): eval-mode encoder output of every user's training sequence, averaged over all 50
    positions (padding included, as the authors' k-means input)."""
    starts, ends = data.train_arrays()
    inputs = torch.from_numpy(windows(data.flat, starts, np.maximum(ends, starts)))
    was_training = model.training  # type: ignore[attr-defined]
    model.eval()
    # one output array, filled chunk by chunk: chunk results kept in a list each pinned the top of the heap
    # under the workers' allocator settings (freed memory is kept, bench.runner.WORKER_ENV), and in some
    # processes the heap then grew by every chunk's temporaries, linearly in users (docs/perf.md)
    out: torch.Tensor | None = None  # (U, D)
    with torch.inference_mode():
        for i in range(0, len(inputs), 1024):
            chunk = model(inputs[i : i + 1024].to(device)).mean(1).cpu()  # (C, D)
            if out is None:
                out = torch.empty(len(inputs), chunk.shape[1])
            out[i : i + 1024] = chunk
    model.train(was_training)
    assert out is not None  # every dataset has users
    return out.numpy()


def device_info(name: str) -> dict[str, Any]:
    """What a record says of the device it ran on: type, model name, torch threads, and on CPU whether
    the native kernels (models/fast/native.c) or the torch path computed the training passes."""
    if name == "cuda" and torch.cuda.is_available():
        return {"type": "cuda", "name": torch.cuda.get_device_name(), "torch_threads": torch.get_num_threads()}
    return {"type": "cpu", "name": cpu_model(), "torch_threads": torch.get_num_threads(),
            "kernels": fast.describe()}
