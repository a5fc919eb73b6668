"""The fence around the models' speed machinery: oneDNN linear layers, dropout applied from random
bits, the InfoNCE Gram matrix with a one-GEMM backward, training passes on blocks of rows side by side,
and the native C kernels (`native.c`, built on first use by `native.py`).

Model code sees only what is exported here. The encoder (`models/encoder.py`) is written plainly, as
the papers' code; its `forward` asks `select` for the pass's `Backend` and runs it: the reference, or
the fast path of `encoder.py` here, the same function of the same parameters (tests/test_backends.py).
`select` is the one place that decides, from explicit inputs (see `backend.py`); setting
INTENTBENCH_BACKEND=reference runs the plain code everywhere. The three ops below serve model code
outside the encoder, on the backend `select` picks for their input. `length_groups`, `by_length`
and `at_targets` run an encoder on rows of similar length at a time, cut to their width, where the
loss cannot see left padding (prefix samples, Cloze and pre-training batches are mostly padding):
the same groups on every backend, and the same losses as one full-width group (tests/test_zoo.py).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from models.dropout import dropout as reference_dropout
from models.fast import kernels
from models.fast.backend import ENV, REFERENCE, Backend, describe, select

__all__ = [
    "ENV",
    "REFERENCE",
    "Backend",
    "at_targets",
    "by_length",
    "describe",
    "dropout",
    "gram_matrix",
    "length_groups",
    "linear",
    "select",
]


def dropout(x: Tensor, p: float, gen: torch.Generator | None, training: bool) -> Tensor:
    """`models.dropout.dropout` (the same masks), for model code outside the encoder (the zoo's toolkit)."""
    if not training or p == 0.0:
        return x
    backend = select(x.device, x.dtype)
    if backend.name == "reference":
        return reference_dropout(x, p, gen, training)
    return kernels.dropout(x, p, gen, backend.native)


def linear(x: Tensor, w: Tensor, b: Tensor) -> Tensor:
    """x @ w.T + b (..., in) -> (..., out), F.linear's value; on CPU float32 one oneDNN GEMM with the
    bias added inside it."""
    backend = select(x.device, x.dtype)
    return kernels.linear(x, w, b, backend.onednn, backend.native)


def gram_matrix(z: Tensor) -> Tensor:
    """z @ z.T, (2B, F) -> (2B, 2B); with autograd its backward is one GEMM (`kernels.gram_matrix`)."""
    backend = select(z.device, z.dtype)
    if backend.name == "reference":
        return z @ z.T
    return kernels.gram_matrix(z, backend.onednn)


def length_groups(ids: Tensor, groups: int = 4) -> list[tuple[Tensor, int]]:
    """Rows of left-padded ids (B, L) split by length into `groups` runs of similar length, each with
    its width (its longest row): (row indices, width) pairs. A loss that is a sum over rows and real
    positions can be computed group by group on `ids[rows, -width:]`, dropping padding columns a real
    position never attends to. The same groups on every backend: a training pass draws its dropout
    masks group by group, and the backends must draw the same masks (tests/test_backends.py)."""
    lengths = (ids > 0).sum(1)
    order = torch.argsort(lengths, stable=True)
    return [(rows, max(int(lengths[rows].max()), 1)) for rows in order.chunk(groups) if len(rows)]


def by_length(fn: Callable[[Tensor], Tensor], ids: Tensor, groups: int = 4) -> Tensor:
    """fn(ids) for a row-wise fn whose rows do not depend on left padding (the last position's output
    of a causal encoder: no real position attends to a padding key), computed on `length_groups` and
    put back in row order (B, ...). A batch of prefix samples is mostly padding."""
    parts = length_groups(ids, groups)
    out = torch.cat([fn(ids[rows, -width:]) for rows, width in parts])
    return out[torch.argsort(torch.cat([rows for rows, _ in parts]))]


def at_targets(fn: Callable[[Tensor], Tensor], ids: Tensor, targets: Tensor, groups: int = 4
               ) -> tuple[Tensor, Tensor]:
    """The outputs fn(ids) (B, L, D) at the positions with a target (targets (B, L) > 0), for an fn
    whose real positions do not depend on left padding, computed on `length_groups`: (P, D) outputs
    and their (P,) targets, in the order of `fn(ids)[targets > 0]` (row by row)."""
    n = ids.shape[1]
    hs, ts, where = [], [], []
    for rows, width in length_groups(ids, groups):
        t = targets[rows, -width:]
        real = t > 0
        hs.append(fn(ids[rows, -width:])[real])
        ts.append(t[real])
        cols = torch.arange(n - width, n, device=ids.device)
        where.append((rows[:, None] * n + cols[None, :])[real])  # flat index in the whole batch
    order = torch.argsort(torch.cat(where))
    return torch.cat(hs)[order], torch.cat(ts)[order]
