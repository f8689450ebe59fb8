"""The LatencyStats message and its diagnostic, from hand-made windows (pure functions)."""

from __future__ import annotations

import pytest
from conftest import needs_ros

from vr_stream_ros.latency.stages import StageSummary
from vr_stream_ros.sinks.base import HeadsetStatus
from vr_stream_ros.sinks.stream_stats import StatsWindow

pytestmark = needs_ros


def _summary(name: str, base: float, samples: int = 30) -> StageSummary:
    # p50, p95, p99, max, mean, samples, min: base, +1, +2, +3, +0.5, n, -0.25
    return StageSummary(name, base, base + 1, base + 2, base + 3, base + 0.5, samples,
                        base - 0.25)


STAGES = {"capture_to_ring": 0.5, "ring_to_bridge": 0.25, "encode": 4.0, "send": 1.0,
          "capture_to_sent": 6.0, "network": 2.0, "receive_decode": 3.0,
          "capture_to_decoded": 12.0}


def _window(fresh: bool = True, decoded_samples: int = 30, lag: float | None = 1.5
            ) -> StatsWindow:
    summaries = {n: _summary(n, v) for n, v in STAGES.items()}
    summaries["capture_to_decoded"] = _summary("capture_to_decoded", 12.0, decoded_samples)
    headset = HeadsetStatus(
        fresh=fresh, measured_to="decoded at the headset", end_stage="capture_to_decoded",
        stages=("network", "receive_decode"), rtt_ms=0.8, clock_offset_ms=250.5,
        jitter_ms=0.3, packet_loss=0.125, packets_lost=17, frames_lost=3,
        reports_malformed=2)
    return StatsWindow(
        window_s=2.0, frames_in_window=118, summaries=summaries, frames_sent=1000,
        frames_skipped=7, frames_dropped=5, frames_torn=4, detections_sent=9,
        detection_frame=990, detection_lag_mean=lag, detection_lag_max=4 if lag else 0,
        headset=headset)


def test_fields_with_fresh_headset_reports() -> None:
    from vr_stream_ros.ros.latency_stats import latency_stats
    msg = latency_stats(_window())
    assert msg.window_s == 2.0 and msg.fps == 59.0
    assert (msg.frames_sent, msg.frames_skipped, msg.frames_dropped, msg.frames_torn,
            msg.frames_lost, msg.packets_lost) == (1000, 7, 5, 4, 3, 17)
    assert msg.headset_feedback is True
    assert (msg.rtt_ms, msg.clock_offset_ms, msg.jitter_ms, msg.packet_loss) == \
        (0.8, 250.5, 0.3, 0.125)
    assert msg.reports_malformed == 2
    assert (msg.detections_sent, msg.detection_frame, msg.detection_lag_frames,
            msg.detection_lag_frames_max) == (9, 990, 1.5, 4)
    assert [s.name for s in msg.stages] == ["capture_to_ring", "ring_to_bridge", "encode",
                                            "send", "network", "receive_decode"]
    network = msg.stages[4]
    assert (network.p50_ms, network.p95_ms, network.p99_ms, network.max_ms, network.mean_ms,
            network.min_ms, network.samples) == (2.0, 3.0, 4.0, 5.0, 2.5, 1.75, 30)
    e2e = msg.end_to_end
    assert e2e.name == "end_to_end"
    assert (e2e.p50_ms, e2e.max_ms, e2e.min_ms, e2e.samples) == (12.0, 15.0, 11.75, 30)


@pytest.mark.parametrize("fresh, decoded_samples", [(False, 30), (True, 0)])
def test_without_usable_reports_end_to_end_is_capture_to_sent(fresh, decoded_samples) -> None:
    from vr_stream_ros.ros.latency_stats import latency_stats
    msg = latency_stats(_window(fresh=fresh, decoded_samples=decoded_samples, lag=None))
    assert msg.headset_feedback is False
    assert [s.name for s in msg.stages] == ["capture_to_ring", "ring_to_bridge", "encode",
                                            "send"]
    assert (msg.end_to_end.p50_ms, msg.end_to_end.min_ms) == (6.0, 5.75)
    assert (msg.detection_lag_frames, msg.detection_lag_frames_max) == (0.0, 0)


def test_diagnostic_names_level_and_counters() -> None:
    from diagnostic_msgs.msg import DiagnosticStatus

    from vr_stream_ros.ros.latency_stats import latency_diagnostic, latency_stats
    msg = latency_stats(_window())
    status = latency_diagnostic(msg, node="/headset_bridge_node",
                                measured_to="decoded at the headset", hardware_id="h:5004",
                                budget_ms=13.0)  # p50 12 within, p99 14 over
    assert status.name == "/headset_bridge_node: end-to-end latency"
    assert status.level == DiagnosticStatus.WARN
    assert status.message == "p99 14.0 ms over the 13 ms budget (p50 within)"
    values = {kv.key: kv.value for kv in status.values}
    assert values == {"measured_to": "decoded at the headset", "p50_ms": "12.00",
                      "p99_ms": "14.00", "fps": "59.0", "rtt_ms": "0.80",
                      "frames_skipped": "7", "frames_dropped": "5", "frames_torn": "4",
                      "frames_lost": "3", "packets_lost": "17", "budget_ms": "13"}
    stale = latency_stats(_window(fresh=False))
    status = latency_diagnostic(stale, node="/b", measured_to="decoded at the headset",
                                hardware_id="", budget_ms=100.0)
    assert status.level == DiagnosticStatus.OK
    assert {kv.key: kv.value for kv in status.values}["measured_to"] == \
        "sent (no headset reports)"
