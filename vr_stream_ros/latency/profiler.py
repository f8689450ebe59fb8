"""Per-frame stage marks with statistics and JSON/CSV export (the seed's latency_profiler).

    profiler = LatencyProfiler()
    profiler.start_frame(42)            # or profiler.record(42, {"capture": t0, ...})
    profiler.mark("capture")
    ...
    profiler.end_frame()
    profiler.print_statistics(last_n=100)
    profiler.export_csv("latency.csv")

Marks are CLOCK_MONOTONIC nanoseconds. Statistics are per interval between
consecutive marks and for the whole frame; marks are ordered as the recording's
columns, i.e. in the order each mark name was first made.

Every frame is kept, column by column (one ``array('q')`` per mark name plus one of
frame ids): 8 bytes per frame for its id plus 8 per mark name, whether or not the frame
has that mark. The bridge's 7 marks make 64 bytes a frame: an hour at 60 fps (216,000
frames) is 14 MB.
"""

from __future__ import annotations

import csv
import json
import sys
import time
from array import array
from bisect import bisect_left
from collections.abc import Iterator, Mapping
from typing import TextIO

import numpy as np

from vr_stream_ros.latency.percentiles import summarize

MISSING = -(1 << 63)
"""Stored where a frame has no such mark."""


class LatencyProfiler:
    """Keeps the marks of every frame recorded."""

    def __init__(self) -> None:
        self._ids = array("q")
        self._columns: dict[str, array] = {}
        self._increasing = True  # frame ids came in increasing order: rows found by bisect
        self._current: int | None = None

    # -- recording -------------------------------------------------------------------------
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

    def record(self, frame_id: int, marks: Mapping[str, int]) -> None:
        """Add marks to a frame (later marks of a known frame are merged in)."""
        row = self._row(frame_id)
        if row is None:
            ids = self._ids
            self._increasing = self._increasing and (not ids or frame_id > ids[-1])
            row = len(ids)
            ids.append(frame_id)
            for column in self._columns.values():
                column.append(MISSING)
        for name, t_ns in marks.items():
            column = self._columns.get(name)
            if column is None:
                column = self._columns[name] = array("q", [MISSING]) * len(self._ids)
            column[row] = t_ns

    def _row(self, frame_id: int) -> int | None:
        ids, n = self._ids, len(self._ids)
        if n and ids[-1] == frame_id:
            return n - 1
        if self._increasing:
            i = bisect_left(ids, frame_id)
            return i if i < n and ids[i] == frame_id else None
        hits = np.flatnonzero(np.frombuffer(ids, dtype=np.int64) == frame_id)
        return int(hits[-1]) if hits.size else None

    # -- reading -----------------------------------------------------------------------------
    @property
    def frames(self) -> Mapping[int, dict[str, int]]:
        """Frame id -> its marks (in column order), built on access."""
        return _Frames(self)

    @property
    def mark_names(self) -> list[str]:
        """Every mark name, in the order first made (the CSV's columns)."""
        return list(self._columns)

    @property
    def nbytes(self) -> int:
        """Bytes the marks and frame ids take (the arrays' used length)."""
        return sum(a.itemsize * len(a) for a in (self._ids, *self._columns.values()))

    def columns(self, last_n: int | None = None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Copies of the frame ids and of each mark's column (MISSING where absent)."""
        start = max(0, len(self._ids) - last_n) if last_n else 0

        def copy(a: array) -> np.ndarray:
            return np.frombuffer(a, dtype=np.int64)[start:].copy()
        return copy(self._ids), {name: copy(a) for name, a in self._columns.items()}

    def _row_marks(self, row: int) -> dict[str, int]:
        return {name: a[row] for name, a in self._columns.items() if a[row] != MISSING}

    def intervals(self, last_n: int | None = None) -> dict[str, np.ndarray]:
        """ms between each frame's consecutive marks ('a->b') and first to last ('total')."""
        ids, cols = self.columns(last_n)
        names = list(cols)
        out: dict[str, np.ndarray] = {}
        prev_val, first_val = np.zeros(ids.size, np.int64), np.zeros(ids.size, np.int64)
        prev_col, count = np.full(ids.size, -1), np.zeros(ids.size, np.int64)
        for j, col in enumerate(cols.values()):
            has = col != MISSING
            for i in np.unique(prev_col[has & (prev_col >= 0)]):
                sel = has & (prev_col == i)
                out[f"{names[i]}->{names[j]}"] = (col[sel] - prev_val[sel]) / 1e6
            first = has & (count == 0)
            first_val[first] = col[first]
            count += has
            prev_val[has], prev_col[has] = col[has], j
        if (count > 1).any():  # prev_val now holds each frame's last mark
            out["total"] = (prev_val[count > 1] - first_val[count > 1]) / 1e6
        return out

    def statistics(self, last_n: int | None = None) -> dict[str, dict[str, float]]:
        """Per interval: samples, mean, p50, p95, p99, max (ms)."""
        return {name: summarize(ms).as_dict(digits=None)
                for name, ms in self.intervals(last_n).items()}

    def print_statistics(self, last_n: int | None = None, file: TextIO = sys.stdout) -> None:
        """A table of ``statistics``."""
        print(f"{'interval':36} {'samples':>7} {'mean':>8} {'p50':>8} {'p95':>8} {'p99':>8} "
              f"{'max':>8}  (ms)", file=file)
        for name, s in self.statistics(last_n).items():
            print(f"{name:36} {s['samples']:7d} {s['mean']:8.3f} {s['p50']:8.3f} {s['p95']:8.3f} "
                  f"{s['p99']:8.3f} {s['max']:8.3f}", file=file)

    def export_json(self, path: str) -> None:
        """Every frame's marks plus the statistics."""
        with open(path, "w") as f:
            json.dump({"clock": "CLOCK_MONOTONIC ns",
                       "frames": [{"frame": k, **v} for k, v in self.frames.items()],
                       "statistics_ms": self.statistics()}, f)

    def export_csv(self, path: str) -> None:
        """One row per frame, one column per mark (ns); blank where a frame lacks a mark."""
        columns = list(self._columns.values())
        with open(path, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["frame", *self._columns])
            for row, frame_id in enumerate(self._ids):
                writer.writerow([frame_id, *("" if c[row] == MISSING else c[row]
                                             for c in columns)])

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
        profiler = cls()
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


class _Frames(Mapping[int, dict[str, int]]):
    """A profiler's frames as a read-only mapping (dicts made on access)."""

    def __init__(self, profiler: LatencyProfiler) -> None:
        self._p = profiler

    def __len__(self) -> int:
        return len(self._p._ids)

    def __iter__(self) -> Iterator[int]:
        return iter(self._p._ids)

    def __getitem__(self, frame_id: int) -> dict[str, int]:
        row = self._p._row(frame_id)
        if row is None:
            raise KeyError(frame_id)
        return self._p._row_marks(row)

    def items(self) -> Iterator[tuple[int, dict[str, int]]]:  # type: ignore[override]
        """(frame id, marks) in recording order, without a lookup per frame."""
        return ((frame_id, self._p._row_marks(row)) for row, frame_id in
                enumerate(self._p._ids))

    def values(self) -> Iterator[dict[str, int]]:  # type: ignore[override]
        """Marks of every frame in recording order."""
        return (marks for _, marks in self.items())


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
