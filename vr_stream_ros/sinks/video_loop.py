"""The bridge's video thread: newest ring frame -> sink, never a queue (no rclpy).

It waits on the ring's doorbell, takes the newest frame (counting the ones it
skipped), lets the sink encode it straight from the shared-memory view and send it,
then sends the newest detections once, and gives the sink its idle work (RTCP, TCP
flush) between frames, waking as early as the sink asks.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from vr_stream_ros.ring.frame_ring import FrameView
from vr_stream_ros.ring.newest import NewestFrames
from vr_stream_ros.rtp.rtcp import DetectionsMeta
from vr_stream_ros.sinks.base import IDLE_MAX_S, FrameSink, Outcome, SendOutcome
from vr_stream_ros.sinks.stream_stats import StatsWindow, StreamStats

Box = tuple[float, float, float, float, str, float]


class VideoLoop:
    """Feeds ``sink`` the newest frames of ``newest``'s ring and keeps the stats."""

    def __init__(self, newest: NewestFrames, sink: FrameSink, stats: StreamStats,
                 between_frames: Callable[[], None] = lambda: None) -> None:
        self.newest = newest
        self.sink = sink
        self.stats = stats
        self._between_frames = between_frames
        self._lock = threading.Lock()
        self._detections: tuple[int, list[Box]] | None = None
        self._detections_sent_frame = -1

    def run(self, stop: threading.Event) -> None:
        """Until ``stop`` is set (the node's worker thread)."""
        wait = 0.0
        while not stop.is_set():
            view = self.newest.take(timeout=wait)
            if view is not None:
                self.deliver(view, time.monotonic_ns())
            wait = min(IDLE_MAX_S, self.sink.idle(time.monotonic_ns()))
            self._between_frames()

    def deliver(self, view: FrameView, pickup_ns: int) -> SendOutcome:
        """One frame to the sink; counts what became of it."""
        result = self.sink.send(view, pickup_ns, self.newest.intact)
        if result.outcome is Outcome.SENT:
            self.stats.frame_sent(view, pickup_ns, result.encoded_ns, result.done_ns)
            self._send_detections(view.seq)
        elif result.outcome is Outcome.DROPPED:
            self.stats.frame_dropped()
        return result  # TORN: NewestFrames.intact counted it

    def offer_detections(self, frame_seq: int, boxes: list[Box]) -> None:
        """The newest detections (any thread); they go after the next frame sent."""
        with self._lock:
            self._detections = (frame_seq, boxes)

    def _send_detections(self, sent_seq: int) -> None:
        with self._lock:
            det = self._detections
            if det is None or det[0] == self._detections_sent_frame:
                return
            self._detections_sent_frame = det[0]
        if self.sink.send_detections(DetectionsMeta(det[0], sent_seq, det[1])):
            self.stats.detections_sent_with(det[0], sent_seq)

    def take_window(self) -> StatsWindow:
        """The stats of the period since the last call (executor thread)."""
        return self.stats.take_window(self.newest.skipped, self.newest.torn,
                                      self.sink.headset(time.monotonic_ns()))
