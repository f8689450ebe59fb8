"""The seed's profiler API: marks, statistics, JSON and CSV export; every frame kept; and
the one percentile summary checked against hand-computed values."""

from __future__ import annotations

import csv
import io
import json
import math
import tracemalloc

import pytest

from vr_stream_ros.latency.percentiles import summarize
from vr_stream_ros.latency.profiler import LatencyProfiler


def _profiled(n: int = 50) -> LatencyProfiler:
    profiler = LatencyProfiler()
    for frame in range(n):
        base = frame * 16_000_000
        profiler.start_frame(frame, t_ns=base)
        profiler.mark("encoded", t_ns=base + 2_000_000)
        profiler.mark("sent", t_ns=base + 2_000_000 + (frame % 5) * 100_000)
        profiler.record(frame, {"end": base + 3_000_000})
    return profiler


def test_statistics_per_interval_and_total() -> None:
    profiler = _profiled()
    stats = profiler.statistics()
    assert len(profiler.frames) == 50
    assert list(stats) == ["start->encoded", "encoded->sent", "sent->end", "total"]
    assert stats["start->encoded"]["p50"] == pytest.approx(2.0)
    assert stats["encoded->sent"]["max"] == pytest.approx(0.4)
    assert stats["total"]["samples"] == 50 and stats["total"]["max"] == pytest.approx(3.0)
    out = io.StringIO()
    profiler.print_statistics(last_n=10, file=out)
    rows = {line.split()[0]: line.split() for line in out.getvalue().splitlines()[1:]}
    assert rows["start->encoded"][1] == "10", out.getvalue()


def test_a_frame_missing_a_mark_spans_to_its_next_one() -> None:
    profiler = LatencyProfiler()
    profiler.record(1, {"capture": 0, "sent": 5_000_000, "decoded": 9_000_000})
    profiler.record(2, {"capture": 100_000_000, "decoded": 107_000_000})  # no 'sent'
    stats = profiler.statistics()
    assert stats["capture->sent"]["samples"] == 1
    assert stats["capture->decoded"]["p50"] == pytest.approx(7.0)
    assert stats["sent->decoded"]["p50"] == pytest.approx(4.0)
    assert stats["total"]["samples"] == 2


def test_exports(tmp_path) -> None:
    profiler = _profiled()
    profiler.record(49, {"headset_decoded": 49 * 16_000_000 + 9_000_000})  # a late mark
    profiler.export(str(tmp_path / "r.json"))
    profiler.export(str(tmp_path / "r.csv"))
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["frames"][-1]["headset_decoded"] == 49 * 16_000_000 + 9_000_000
    rows = list(csv.DictReader((tmp_path / "r.csv").open()))
    assert len(rows) == 50 and rows[0]["headset_decoded"] == ""
    assert rows[-1]["sent"] == str(49 * 16_000_000 + 2_000_000 + 4 * 100_000)
    with pytest.raises(ValueError, match="record_path"):
        profiler.export(str(tmp_path / "r.txt"))


def test_every_frame_of_a_long_run_is_kept_exported_and_read_back(tmp_path) -> None:
    """Past the 100,000 frames the profiler once capped at (an hour at 60 fps is 216,000)."""
    n = 120_000
    tracemalloc.start()
    profiler = LatencyProfiler()
    for frame in range(n):
        base = frame * 16_666_667
        profiler.record(frame, {"capture": base, "encoded": base + 2_000_000,
                                "sent": base + 2_500_000})
        if frame >= 3:  # the headset's stamps come a few frames later
            profiler.record(frame - 3, {"headset_decoded": base - 3 * 16_666_667 + 6_000_000})
    size, _peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    # 4 marks + the frame id, 8 bytes each, plus the arrays' growth headroom.
    assert size < n * 5 * 8 * 1.5, f"{size / n:.0f} bytes per frame"
    assert len(profiler.frames) == n
    assert profiler.frames[0] == {"capture": 0, "encoded": 2_000_000, "sent": 2_500_000,
                                  "headset_decoded": 6_000_000}
    assert "headset_decoded" not in profiler.frames[n - 1]
    path = tmp_path / "long.csv"
    profiler.export(str(path))
    with open(path) as f:
        assert sum(1 for _ in f) == n + 1
    back = LatencyProfiler.load(str(path))
    assert len(back.frames) == n and back.frames[n - 1] == profiler.frames[n - 1]
    stats = back.statistics()
    assert stats["capture->encoded"]["samples"] == n
    assert stats["sent->headset_decoded"]["samples"] == n - 3
    assert stats["sent->headset_decoded"]["p99"] == pytest.approx(3.5)


@pytest.mark.parametrize(("values", "p50", "p95", "p99"), [
    # 1..101: rank (n-1)*p/100 lands on whole ranks.
    (list(range(1, 102)), 51.0, 96.0, 100.0),
    # [10, 20, 30, 40, 50]: rank 4*0.95 = 3.8 -> 40 + 0.8*10; 4*0.99 = 3.96 -> 49.6.
    ([50, 10, 40, 20, 30], 30.0, 48.0, 49.6),
    # two values: halfway, then 95 % and 99 % of the way.
    ([2.0, 4.0], 3.0, 3.9, 3.98),
    ([7.5], 7.5, 7.5, 7.5),
])
def test_percentiles_match_hand_computed_values(values, p50, p95, p99) -> None:
    s = summarize(values)
    assert (s.p50, s.p95, s.p99) == pytest.approx((p50, p95, p99))
    assert s.max == max(values) and s.samples == len(values)
    assert s.mean == pytest.approx(sum(values) / len(values))


def test_percentiles_of_nothing_are_nan_and_false() -> None:
    s = summarize([])
    assert not s and s.samples == 0 and math.isnan(s.p50)
    assert summarize([1.0]).as_dict("_ms") == {"p50_ms": 1.0, "p95_ms": 1.0, "p99_ms": 1.0,
                                                "max_ms": 1.0, "mean_ms": 1.0, "samples": 1}
