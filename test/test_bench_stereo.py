"""make bench-stereo's summaries: the stage table and the best-of-each ratio (pure functions;
the bench itself runs real nodes and is a make target, not a test)."""

from __future__ import annotations

import pytest

from vr_stream_ros.bench.stereo import best_each, stage_table

STAGES = ("capture_to_first_packet", "last_packet_to_decoded")


def _variant(p50: float, stages: tuple[float, float]) -> dict:
    return {"p50_ms": p50, "stages_p50_ms": dict(zip(STAGES, stages, strict=True))}


ROUNDS = [  # three rounds (median, not mean: the third is an outlier), jpeg_threads 1 and 2
    {"mono@1": _variant(5.0, (3.0, 1.0)), "stereo@1": _variant(9.0, (5.0, 2.0)),
     "mono@2": _variant(5.5, (3.5, 1.0)), "stereo@2": _variant(8.0, (4.0, 2.2))},
    {"mono@1": _variant(6.0, (4.0, 1.2)), "stereo@1": _variant(10.0, (6.0, 2.6)),
     "mono@2": _variant(6.5, (4.5, 1.4)), "stereo@2": _variant(9.0, (5.0, 2.4))},
    {"mono@1": _variant(5.2, (3.2, 1.1)), "stereo@1": _variant(20.0, (15.0, 2.3)),
     "mono@2": _variant(6.0, (3.6, 1.0)), "stereo@2": _variant(8.5, (4.2, 2.3))},
]


def test_stage_table_gives_each_stages_median_over_rounds_and_the_ratio() -> None:
    lines = stage_table(ROUNDS, [1, 2]).strip().splitlines()
    rows = {line.split()[0] + line.split()[1]: [float(x) for x in line.split()[2:]]
            for line in lines[1:]}
    assert rows["capture_to_first_packet@1"] == [3.2, 6.0, pytest.approx(1.875, abs=0.005)]
    assert rows["last_packet_to_decoded@1"] == [1.1, 2.3, pytest.approx(2.09, abs=0.005)]
    assert rows["capture_to_first_packet@2"] == [3.6, 4.2, pytest.approx(1.17, abs=0.005)]
    assert len(rows) == 4


def test_stage_table_marks_a_stage_mono_never_measured() -> None:
    rounds = [{"mono@1": _variant(5.0, (0.0, 1.0)), "stereo@1": _variant(9.0, (5.0, 2.0))}]
    line = stage_table(rounds, [1]).strip().splitlines()[1]
    assert line.split()[-1] == "-"


def test_best_each_takes_each_kind_at_its_own_best_thread_count() -> None:
    # mono is best at 1 thread (median 5.2 vs 6.0), stereo at 2 (8.5 vs 10.0)
    assert best_each(ROUNDS, [1, 2]) == {"mono": (5.2, 1), "stereo": (8.5, 2)}
    assert best_each(ROUNDS, [2]) == {"mono": (6.0, 2), "stereo": (8.5, 2)}
