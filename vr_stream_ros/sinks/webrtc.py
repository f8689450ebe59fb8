"""H.264 to browsers over WebRTC (needs aiortc and aiohttp; no rclpy).

The video thread encodes straight from the ring view and pushes the access unit to
every viewer; the server's asyncio thread handles signaling, the page's "frame N
displayed at T" reports (they land in the stats as ``browser_displayed``) and
keyframe requests.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from vr_stream_ros.codecs.h264 import H264Encoder
from vr_stream_ros.ring.frame_ring import FrameView
from vr_stream_ros.rtp.rtcp import DetectionsMeta
from vr_stream_ros.sinks.base import FrameSink, HeadsetStatus, Outcome, SendOutcome
from vr_stream_ros.sinks.stream_stats import StreamStats
from vr_stream_ros.webrtc.server import WebRtcConfig, WebRtcServer

BROWSER_STAGE = "browser_displayed"  # capture -> shown by the page
REPORT_FRESH_NS = 3_000_000_000


class WebRtcSink(FrameSink):
    """Our own H.264 through aiortc to up to ``max_viewers`` browsers."""

    transport = "webrtc"
    stages = (BROWSER_STAGE,)

    def __init__(self, encoder: H264Encoder, config: WebRtcConfig, stats: StreamStats,
                 log: Callable[[str], None] = print) -> None:
        self._h264 = encoder
        self._stats = stats
        self._last_report_ns = 0
        self._lock = threading.Lock()
        self.server = WebRtcServer(config, on_display=self._on_display,
                                   on_keyframe=self._keyframe_wanted, log=log)
        self.server.start()  # OSError naming the port or certificate

    def _keyframe_wanted(self) -> None:
        self._h264.force_keyframe = True  # read by the video thread before its next frame

    def _on_display(self, frame: int, capture_ns: int, displayed_ns: int) -> None:
        """The page showed ``frame`` (asyncio thread): capture -> displayed, our clock."""
        with self._lock:
            self._last_report_ns = time.monotonic_ns()
        self._stats.viewer_samples(frame, {BROWSER_STAGE: displayed_ns - capture_ns},
                                   {BROWSER_STAGE: displayed_ns})

    def send(self, view: FrameView, pickup_ns: int,
             intact: Callable[[FrameView], bool]) -> SendOutcome:
        packets = self._h264.encode(view.array, view.capture_ns)
        encoded_ns = time.monotonic_ns()
        if not intact(view):
            self._h264.force_keyframe = True  # the torn frame was encoded: start clean
            return SendOutcome(Outcome.TORN, encoded_ns)
        for packet in packets:
            self.server.push(packet, view.seq, view.capture_ns)
        return SendOutcome(Outcome.SENT, encoded_ns, time.monotonic_ns())

    def send_detections(self, meta: DetectionsMeta) -> bool:
        """On the page's data channel, the same JSON as APP 'VRDT'."""
        self.server.send_json({"type": "detections", "frame": meta.frame_seq,
                               "sent_with": meta.sent_with_seq,
                               "boxes": [[*b[:4], b[4], b[5]] for b in meta.boxes]})
        return True

    def headset(self, now_ns: int) -> HeadsetStatus:
        with self._lock:
            fresh = now_ns - self._last_report_ns < REPORT_FRESH_NS and self._last_report_ns > 0
        return HeadsetStatus(fresh=fresh, measured_to="displayed in the browser",
                             end_stage=BROWSER_STAGE, stages=(BROWSER_STAGE,),
                             reports_malformed=self.server.reports_malformed)

    def close(self) -> None:
        """Close every viewer and stop the server's thread (no report comes after)."""
        self.server.close()
        self._h264.close()
