"""RTP/JPEG to the headset over UDP or TCP (RFC 4571), with RTCP on the same port.

One class does the JPEG, RTP and RTCP work; the sender (net/senders.py) is injected.
Between frames the sink sends RTCP sender reports and reads the headset's reports
(round trip, clock offset, loss, per-frame decode times). Over TCP it also pushes on
the unsent rest of a frame the kernel did not take at once, instead of leaving it for
the next frame.

With NACK on (UDP), a feedback thread serves the headset's generic NACKs (RFC 4585) as
soon as they arrive, from a bounded history of sent packets (rtp/history.py), as RFC
4588 RTX packets (rtp/rtx.py); with ``fec`` each frame is followed by XOR parity
packets (rtp/fec.py); the deadline defaults to one frame period past due
(two frame periods after the frame was sent). A frame the sender dropped gives its
unsent sequence numbers back, so the bridge's own drops never look like network loss.
"""

from __future__ import annotations

import random
import select
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from vr_stream_ros.codecs.jpeg import JpegEncoder
from vr_stream_ros.net.senders import TcpRtpSender, UdpRtpSender
from vr_stream_ros.ring.frame_ring import FrameView
from vr_stream_ros.rtp.adapt import LinkAdapter
from vr_stream_ros.rtp.fec import FecEncoder
from vr_stream_ros.rtp.feedback import HeadsetFeedback
from vr_stream_ros.rtp.history import PacketHistory, ResendCounters
from vr_stream_ros.rtp.jpeg import JpegPacketizer
from vr_stream_ros.rtp.packet import rtp_timestamp
from vr_stream_ros.rtp.rtcp import DetectionsMeta, detections_app, is_rtcp, sender_report
from vr_stream_ros.rtp.rtx import RTX_PAYLOAD_TYPE, rtx_packet
from vr_stream_ros.sinks.base import (
    FrameSink,
    HeadsetStatus,
    Outcome,
    SendOutcome,
)
from vr_stream_ros.sinks.frame_loss import FrameLossCounter
from vr_stream_ros.sinks.stream_stats import StreamStats

HEADSET_STAGES = ("network", "receive_decode")
END_TO_DECODED = "capture_to_decoded"
FLUSH_RETRY_S = 0.001
"""TCP: how soon a frame's unsent rest is pushed again."""
PACE_HEADROOM = 2.0
"""Adapting: frames are paced at this many times the rate sent (see ``_pace``)."""
SWITCH_INTERVAL_S = 0.0005
"""With NACK on: how long the feedback thread may wait for the GIL (see __init__)."""


@dataclass(frozen=True)
class NackConfig:
    """Retransmission on the headset's NACKs (UDP only)."""

    enabled: bool = False
    history_ms: float = 200.0
    deadline_ms: float = 0.0  # 0: one frame period past due
    max_resend_per_s: float = 2000.0
    rtx_payload_type: int = RTX_PAYLOAD_TYPE


class RtpJpegSink(FrameSink):
    """JPEG -> RTP -> the injected sender; RTCP both ways between frames."""

    stages = (*HEADSET_STAGES, END_TO_DECODED)

    def __init__(self, sender: UdpRtpSender | TcpRtpSender, encoder: JpegEncoder, *,
                 ssrc: int, mtu: int, rtcp_interval_s: float, stats: StreamStats,
                 transport: str = "udp", nack: NackConfig = NackConfig(),
                 adapter: LinkAdapter | None = None, fec: int = 0) -> None:
        self.transport = transport
        # XOR parity per frame (rtp/fec.py), UDP only: packets per parity packet, 0 = off.
        self.fec = FecEncoder(fec, random.getrandbits(32)) if fec and transport == "udp" \
            else None
        self._sender = sender
        self._encoder = encoder
        self.nack = nack if transport == "udp" else NackConfig()
        self._packetizer = JpegPacketizer(ssrc=ssrc, mtu=mtu, frame_span=self.nack.enabled)
        self._feedback = HeadsetFeedback(ssrc)
        self._history = PacketHistory(self.nack.history_ms,
                                      max_resend_per_s=self.nack.max_resend_per_s)
        self.rtx_ssrc = random.getrandbits(32)
        self._rtx_seq = random.getrandbits(16)
        self.rtx_sent = 0
        self.rtx_bytes = 0
        self.serve_ms: deque[float] = deque(maxlen=4096)  # NACK arrival -> its RTX sent
        # Estimated from the capture times of the frames sent (not their send times, which
        # pacing stretches: a rate from those fed the pacer a lower rate every frame).
        self._period_ns = 16_666_667
        self._last_capture_ns = 0
        self._frame_bytes = 0.0  # mean bytes per frame sent (EWMA)
        self.adapter = adapter
        self._loss = FrameLossCounter()
        self._lock = threading.Lock()  # feedback state is read by the executor
        self._rtcp_interval_ns = int(rtcp_interval_s * 1e9)
        self._next_sr_ns = 0
        self._stats = stats
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if self.nack.enabled:  # NACKs are served at once, not between frames
            # The feedback thread waits for the GIL up to the switch interval (5 ms by
            # default) while the video thread runs Python (packetizing): NACK -> RTX p95
            # was 7.2 ms with it. This process-wide setting is the bridge's, which is ours.
            sys.setswitchinterval(min(sys.getswitchinterval(), SWITCH_INTERVAL_S))
            self._thread = threading.Thread(target=self._feedback_loop, daemon=True,
                                            name="rtp-feedback")
            self._thread.start()

    @property
    def ssrc(self) -> int:
        """The RTP stream's SSRC."""
        return self._packetizer.ssrc

    def send(self, view: FrameView, pickup_ns: int,
             intact: Callable[[FrameView], bool]) -> SendOutcome:
        level = self.adapter.level if self.adapter is not None else None
        array = view.array
        if level is not None:
            if level.fps_divisor > 1 and view.seq % level.fps_divisor:  # not encoded at all
                return SendOutcome(Outcome.DROPPED, time.monotonic_ns(), 0, "adapt_fps")
            if level.scale > 1:
                array = np.ascontiguousarray(array[::level.scale, ::level.scale])
        jpeg = self._encoder.encode(array)
        encoded_ns = time.monotonic_ns()
        if not intact(view):  # the writer lapped us while we encoded
            return SendOutcome(Outcome.TORN, encoded_ns)
        first_seq = self._packetizer.sequence
        packets = self._packetizer.packetize(
            jpeg, rtp_timestamp(view.capture_ns), view.capture_ns, view.seq)
        result = self._sender.send_frame(packets)
        if result.dropped:  # unsent packets give their numbers back: no false network loss
            self._packetizer.sequence = (first_seq + result.packets_sent) & 0xFFFF
            return SendOutcome(Outcome.DROPPED, encoded_ns, result.done_ns, result.reason)
        if self.fec is not None:  # right after the frame: a lost packet is rebuilt at once
            for parity in self.fec.protect(packets):
                self._sender.send_control(parity)
        with self._lock:
            self._feedback.frame_sent(view.seq, view.capture_ns, result.done_ns)
            self._loss.frame_sent(view.seq)
            if self.nack.enabled:
                for i, packet in enumerate(packets):
                    self._history.add(first_seq + i, packet, result.done_ns)
            if self._last_capture_ns:
                gap = min(max(view.capture_ns - self._last_capture_ns, 1_000_000), 200_000_000)
                self._period_ns += (gap - self._period_ns) // 8
            self._last_capture_ns = view.capture_ns
            self._frame_bytes += (result.bytes_sent - self._frame_bytes) / 8
            self._pace()
        return SendOutcome(Outcome.SENT, encoded_ns, result.done_ns)

    def idle(self, now_ns: int) -> float:
        """RTCP between frames, on the video thread (a TCP stream stays whole)."""
        if now_ns >= self._next_sr_ns:
            self._next_sr_ns = now_ns + self._rtcp_interval_ns
            self._send_sender_report()
        if self._thread is None:
            self._read_feedback()
        return max(0.0, (self._next_sr_ns - time.monotonic_ns()) / 1e9)

    def _send_sender_report(self) -> None:
        st = self._sender.stats
        now = time.monotonic_ns()
        packet = sender_report(self.ssrc, now, rtp_timestamp(now), st.packets_sent,
                               st.bytes_sent)
        if self._sender.send_control(packet):
            with self._lock:
                self._feedback.sender_report_sent(now)

    def _feedback_loop(self) -> None:
        """The feedback thread (NACK on): read the headset's RTCP as it arrives."""
        sock = self._sender.sock
        while not self._stop.is_set():
            try:
                ready, _, _ = select.select([sock], [], [], 0.05)
            except (OSError, ValueError):  # closed
                return
            if ready:
                self._read_feedback()

    def _read_feedback(self) -> None:
        for packet, arrived in self._sender.poll_feedback_stamped():
            with self._lock:
                if not is_rtcp(packet):
                    self._feedback.malformed += 1
                    continue
                frames = self._feedback.on_packet(packet, arrived)
                self._loss.frames_reported(f.frame_seq for f in frames)
                resend = self._serve_nacks(arrived)
                self._adapt(arrived)
            for original in resend:
                self._rtx_seq = (self._rtx_seq + 1) & 0xFFFF
                rtx = rtx_packet(original, self.nack.rtx_payload_type, self.rtx_ssrc,
                                 self._rtx_seq)
                if self._sender.send_control(rtx):
                    self.rtx_sent += 1
                    self.rtx_bytes += len(rtx)
            if resend:
                self.serve_ms.append((time.monotonic_ns() - arrived) / 1e6)
            for f in frames:
                self._stats.viewer_samples(
                    f.frame_seq,
                    {"network": f.last_packet_ns - f.sent_ns,
                     "receive_decode": f.decoded_ns - f.last_packet_ns,
                     END_TO_DECODED: f.decoded_ns - f.capture_ns},
                    {"headset_last_packet": f.last_packet_ns, "headset_decoded": f.decoded_ns})

    def _pace(self) -> None:
        """Adapting below the top level (the link shrank): pace each frame at PACE_HEADROOM
        x the rate now sent, so its burst spreads over about half a frame period instead
        of arriving at once at the bottleneck's queue; at the top level, as configured."""
        if self.adapter is None or not isinstance(self._sender, UdpRtpSender):
            return
        rate = PACE_HEADROOM * self.target_rate_bps if self.adapter.index else 0.0
        self._sender.set_pacing_rate(rate)

    @property
    def target_rate_bps(self) -> float:
        """The rate sent now: mean frame bytes over the mean frame interval (the adapted
        quality, frame rate and size all show in it)."""
        return self._frame_bytes * 8e9 / self._period_ns

    def _adapt(self, now_ns: int) -> None:
        """A report about our stream moves the adaptation level (lock held)."""
        fb = self._feedback
        if self.adapter is None or fb.last_block_ns != now_ns:
            return
        if self.adapter.on_report(now_ns, fb.fraction_lost, fb.last_rtt_ns):
            self._encoder.set_quality(self.adapter.level.quality)

    def _serve_nacks(self, now_ns: int) -> list[bytes]:
        """Packets to resend for the NACKs just read (lock held)."""
        nacks, self._feedback.nacks = self._feedback.nacks, []
        if not self.nack.enabled:
            return []
        deadline = int(self.nack.deadline_ms * 1e6) or 2 * self._period_ns
        return [p for seqs in nacks for p in self._history.request(seqs, now_ns, deadline)]

    def send_detections(self, meta: DetectionsMeta) -> bool:
        """As RTCP APP 'VRDT' on the RTP port."""
        return self._sender.send_control(detections_app(self.ssrc, meta))

    def headset(self, now_ns: int) -> HeadsetStatus:
        with self._lock:
            fb = self._feedback
            return HeadsetStatus(
                fresh=fb.fresh(now_ns), measured_to="decoded at the headset",
                end_stage=END_TO_DECODED, stages=HEADSET_STAGES,
                rtt_ms=fb.clock.rtt_ns / 1e6 if fb.clock else 0.0,
                clock_offset_ms=fb.clock.offset_ns / 1e6 if fb.clock else 0.0,
                jitter_ms=fb.jitter_ms, packet_loss=fb.fraction_lost,
                packets_lost=max(0, fb.cumulative_lost), frames_lost=self._loss.lost,
                reports_malformed=fb.malformed,
                clock_offset_error_ms=fb.clock.rtt_ns / 2e6 if fb.clock else 0.0,
                packets_retransmitted=self.rtx_sent,
                nacks_refused=self._history.counters.refused,
                jpeg_quality=self._encoder.quality,
                adapt_level=self.adapter.index if self.adapter is not None else 0,
                target_rate_mbps=self.target_rate_bps / 1e6)

    @property
    def resend_counters(self) -> ResendCounters:
        """What became of the NACKed packets (rtp/history.py)."""
        return self._history.counters

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=1)
        self._sender.close()
        self._encoder.close()  # its band threads (jpeg_threads), once no frame is encoded


class TcpRtpJpegSink(RtpJpegSink):
    """RTP over TCP: between frames, also push on what the kernel did not take yet."""

    def __init__(self, sender: TcpRtpSender, encoder: JpegEncoder, **kwargs) -> None:
        super().__init__(sender, encoder, transport="tcp", **kwargs)
        self._tcp = sender

    def idle(self, now_ns: int) -> float:
        self._tcp.flush()  # first: an SR cannot go while a frame's rest waits
        wait = super().idle(now_ns)
        return wait if self._tcp.flush() else min(wait, FLUSH_RETRY_S)
