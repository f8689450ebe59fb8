"""The one percentile summary (p50, p95, p99, max, mean, count) every figure uses.

Percentiles are numpy's default, linear interpolation between the two nearest ranks
(Hyndman and Fan's type 7: rank ``(n - 1) * p / 100`` of the sorted values), so a
window, a recording, the receiver and the benches all agree on the same samples.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

PERCENTILES = (50, 95, 99)


@dataclass(frozen=True)
class Percentiles:
    """p50, p95, p99, max, mean and min of some samples (in their unit); NaN when there are none."""

    p50: float
    p95: float
    p99: float
    max: float
    mean: float
    samples: int
    min: float = float("nan")

    def __bool__(self) -> bool:
        return self.samples > 0

    def as_dict(self, suffix: str = "", digits: int | None = 3) -> dict[str, float | int]:
        """``{'p50'+suffix: ..., 'p95'..., 'p99'..., 'max'..., 'mean'..., 'samples': n}``,
        rounded to ``digits`` (None: not rounded)."""
        out: dict[str, float | int] = {}
        for key in ("p50", "p95", "p99", "max", "mean"):
            value = getattr(self, key)
            out[key + suffix] = value if digits is None or math.isnan(value) \
                else round(value, digits)
        out["samples"] = self.samples
        return out


NONE = Percentiles(*(float("nan"),) * 5, 0)
"""The summary of no samples."""


def summarize(values: Sequence[float] | Iterable[float] | np.ndarray) -> Percentiles:
    """The summary of ``values``; :data:`NONE` (NaN, 0 samples) when there are none."""
    a = np.asarray(values if isinstance(values, Sequence | np.ndarray) else list(values),
                   dtype=np.float64)
    if a.size == 0:
        return NONE
    p50, p95, p99 = np.percentile(a, PERCENTILES)
    return Percentiles(float(p50), float(p95), float(p99), float(a.max()), float(a.mean()),
                       int(a.size), float(a.min()))


def ms_cell(value: float | None, width: int = 7) -> str:
    """A table cell of milliseconds, 2 decimals, right-aligned; 'n/a' for no value."""
    return f"{value:{width}.2f}" if value is not None else f"{'n/a':>{width}}"
