"""Rolling per-stage latency windows with percentiles (no rclpy, no allocation per sample)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vr_stream_ros.latency.percentiles import summarize


@dataclass(frozen=True)
class StageSummary:
    """Percentiles of one stage over a window, in milliseconds."""

    name: str
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float
    samples: int
    min_ms: float = 0.0


class StageWindow:
    """Fixed-capacity ring of nanosecond samples for one stage."""

    def __init__(self, name: str, capacity: int = 4096) -> None:
        self.name = name
        self._buf = np.zeros(capacity, dtype=np.int64)
        self._n = 0
        self._i = 0

    def add(self, ns: int) -> None:
        """Record one sample (nanoseconds)."""
        self._buf[self._i] = ns
        self._i = (self._i + 1) % len(self._buf)
        self._n = min(self._n + 1, len(self._buf))

    def clear(self) -> None:
        """Start a new window."""
        self._n = self._i = 0

    def summary(self) -> StageSummary:
        """Percentiles of the samples in the window (zeros when empty)."""
        if self._n == 0:
            return StageSummary(self.name, 0.0, 0.0, 0.0, 0.0, 0.0, 0, 0.0)
        p = summarize(self._buf[: self._n] / 1e6)
        return StageSummary(self.name, p.p50, p.p95, p.p99, p.max, p.mean, p.samples, p.min)


class PipelineStats:
    """A StageWindow per named stage, in path order."""

    def __init__(self, stages: tuple[str, ...], capacity: int = 4096) -> None:
        self.windows = {name: StageWindow(name, capacity) for name in stages}

    def add(self, stage: str, ns: int) -> None:
        """Record one sample for ``stage``."""
        self.windows[stage].add(ns)

    def summaries(self) -> list[StageSummary]:
        """Every stage's summary, in path order."""
        return [w.summary() for w in self.windows.values()]

    def clear(self) -> None:
        """Start a new window for every stage."""
        for w in self.windows.values():
            w.clear()
