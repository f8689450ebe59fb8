"""The detection lag in ms on /latency: capture -> the frame's detections at the bridge, on
the camera host's clock, whichever host the detector runs on."""

from __future__ import annotations

from conftest import needs_ros

from vr_stream_ros.sinks.base import HeadsetStatus
from vr_stream_ros.sinks.rtp import RtpJpegSink
from vr_stream_ros.sinks.stream_stats import StreamStats

pytestmark = needs_ros


def _headset() -> HeadsetStatus:
    return HeadsetStatus(fresh=False, measured_to="", end_stage="capture_to_decoded",
                         stages=(), rtt_ms=0.0, clock_offset_ms=0.0, jitter_ms=0.0,
                         packet_loss=0.0, packets_lost=0, frames_lost=0, reports_malformed=0)


def test_detection_stage_only_once_detections_came_back() -> None:
    from vr_stream_ros.ros.latency_stats import latency_stats
    stats = StreamStats(RtpJpegSink.stages)
    msg = latency_stats(stats.take_window(0, 0, _headset()))
    assert "detection" not in [s.name for s in msg.stages]
    for i, lag_ms in enumerate((40, 50, 60, 70, 80)):
        capture = 1_000_000_000 + i * 16_666_667
        stats.detections_arrived(capture, capture + lag_ms * 1_000_000)
    msg = latency_stats(stats.take_window(0, 0, _headset()))
    [stage] = [s for s in msg.stages if s.name == "detection"]
    assert msg.stages[-1].name == "detection", "after the video path's stages"
    assert (stage.samples, stage.p50_ms, stage.min_ms, stage.max_ms) == (5, 60.0, 40.0, 80.0)
    msg = latency_stats(stats.take_window(0, 0, _headset()))
    assert "detection" not in [s.name for s in msg.stages], "a new window starts empty"
