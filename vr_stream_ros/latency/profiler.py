"""Per-frame stage marks with statistics and JSON/CSV export (the seed's latency_profiler).

    profiler = LatencyProfiler()
    profiler.start_frame(42)            # or profiler.record(42, {"capture": t0, ...})
    profiler.mark("capture")
    ...
    profiler.end_frame()
    profiler.print_statistics(last_n=100)
    profiler.export_csv("latency.csv")

Marks are CLOCK_MONOTONIC nanoseconds. Statistics are per interval between
consecutive marks (in the order they were made) and for the whole frame.
"""

from __future__ import annotations

import csv
import itertools
import json
import sys
import time
from collections import OrderedDict
from typing import TextIO

import numpy as np


class LatencyProfiler:
    """Keeps the marks of the last ``max_frames`` frames."""

    def __init__(self, max_frames: int = 100_000) -> None:
        if max_frames < 1:
            raise ValueError(f"max_frames: got {max_frames}, expected >= 1")
        self.max_frames = max_frames
        self.frames: OrderedDict[int, dict[str, int]] = OrderedDict()
        self._current: int | None = None

    def start_frame(self, frame_id: int, t_ns: int | None = None) -> None:
        """Begin a frame; its first mark is 'start'."""
        self._current = frame_id
        self.record(frame_id, {"start": time.monotonic_ns() if t_ns is None else t_ns})

    def mark(self, name: str, t_ns: int | None = None) -> None:
        """Mark a stage of the current frame."""
        if self._current is None:
            raise RuntimeError("mark() before start_frame()")
        self.record(self._current, {name: time.monotonic_ns() if t_ns is None else t_ns})

    def end_frame(self) -> dict[str, int]:
        """Close the current frame and return its marks."""
        if self._current is None:
            raise RuntimeError("end_frame() before start_frame()")
        self.mark("end")
        marks, self._current = self.frames[self._current], None
        return marks

    def record(self, frame_id: int, marks: dict[str, int]) -> None:
        """Add marks to a frame (later marks of a known frame are merged in)."""
        entry = self.frames.get(frame_id)
        if entry is None:
            self.frames[frame_id] = entry = {}
            while len(self.frames) > self.max_frames:
                self.frames.popitem(last=False)
        entry.update(marks)

    def _intervals(self, last_n: int | None) -> dict[str, list[float]]:
        frames = list(self.frames.values())
        if last_n:
            frames = frames[-last_n:]
        out: dict[str, list[float]] = {}
        for marks in frames:
            names = list(marks)
            for a, b in itertools.pairwise(names):
                out.setdefault(f"{a}->{b}", []).append((marks[b] - marks[a]) / 1e6)
            if len(names) > 1:
                out.setdefault("total", []).append((marks[names[-1]] - marks[names[0]]) / 1e6)
        return out

    def statistics(self, last_n: int | None = None) -> dict[str, dict[str, float]]:
        """Per interval: n, mean, p50, p95, p99, max (ms)."""
        stats = {}
        for name, values in self._intervals(last_n).items():
            a = np.asarray(values)
            p50, p95, p99 = np.percentile(a, (50, 95, 99))
            stats[name] = {"n": int(a.size), "mean": float(a.mean()), "p50": float(p50),
                           "p95": float(p95), "p99": float(p99), "max": float(a.max())}
        return stats

    def print_statistics(self, last_n: int | None = None, file: TextIO = sys.stdout) -> None:
        """A table of ``statistics``."""
        print(f"{'interval':36} {'n':>6} {'mean':>8} {'p50':>8} {'p95':>8} {'p99':>8} "
              f"{'max':>8}  (ms)", file=file)
        for name, s in self.statistics(last_n).items():
            print(f"{name:36} {s['n']:6d} {s['mean']:8.3f} {s['p50']:8.3f} {s['p95']:8.3f} "
                  f"{s['p99']:8.3f} {s['max']:8.3f}", file=file)

    def export_json(self, path: str) -> None:
        """Every frame's marks plus the statistics."""
        with open(path, "w") as f:
            json.dump({"clock": "CLOCK_MONOTONIC ns",
                       "frames": [{"frame": k, **v} for k, v in self.frames.items()],
                       "statistics_ms": self.statistics()}, f)

    def export_csv(self, path: str) -> None:
        """One row per frame, one column per mark (ns); blank where a frame lacks a mark."""
        columns: list[str] = []
        for marks in self.frames.values():
            columns += [m for m in marks if m not in columns]
        with open(path, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["frame", *columns])
            for frame_id, marks in self.frames.items():
                writer.writerow([frame_id, *(marks.get(c, "") for c in columns)])

    @classmethod
    def load(cls, path: str) -> LatencyProfiler:
        """Read back what ``export`` wrote; ValueError names the file and what is wrong."""
        try:
            with open(path, newline="") as f:
                text = f.read()
        except FileNotFoundError:
            raise ValueError(f"{path}: no such file") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"{path}: cannot be read ({exc})") from None
        rows = _json_rows(path, text) if path.endswith(".json") else _csv_rows(path, text)
        if not rows:
            raise ValueError(f"{path}: no frames recorded (expected one row per frame)")
        profiler = cls(max_frames=max(1, len(rows)))
        for frame_id, marks in rows:
            profiler.record(frame_id, marks)
        return profiler

    def export(self, path: str) -> None:
        """``export_json`` or ``export_csv`` by the file's extension."""
        if path.endswith(".json"):
            self.export_json(path)
        elif path.endswith(".csv"):
            self.export_csv(path)
        else:
            raise ValueError(f"parameter 'record_path': {path!r} must end in .csv or .json")


def _csv_rows(path: str, text: str) -> list[tuple[int, dict[str, int]]]:
    reader = csv.reader(text.splitlines())
    header = next(reader, None)
    if not header or header[0] != "frame" or len(header) < 3:
        raise ValueError(f"{path}: not a latency recording (expected a CSV header "
                         f"'frame,<mark>,<mark>,...', got {','.join(header or [])!r})")
    rows = []
    for line_no, row in enumerate(reader, start=2):
        if len(row) != len(header):
            raise ValueError(f"{path}: line {line_no} has {len(row)} fields, expected "
                             f"{len(header)} ({','.join(header)})")
        try:
            marks = {name: int(v) for name, v in zip(header[1:], row[1:], strict=True) if v}
            rows.append((int(row[0]), marks))
        except ValueError:
            raise ValueError(f"{path}: line {line_no}: expected integer nanoseconds, "
                             f"got {row!r}") from None
    return rows


def _json_rows(path: str, text: str) -> list[tuple[int, dict[str, int]]]:
    try:
        frames = json.loads(text)["frames"]
        return [(int(f["frame"]), {k: int(v) for k, v in f.items() if k != "frame"})
                for f in frames]
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path}: not a latency recording (expected JSON with 'frames': "
                         f"[{{'frame': n, '<mark>': ns, ...}}]; {exc.__class__.__name__}: "
                         f"{exc})") from None
