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

BACKOFF_MARGIN = 0.9
"""A falling estimate is congestion only below this fraction of what we sent lately: GCC's
receiver backs off to 0.85 x the rate it receives on overuse (draft-ietf-rmcat-gcc-02,
5.5). An estimate that rises, however low, is not congestion: Chromium's starts near its
start rate and climbs by tens of kbit/s a second whatever arrives (measured on loopback:
0.50 -> 0.80 Mbit/s in 8 s while 1.4 Mbit/s arrived), and following it down from the
first REMB left the stream at 1 Mbit/s, blurred."""
STEP_UP = 1.25
"""Climb per MIN_INTERVAL_S while the estimate shows no congestion. The receiver's
estimate is capped at 1.5 x the rate it receives (same draft, 5.5) and our encoder sends
less than its target on an easy scene, so a rate that only followed the estimate up would
stay at its low point for good (measured: stuck at 1.2 Mbit/s on loopback, the stamps
blurred unreadable on a third of the frames)."""
MIN_CHANGE = 0.15
"""Relative drop below which the rate stays (each change reopens the encoder: an IDR)."""
MIN_INTERVAL_S = 1.0
"""Shortest time between two increases (drops are not held back)."""
HOLD_S = 2.0
"""No climb this long after a drop: the link just said it was full."""


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
    """The encoder's bitrate from the browser's estimates (REMB), within [min, max]: down
    at once to the estimate when it falls below BACKOFF_MARGIN x what we send, then, after
    HOLD_S without congestion, up STEP_UP each MIN_INTERVAL_S back to max."""

    def __init__(self, min_bps: float, max_bps: float) -> None:
        if not 0 < min_bps <= max_bps:
            raise ValueError(f"REMB follower: min {min_bps:g} bit/s must be > 0 and <= max "
                             f"{max_bps:g} bit/s")
        self.min_bps, self.max_bps = float(min_bps), float(max_bps)
        self.target_bps = float(max_bps)
        self._last_remb: float | None = None
        self._last_change_s = -math.inf
        self._last_drop_s = -math.inf
        self.changes = 0
        self.lowest_bps = float(max_bps)
        self.app_limited = 0
        """Estimates below the target not applied: no congestion, the encoder sent less."""

    def update(self, remb_bps: float, now_s: float,
               sent_bps: float | None = None) -> int | None:
        """A REMB arrived at ``now_s``; the new target (bit/s) when it changes, else None.

        ``sent_bps``: what the encoder really sent lately (None: unknown, a falling
        estimate below the target is then a drop). A falling estimate that is not below
        BACKOFF_MARGIN x that is not applied either (a still scene: a reopened encoder's
        IDR would cost 100-200 ms of blurred frames for nothing, measured)."""
        falling = self._last_remb is not None and remb_bps < self._last_remb
        self._last_remb = remb_bps
        estimate = min(self.max_bps, max(self.min_bps, float(remb_bps)))
        if falling and (sent_bps is None or estimate < BACKOFF_MARGIN * sent_bps):
            if estimate >= self.target_bps:
                return None
            drop = (self.target_bps - estimate) / self.target_bps
            if drop < MIN_CHANGE and estimate != self.min_bps:
                return None
            self._last_drop_s = now_s
            return self._change(estimate, now_s)
        if estimate < self.target_bps:
            self.app_limited += 1
        if (self.target_bps >= self.max_bps or now_s - self._last_change_s < MIN_INTERVAL_S
                or now_s - self._last_drop_s < HOLD_S):
            return None
        return self._change(min(self.max_bps, self.target_bps * STEP_UP), now_s)

    def _change(self, bps: float, now_s: float) -> int:
        self.target_bps = bps
        self._last_change_s = now_s
        self.changes += 1
        self.lowest_bps = min(self.lowest_bps, bps)
        return int(bps)
