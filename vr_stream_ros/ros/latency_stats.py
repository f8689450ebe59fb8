"""LatencyStats and its /diagnostics status from one stats window: pure functions.

No node, no clock: the caller stamps the messages. The end-to-end figure is capture ->
decoded at the headset (RTP) or displayed in the browser (WebRTC) while the viewer's
reports are fresh and carry frames, else capture -> sent.
"""

from __future__ import annotations

from diagnostic_msgs.msg import DiagnosticStatus, KeyValue

from vr_stream_ros.latency.stages import StageSummary
from vr_stream_ros.msg import LatencyStats, StageLatency
from vr_stream_ros.sinks.stream_stats import (
    DETECTION,
    END_TO_SENT,
    EYE_SKEW,
    SENDER_STAGES,
    StatsWindow,
)


def stage_msg(s: StageSummary, name: str) -> StageLatency:
    """One stage's summary as a StageLatency named ``name``."""
    return StageLatency(name=name, p50_ms=s.p50_ms, p95_ms=s.p95_ms, p99_ms=s.p99_ms,
                        max_ms=s.max_ms, min_ms=s.min_ms, mean_ms=s.mean_ms,
                        samples=s.samples)


def viewer_reports(w: StatsWindow) -> bool:
    """True when the viewer's reports are fresh and carried frames in this window."""
    end = w.summaries.get(w.headset.end_stage)
    return bool(w.headset.fresh and end is not None and end.samples)


def latency_stats(w: StatsWindow) -> LatencyStats:
    """The /latency message of one window (header.stamp left to the caller)."""
    h = w.headset
    feedback = viewer_reports(w)
    msg = LatencyStats(
        window_s=w.window_s, fps=w.frames_in_window / w.window_s if w.window_s > 0 else 0.0,
        frames_sent=w.frames_sent, frames_skipped=w.frames_skipped,
        frames_dropped=w.frames_dropped, frames_torn=w.frames_torn,
        frames_lost=h.frames_lost, packets_lost=h.packets_lost, headset_feedback=feedback,
        rtt_ms=h.rtt_ms, clock_offset_ms=h.clock_offset_ms, jitter_ms=h.jitter_ms,
        packet_loss=h.packet_loss, reports_malformed=h.reports_malformed,
        clock_offset_error_ms=h.clock_offset_error_ms,
        packets_retransmitted=h.packets_retransmitted, nacks_refused=h.nacks_refused,
        jpeg_quality=h.jpeg_quality, adapt_level=h.adapt_level,
        target_rate_mbps=h.target_rate_mbps,
        detections_sent=w.detections_sent, detection_frame=w.detection_frame)
    if w.detection_lag_mean is not None:
        msg.detection_lag_frames = w.detection_lag_mean
        msg.detection_lag_frames_max = w.detection_lag_max
    end = h.end_stage if feedback else END_TO_SENT
    names = SENDER_STAGES + (h.stages if feedback else ())
    detection = w.summaries.get(DETECTION)
    if detection is not None and detection.samples:  # detector_node's boxes (any host)
        names += (DETECTION,)
    msg.end_to_end = stage_msg(w.summaries[end], "end_to_end")
    msg.stages = [stage_msg(w.summaries[n], n) for n in names]
    skew = w.summaries.get(EYE_SKEW)
    if skew is not None and skew.samples:  # stereo: the pair's capture-time difference
        msg.eye_skew_p50_ms, msg.eye_skew_p99_ms = skew.p50_ms, skew.p99_ms
    msg.stereo_pairs_dropped = w.stereo_pairs_dropped
    return msg


def diagnostic_level(end_to_end: StageLatency, budget_ms: float) -> tuple[bytes, str]:
    """OK when p99 is within the budget, WARN when only p50 is, ERROR otherwise."""
    if end_to_end.samples == 0:
        return DiagnosticStatus.ERROR, "no frames reached the headset in the last period"
    if end_to_end.p99_ms <= budget_ms:
        return DiagnosticStatus.OK, f"p99 {end_to_end.p99_ms:.1f} ms within {budget_ms:g} ms"
    if end_to_end.p50_ms <= budget_ms:
        return DiagnosticStatus.WARN, (f"p99 {end_to_end.p99_ms:.1f} ms over the "
                                       f"{budget_ms:g} ms budget (p50 within)")
    return DiagnosticStatus.ERROR, f"p50 {end_to_end.p50_ms:.1f} ms over {budget_ms:g} ms"


def latency_diagnostic(stats: LatencyStats, *, node: str, measured_to: str,
                       hardware_id: str, budget_ms: float) -> DiagnosticStatus:
    """The bridge's '<node>: end-to-end latency' status for /diagnostics."""
    end = stats.end_to_end
    level, text = diagnostic_level(end, budget_ms)
    where = measured_to if stats.headset_feedback else "sent (no headset reports)"
    return DiagnosticStatus(
        level=level, name=f"{node}: end-to-end latency", message=text,
        hardware_id=hardware_id, values=[KeyValue(key=k, value=v) for k, v in (
            ("measured_to", where), ("p50_ms", f"{end.p50_ms:.2f}"),
            ("p99_ms", f"{end.p99_ms:.2f}"), ("fps", f"{stats.fps:.1f}"),
            ("rtt_ms", f"{stats.rtt_ms:.2f}"), ("frames_skipped", str(stats.frames_skipped)),
            ("frames_dropped", str(stats.frames_dropped)),
            ("frames_torn", str(stats.frames_torn)), ("frames_lost", str(stats.frames_lost)),
            ("packets_lost", str(stats.packets_lost)), ("budget_ms", f"{budget_ms:g}"))])
