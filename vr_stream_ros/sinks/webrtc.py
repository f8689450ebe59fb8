"""H.264 to browsers over WebRTC (needs aiortc and aiohttp; no rclpy).

The video thread encodes straight from the ring view and pushes the access unit to
every viewer; the server's asyncio thread handles signaling, the page's per-frame
reports (they land in the stats as ``browser_decoded``, ``browser_drawn`` and, in VR,
``xr_submitted``), keyframe requests (PLI/FIR: the next frame is an IDR) and the
browsers' bandwidth estimates (REMB: the encoder's bitrate follows the lowest, within
[min_bitrate_bps, the encoder's configured bitrate]; webrtc/congestion.py).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

from vr_stream_ros.codecs.h264 import H264Encoder
from vr_stream_ros.ring.frame_ring import FrameView
from vr_stream_ros.rtp.rtcp import DetectionsMeta
from vr_stream_ros.sinks.base import FrameSink, HeadsetStatus, Outcome, SendOutcome
from vr_stream_ros.sinks.stream_stats import StreamStats
from vr_stream_ros.webrtc.congestion import RembFollower
from vr_stream_ros.webrtc.reports import BROWSER_DRAWN, PAGE_STAGES
from vr_stream_ros.webrtc.server import WebRtcConfig, WebRtcServer

REPORT_FRESH_NS = 3_000_000_000
SENT_WINDOW_NS = 1_000_000_000  # what the encoder sent lately, for the REMB follower


class WebRtcSink(FrameSink):
    """Our own H.264 through aiortc to up to ``max_viewers`` browsers."""

    transport = "webrtc"
    stages = PAGE_STAGES

    def __init__(self, encoder: H264Encoder, config: WebRtcConfig, stats: StreamStats,
                 log: Callable[[str], None] = print, min_bitrate_bps: int = 0,
                 rewrite_sdp: Callable[[str, str], str] | None = None) -> None:
        self._h264 = encoder
        self._log = log
        self.follower = RembFollower(min(min_bitrate_bps or encoder.bitrate_bps,
                                         encoder.bitrate_bps), encoder.bitrate_bps)
        self._stats = stats
        self._sent: deque[tuple[int, int]] = deque()  # (ns, bytes) of the last second
        self._last_report_ns = 0
        self._lock = threading.Lock()
        self.server = WebRtcServer(config, on_report=self._on_report,
                                   on_keyframe=self._keyframe_wanted,
                                   on_remb=self._remb, rewrite_sdp=rewrite_sdp, log=log)
        self.server.start()  # OSError naming the port or certificate

    def _keyframe_wanted(self) -> None:
        self._h264.force_keyframe = True  # read by the video thread before its next frame

    def _remb(self, bps: int) -> None:
        """The viewers' lowest estimate (asyncio thread): maybe a new encoder rate."""
        new = self.follower.update(bps, time.monotonic(), self.sent_bps())
        if new is not None:
            self._h264.set_bitrate(new)
            self._log(f"H.264 bitrate {new / 1e6:.2f} Mbit/s (browser estimate "
                      f"{bps / 1e6:.2f} Mbit/s, range {self.follower.min_bps / 1e6:.2f}-"
                      f"{self.follower.max_bps / 1e6:.2f})")

    def sent_bps(self) -> float:
        """What the encoder sent over the last second, bit/s (any thread)."""
        with self._lock:
            sent = list(self._sent)
        if len(sent) < 2:
            return 0.0
        span = max(sent[-1][0] - sent[0][0], 1)
        return sum(b for _, b in sent[1:]) * 8e9 / span

    def _on_report(self, frame: int, capture_ns: int, stages: dict[str, int]) -> None:
        """The page reached ``stages`` with ``frame`` (asyncio thread; our clock)."""
        with self._lock:
            self._last_report_ns = time.monotonic_ns()
        self._stats.viewer_samples(frame, {k: ns - capture_ns for k, ns in stages.items()},
                                   stages)

    def send(self, view: FrameView, pickup_ns: int,
             intact: Callable[[FrameView], bool]) -> SendOutcome:
        packets = self._h264.encode(view.array, view.capture_ns)
        encoded_ns = time.monotonic_ns()
        if not intact(view):
            self._h264.force_keyframe = True  # the torn frame was encoded: start clean
            return SendOutcome(Outcome.TORN, encoded_ns)
        for packet in packets:
            self.server.push(packet, view.seq, view.capture_ns)
        with self._lock:
            self._sent.append((encoded_ns, sum(p.size for p in packets)))
            while self._sent[0][0] < encoded_ns - SENT_WINDOW_NS:
                self._sent.popleft()
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
        return HeadsetStatus(fresh=fresh, measured_to="drawn in the browser",
                             end_stage=BROWSER_DRAWN, stages=PAGE_STAGES,
                             reports_malformed=self.server.reports_malformed,
                             target_rate_mbps=self.follower.target_bps / 1e6)

    def close(self) -> None:
        """Close every viewer and stop the server's thread (no report comes after)."""
        self.server.close()
        self._h264.close()
