"""What the bridge learns from the headset's RTCP reports (no rclpy).

It remembers the sender reports it sent and the frames it sent, and turns each report
into: round trip, the headset's clock offset (the estimate from the exchange with the
smallest round trip among the recent ones, as NTP does), loss and jitter, and per-frame
stage times on the bridge's clock (network: last datagram sent -> last packet received;
receive/decode: last packet -> decoded; end to end: capture -> decoded at the headset).
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from dataclasses import dataclass

from vr_stream_ros.rtp.packet import ns_to_uq32_32
from vr_stream_ros.rtp.rtcp import ClockEstimate, Compound, estimate_clock, middle32, parse_compound


@dataclass(frozen=True)
class HeadsetFrame:
    """One frame as the headset saw it, on the bridge's clock (ns)."""

    frame_seq: int
    capture_ns: int
    sent_ns: int
    last_packet_ns: int
    decoded_ns: int


class HeadsetFeedback:
    """Bookkeeping of sent SRs and frames, and the state the reports give."""

    def __init__(self, ssrc: int, clock_window: int = 8, frame_memory: int = 512) -> None:
        self.ssrc = ssrc
        self._srs: OrderedDict[int, int] = OrderedDict()  # LSR -> sent ns
        self._frames: OrderedDict[int, tuple[int, int]] = OrderedDict()  # seq -> capture, sent
        self._frame_memory = frame_memory
        self._estimates: deque[ClockEstimate] = deque(maxlen=clock_window)
        self.clock: ClockEstimate | None = None
        self.fraction_lost = 0.0
        self.cumulative_lost = 0
        self.jitter_ms = 0.0
        self.reports = 0
        self.malformed = 0
        self.last_report_ns = 0
        self.last_block_ns = 0  # when a report block about our stream last arrived
        self.last_rtt_ns: int | None = None  # the newest round trip (not the smallest)
        self.nacks: list[list[int]] = []  # sequence numbers asked for, per NACK, not yet served

    def sender_report_sent(self, sent_ns: int) -> None:
        """Remember an SR (its NTP field was ``sent_ns``) to match the LSR of replies."""
        self._srs[middle32(ns_to_uq32_32(sent_ns))] = sent_ns
        while len(self._srs) > 32:
            self._srs.popitem(last=False)

    def frame_sent(self, frame_seq: int, capture_ns: int, sent_ns: int) -> None:
        """Remember when a frame was captured and sent."""
        self._frames[frame_seq & 0xFFFFFFFF] = (capture_ns, sent_ns)
        while len(self._frames) > self._frame_memory:
            self._frames.popitem(last=False)

    def on_packet(self, packet: bytes, arrived_ns: int | None = None) -> list[HeadsetFrame]:
        """Digest one RTCP compound packet; returns the frames it reported."""
        arrived_ns = time.monotonic_ns() if arrived_ns is None else arrived_ns
        report = parse_compound(packet)
        if report.malformed:
            self.malformed += 1
            return []
        self.reports += 1
        self.last_report_ns = arrived_ns
        self._digest_blocks(report, arrived_ns)
        self.nacks += [seqs for ssrc, seqs in report.nacks if ssrc == self.ssrc]
        return self._frames_of(report)

    def _digest_blocks(self, report: Compound, arrived_ns: int) -> None:
        for block in report.report_blocks:
            if block.ssrc != self.ssrc:
                continue
            self.last_block_ns = arrived_ns
            self.fraction_lost = block.fraction_lost
            self.cumulative_lost = block.cumulative_lost
            self.jitter_ms = block.jitter / 90.0  # 90 kHz RTP clock
            sent = self._srs.get(block.lsr)
            if sent is not None and report.receiver_time_ns is not None:
                estimate = estimate_clock(sent, block.dlsr, report.receiver_time_ns, arrived_ns)
                if estimate.rtt_ns >= 0:
                    self.last_rtt_ns = estimate.rtt_ns
                    self._estimates.append(estimate)
                    self.clock = min(self._estimates, key=lambda e: e.rtt_ns)

    def _frames_of(self, report: Compound) -> list[HeadsetFrame]:
        if self.clock is None:
            return []
        offset = self.clock.offset_ns
        frames = []
        for stamp in report.frames:
            sent = self._frames.pop(stamp.frame_seq, None)
            if sent is None:
                continue  # unknown or already reported
            capture_ns, sent_ns = sent
            frames.append(HeadsetFrame(stamp.frame_seq, capture_ns, sent_ns,
                                       stamp.last_packet_ns - offset,
                                       stamp.decoded_ns - offset))
        return frames

    def fresh(self, now_ns: int, max_age_s: float = 3.0) -> bool:
        """True if a report arrived within ``max_age_s``."""
        return self.last_report_ns > 0 and now_ns - self.last_report_ns < max_age_s * 1e9
