"""The seed's profiler API: marks, statistics, JSON and CSV export."""

from __future__ import annotations

import csv
import io
import json

import pytest

from vr_stream_ros.latency.profiler import LatencyProfiler


def _profiled(n: int = 50) -> LatencyProfiler:
    profiler = LatencyProfiler(max_frames=40)
    for frame in range(n):
        base = frame * 16_000_000
        profiler.start_frame(frame, t_ns=base)
        profiler.mark("encoded", t_ns=base + 2_000_000)
        profiler.mark("sent", t_ns=base + 2_000_000 + (frame % 5) * 100_000)
        profiler.end_frame()
    return profiler


def test_statistics_per_interval_and_total() -> None:
    stats = _profiled().statistics()
    assert len(_profiled().frames) == 40  # max_frames keeps the newest
    assert stats["start->encoded"]["p50"] == pytest.approx(2.0)
    assert stats["encoded->sent"]["max"] == pytest.approx(0.4)
    assert stats["total"]["n"] == 40
    out = io.StringIO()
    _profiled().print_statistics(last_n=10, file=out)
    assert "start->encoded" in out.getvalue()


def test_exports(tmp_path) -> None:
    profiler = _profiled()
    profiler.record(49, {"headset_decoded": 49 * 16_000_000 + 9_000_000})  # a late mark
    profiler.export(str(tmp_path / "r.json"))
    profiler.export(str(tmp_path / "r.csv"))
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["frames"][-1]["headset_decoded"] == 49 * 16_000_000 + 9_000_000
    rows = list(csv.DictReader((tmp_path / "r.csv").open()))
    assert len(rows) == 40 and rows[0]["headset_decoded"] == ""
    assert rows[-1]["sent"] == str(49 * 16_000_000 + 2_000_000 + 4 * 100_000)
    with pytest.raises(ValueError, match="record_path"):
        profiler.export(str(tmp_path / "r.txt"))
