"""What the bridge measures, shared by the video thread, a sink's threads and the
executor: stage windows, counters and the optional per-frame recording (no rclpy).

Every method takes one lock, so the recording is never written while it is exported;
after ``export`` further marks are refused (counted in ``marks_after_export``).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from vr_stream_ros.latency.profiler import LatencyProfiler
from vr_stream_ros.latency.stages import PipelineStats, StageSummary
from vr_stream_ros.ring.frame_ring import FrameView
from vr_stream_ros.sinks.base import HeadsetStatus

SENDER_STAGES = ("capture_to_ring", "ring_to_bridge", "encode", "send")
END_TO_SENT = "capture_to_sent"
"""Capture -> last byte handed to the kernel: end to end when no viewer reports."""
DETECTION = "detection"
"""Capture -> that frame's detections arrived at the bridge (from a detector anywhere)."""
EYE_SKEW = "eye_skew"
"""Stereo: |right eye's capture - left eye's| of each frame sent (not a path stage)."""


@dataclass(frozen=True)
class StatsWindow:
    """One stats period: stage summaries by name, counters since start, the viewer."""

    window_s: float
    frames_in_window: int
    summaries: dict[str, StageSummary]
    frames_sent: int
    frames_skipped: int
    frames_dropped: int
    frames_torn: int
    detections_sent: int
    detection_frame: int
    detection_lag_mean: float | None
    detection_lag_max: int
    headset: HeadsetStatus
    stereo_pairs_dropped: int = 0
    """Stereo: the camera's count of frames dropped for want of a partner, since start."""


class StreamStats:
    """Thread-safe stage windows, counters and recording of one bridge."""

    def __init__(self, viewer_stages: tuple[str, ...],
                 profiler: LatencyProfiler | None = None, stereo: bool = False) -> None:
        self._lock = threading.Lock()
        self._stats = PipelineStats((*SENDER_STAGES, END_TO_SENT, *viewer_stages, DETECTION,
                                     EYE_SKEW))
        self._stereo = stereo
        self.stereo_pairs_dropped = 0
        self._profiler = profiler
        self.frames_sent = self.frames_dropped = 0
        self.detections_sent = self.detection_frame = 0
        self._lag: list[int] = []
        self._window_frames = 0
        self._window_start = time.monotonic()
        self._exported = False
        self.marks_after_export = 0

    def frame_sent(self, view: FrameView, pickup_ns: int, encoded_ns: int,
                   done_ns: int) -> None:
        """A frame left: its sender stages, and its marks in the recording."""
        with self._lock:
            self.frames_sent += 1
            self._window_frames += 1
            add = self._stats.add
            add("capture_to_ring", view.publish_ns - view.capture_ns)
            add("ring_to_bridge", pickup_ns - view.publish_ns)
            add("encode", encoded_ns - pickup_ns)
            add("send", done_ns - encoded_ns)
            add(END_TO_SENT, done_ns - view.capture_ns)
            if self._stereo:
                add(EYE_SKEW, abs(view.eye_skew_ns))
                self.stereo_pairs_dropped = view.pairs_dropped
            if self._profiler is not None:  # no marks dict per frame unless recording
                self._record(view.seq, {"capture": view.capture_ns,
                                        "ring_write": view.publish_ns,
                                        "bridge_pickup": pickup_ns, "encoded": encoded_ns,
                                        "sent": done_ns})

    def frame_dropped(self) -> None:
        """The transport refused a frame."""
        with self._lock:
            self.frames_dropped += 1

    def viewer_samples(self, frame_seq: int, samples: dict[str, int],
                       marks: dict[str, int]) -> None:
        """Stage samples (ns) and recording marks the viewer reported for one frame."""
        with self._lock:
            for stage, ns in samples.items():
                self._stats.add(stage, ns)
            self._record(frame_seq, marks)

    def detections_arrived(self, capture_ns: int, arrived_ns: int) -> None:
        """Detections of the frame captured at ``capture_ns`` reached the bridge."""
        with self._lock:
            self._stats.add(DETECTION, arrived_ns - capture_ns)

    def detections_sent_with(self, frame_seq: int, sent_with_seq: int) -> None:
        """Detections of ``frame_seq`` went out after frame ``sent_with_seq``."""
        with self._lock:
            self.detections_sent += 1
            self.detection_frame = frame_seq
            self._lag.append(max(0, sent_with_seq - frame_seq))

    def _record(self, frame_seq: int, marks: dict[str, int]) -> None:
        if self._profiler is None:
            return
        if self._exported:
            self.marks_after_export += 1
            return
        self._profiler.record(frame_seq, marks)

    def take_window(self, skipped: int, torn: int, headset: HeadsetStatus) -> StatsWindow:
        """The period since the last call, then a new one starts."""
        now = time.monotonic()
        with self._lock:
            summaries = {s.name: s for s in self._stats.summaries()}
            self._stats.clear()
            window = now - self._window_start
            frames, self._window_frames, self._window_start = self._window_frames, 0, now
            lag, self._lag = self._lag, []
            return StatsWindow(
                window_s=window, frames_in_window=frames, summaries=summaries,
                frames_sent=self.frames_sent, frames_skipped=skipped,
                frames_dropped=self.frames_dropped, frames_torn=torn,
                detections_sent=self.detections_sent, detection_frame=self.detection_frame,
                detection_lag_mean=sum(lag) / len(lag) if lag else None,
                detection_lag_max=max(lag, default=0), headset=headset,
                stereo_pairs_dropped=self.stereo_pairs_dropped)

    def export(self, path: str) -> int:
        """Write the recording (.csv or .json) and refuse marks from now on; frames written."""
        with self._lock:
            if self._profiler is None:
                return 0
            self._profiler.export(path)
            written = len(self._profiler.frames)
            self._exported = True  # a late mark is counted, not recorded
            return written
