"""Where a training step's time goes, op by op (`python -m bench perf --ops N`).

Every ATen op that a step dispatches (forward, backward, optimiser) is timed where it runs, inside
the real step, through a `TorchDispatchMode`: ops reach it after composite ops were decomposed, so
the timed calls do not nest and their sum is the time spent in kernels. torch.profiler (with input
shapes recorded) charges its own overhead to large kernels, which this timer does not (docs/perf.md).
On CUDA each op is followed by a synchronisation, so an op's time is its kernel's, launch included.
"""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode


class OpTimer(TorchDispatchMode):
    """Accumulates wall time and call counts per (op, shape of its first tensor argument)."""

    def __init__(self, cuda: bool = False) -> None:
        super().__init__()
        self.cuda = cuda
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: Any = None) -> Any:
        t0 = time.perf_counter()
        out = func(*args, **(kwargs or {}))
        if self.cuda:
            torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        first = next((a for a in args if isinstance(a, torch.Tensor)), None)
        if first is None and args and isinstance(args[0], list | tuple):  # cat, stack, foreach ops
            first = next((a for a in args[0] if isinstance(a, torch.Tensor)), None)
        key = f"{func.__name__} {tuple(first.shape) if first is not None else ()}"
        self.seconds[key] += dt
        self.calls[key] += 1
        return out


def profile_steps(model: Any, opt: Any, batches: list[Any], top: int, cuda: bool = False) -> dict[str, Any]:
    """Times the training steps of `batches` op by op, after three untimed warm-up steps (the last
    under the timer: entering the mode the first time costs a second).

    A dispatch mode sees the ops of its own thread only, so every pass runs as one block of rows
    here (no `models.fast` row-block worker threads): the profile is of the one-stream step.
    Returns the step's wall time, the summed op time and the `top` ops by time, all per step."""
    from bench.train import train_steps
    from models.fast import backend

    min_tokens, backend.ROW_BLOCK_MIN_TOKENS = backend.ROW_BLOCK_MIN_TOKENS, 2**62
    try:
        train_steps(model, opt, batches[:2], 0)
        with OpTimer(cuda):
            train_steps(model, opt, batches[2:3] or batches[:1], 0)
        timed = batches[3:] or batches[-1:]
        timer = OpTimer(cuda)
        t0 = time.perf_counter()
        with timer:
            train_steps(model, opt, timed, 0)
        wall = time.perf_counter() - t0
    finally:
        backend.ROW_BLOCK_MIN_TOKENS = min_tokens
    n = len(timed)
    rows = sorted(timer.seconds.items(), key=lambda kv: -kv[1])
    return {"steps": n, "step_ms": wall / n * 1000,
            "ops_ms": sum(timer.seconds.values()) / n * 1000,
            "top": [{"op": k, "calls_per_step": timer.calls[k] / n, "ms_per_step": v / n * 1000}
                    for k, v in rows[:top]]}


def format_profile(name: str, prof: dict[str, Any]) -> str:
    lines = [f"  {name}: {prof['step_ms']:.1f} ms per step with the timer on, {prof['ops_ms']:.1f} ms of it in ops "
             f"({prof['steps']} steps)"]
    lines += [f"    {r['ms_per_step']:8.2f} ms  {r['calls_per_step']:5.1f}x  {r['op']}" for r in prof["top"]]
    return "\n".join(lines)
