"""Our H.264 bitrate follows the browser's estimate (REMB); PLI/FIR counted (no rclpy).

    follower = RembFollower(min_bps=1e6, max_bps=8e6)
    watch_feedback(sender, counters, on_remb=lambda bps: ...)   # per RTCRtpSender
    new = follower.update(remb_bps, now_s)                       # None = keep the rate

What aiortc (1.16) exposes: it negotiates ``goog-remb`` (aiortc.codecs' rtcpFeedback;
transport-wide congestion control is not implemented: no ``transport-cc`` feedback and
no handler for its RTCP), and ``RTCRtpSender._handle_rtcp_packet`` unpacks a REMB
(``RtcpPsfbPacket`` fmt ``RTCP_PSFB_APP``, ``rtp.unpack_remb_fci``) into
``self.__encoder.target_bitrate``: that is aiortc's own encoder, which only *packs* our
pre-encoded access units, so the estimate is lost. Chromium therefore estimates on its
side (receive-side REMB, sent about once a second and at once when it drops).

What this adapts, and why here: one internal, nothing copied. ``watch_feedback`` wraps
the sender instance's ``_handle_rtcp_packet`` (the RTP router awaits it for every RTCP
packet addressed to the sender): aiortc's handler runs first and unchanged (NACK
retransmissions, RTT, its own keyframe flag), then REMBs naming our SSRC go to
``on_remb`` and PLI/FIR are counted. ``check_aiortc_internals`` fails loudly (and
test/test_congestion.py with it) if the method, ``_ssrc`` or the REMB helpers change.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable
from dataclasses import dataclass

from aiortc import rtp
from aiortc.rtcrtpsender import RTCRtpSender

SMOOTHING = 0.5
"""Weight of a new REMB in the moving average on the way up (a drop is followed at once:
the link is already full)."""
MIN_CHANGE = 0.15
"""Relative change below which the rate stays (each change reopens the encoder: an IDR)."""
MIN_INTERVAL_S = 1.0
"""Shortest time between two increases (drops are not held back)."""


def check_aiortc_internals() -> None:
    """RuntimeError naming what changed in aiortc if this adaptation no longer fits."""
    missing = [name for name, ok in (
        ("RTCRtpSender._handle_rtcp_packet",
         callable(getattr(RTCRtpSender, "_handle_rtcp_packet", None))),
        ("RTCRtpSender._send_keyframe", callable(getattr(RTCRtpSender, "_send_keyframe", None))),
        ("rtp.unpack_remb_fci", callable(getattr(rtp, "unpack_remb_fci", None))),
        ("rtp.RtcpPsfbPacket", isinstance(getattr(rtp, "RtcpPsfbPacket", None), type)),
        ("rtp.RTCP_PSFB_APP", getattr(rtp, "RTCP_PSFB_APP", None) == 15),
        ("rtp.RTCP_PSFB_PLI", getattr(rtp, "RTCP_PSFB_PLI", None) == 1),
        ("rtp.RTCP_PSFB_FIR", getattr(rtp, "RTCP_PSFB_FIR", None) == 4),
    ) if not ok]
    if missing:
        raise RuntimeError(f"aiortc changed: {', '.join(missing)} not as expected; "
                           "vr_stream_ros/webrtc/congestion.py needs updating")


@dataclass
class FeedbackCounters:
    """The viewers' payload-specific feedback, as received."""

    pli: int = 0
    fir: int = 0
    remb: int = 0
    remb_malformed: int = 0
    last_remb_bps: int = 0


def watch_feedback(sender: object, counters: FeedbackCounters,
                   on_remb: Callable[[int], None]) -> None:
    """Count ``sender``'s PLI/FIR and pass every REMB naming its SSRC to ``on_remb``
    (called on the asyncio thread, with bit/s). Before the sender starts."""
    check_aiortc_internals()
    original = sender._handle_rtcp_packet  # bound: aiortc's handler, kept as it is

    async def handle(packet) -> None:
        await original(packet)
        if not isinstance(packet, rtp.RtcpPsfbPacket):
            return
        if packet.fmt == rtp.RTCP_PSFB_PLI:
            counters.pli += 1
        elif packet.fmt == rtp.RTCP_PSFB_FIR:
            counters.fir += 1
        elif packet.fmt == rtp.RTCP_PSFB_APP:
            try:
                bitrate, ssrcs = rtp.unpack_remb_fci(packet.fci)
            except (ValueError, struct.error):  # struct.error: fewer SSRCs than counted
                counters.remb_malformed += 1
                return
            if sender._ssrc in ssrcs:
                counters.remb += 1
                counters.last_remb_bps = bitrate
                on_remb(bitrate)

    sender._handle_rtcp_packet = handle


class RembFollower:
    """The encoder's bitrate from the browser's estimates: clamped to [min, max], down at
    once when it binds, up smoothed and at most once per MIN_INTERVAL_S, unchanged within
    MIN_CHANGE."""

    def __init__(self, min_bps: float, max_bps: float) -> None:
        if not 0 < min_bps <= max_bps:
            raise ValueError(f"REMB follower: min {min_bps:g} bit/s must be > 0 and <= max "
                             f"{max_bps:g} bit/s")
        self.min_bps, self.max_bps = float(min_bps), float(max_bps)
        self.target_bps = float(max_bps)
        self._average = float(max_bps)
        self._last_change_s = -math.inf
        self.changes = 0
        self.lowest_bps = float(max_bps)
        self.app_limited = 0
        """Lower estimates not applied: the encoder already sent less."""

    def update(self, remb_bps: float, now_s: float,
               sent_bps: float | None = None) -> int | None:
        """A REMB arrived at ``now_s``; the new target (bit/s) when it changes, else None.

        ``sent_bps``, what the encoder really sent lately: a lower target that it already
        stays under is not applied (the stream is application-limited, e.g. a still
        scene: Chromium's estimate is then ~1.5 x what arrives, and a reopened encoder's
        IDR would cost 100-200 ms of blurred frames for nothing, measured)."""
        estimate = min(self.max_bps, max(self.min_bps, float(remb_bps)))
        if estimate < self._average:
            self._average = estimate
        else:
            self._average += SMOOTHING * (estimate - self._average)
        wanted = self._average
        if wanted < self.target_bps and sent_bps is not None and sent_bps < wanted:
            self.app_limited += 1
            return None
        change = (wanted - self.target_bps) / self.target_bps
        if abs(change) < MIN_CHANGE and not (wanted in (self.min_bps, self.max_bps)
                                             and wanted != self.target_bps):
            return None
        if change > 0 and now_s - self._last_change_s < MIN_INTERVAL_S:
            return None
        self.target_bps = wanted
        self._last_change_s = now_s
        self.changes += 1
        self.lowest_bps = min(self.lowest_bps, wanted)
        return int(wanted)
