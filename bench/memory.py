"""Memory over time: a thread samples this process's resident memory (memory-profiler) and, on a GPU,
the CUDA allocator's counters, and files each sample under the phase that was running.

The paper's memory claim is about the *average* GPU memory during training, so a peak alone cannot
judge it: per phase we keep the mean (samples are evenly spaced in time, so the mean is the time
average) and the peak of every counter, and the whole timeline of one epoch for the report's plot.
No torch here: the GPU counters come in as a function.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from memory_profiler import memory_usage

MB = 2**20
COUNTERS = ("rss_mb", "gpu_allocated_mb", "gpu_reserved_mb")


@dataclass
class PhaseMemory:
    """Running sums of one phase's samples (what a resumed run carries over in its state)."""

    n: int = 0
    sums: dict[str, float] = field(default_factory=dict)
    peaks: dict[str, float] = field(default_factory=dict)

    def add(self, sample: dict[str, float]) -> None:
        self.n += 1
        for k, v in sample.items():
            self.sums[k] = self.sums.get(k, 0.0) + v
            self.peaks[k] = max(self.peaks.get(k, 0.0), v)

    def summary(self) -> dict[str, Any]:
        return {"samples": self.n, **{f"avg_{k}": self.sums[k] / self.n for k in self.sums},
                **{f"peak_{k}": v for k, v in self.peaks.items()}}


class MemorySampler:
    """Samples every `interval` seconds on a daemon thread. The caller sets `phase` and `epoch`
    around its work; samples taken outside a phase count under "other"."""

    def __init__(self, interval: float = 0.1, gpu: Callable[[], tuple[int, int]] | None = None,
                 timeline_epoch: int = 1) -> None:
        self.interval, self.gpu, self.timeline_epoch = interval, gpu, timeline_epoch
        self.phase, self.epoch = "other", -1
        self.phases: dict[str, PhaseMemory] = {}
        self.timeline: dict[str, list[Any]] = {"t": [], "phase": [], **{k: [] for k in COUNTERS}}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="memory-sampler", daemon=True)
        self._t0 = time.perf_counter()

    def sample(self) -> dict[str, float]:
        out = {"rss_mb": float(memory_usage(-1, interval=0, max_iterations=1)[0])}  # MiB, as memory-profiler reads
        if self.gpu is not None:
            allocated, reserved = self.gpu()
            out["gpu_allocated_mb"], out["gpu_reserved_mb"] = allocated / MB, reserved / MB
        return out

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            phase, epoch, s = self.phase, self.epoch, self.sample()
            self.phases.setdefault(phase, PhaseMemory()).add(s)
            if epoch == self.timeline_epoch:
                self.timeline["t"].append(round(time.perf_counter() - self._t0, 3))
                self.timeline["phase"].append(phase)
                for k in COUNTERS:
                    self.timeline[k].append(round(s[k], 1) if k in s else None)

    def start(self) -> MemorySampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def summary(self) -> dict[str, Any]:
        """Per phase: samples, avg_* and peak_* of each counter; the timeline of `timeline_epoch`
        (t in seconds from the sampler's start, shifted to start at 0)."""
        tl = dict(self.timeline)
        if tl["t"]:
            first = tl["t"][0]
            tl["t"] = [round(t - first, 3) for t in tl["t"]]
        return {"interval_s": self.interval, "by_phase": {p: m.summary() for p, m in self.phases.items() if m.n},
                "timeline": {"epoch": self.timeline_epoch, **tl} if tl["t"] else None}
