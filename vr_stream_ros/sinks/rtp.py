"""RTP/JPEG to the headset over UDP or TCP (RFC 4571), with RTCP on the same port.

One class does the JPEG, RTP and RTCP work; the sender (net/senders.py) is injected.
Between frames the sink sends RTCP sender reports and reads the headset's reports
(round trip, clock offset, loss, per-frame decode times). Over TCP it also pushes on
the unsent rest of a frame the kernel did not take at once, instead of leaving it for
the next frame.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from vr_stream_ros.codecs.jpeg import JpegEncoder
from vr_stream_ros.net.senders import TcpRtpSender, UdpRtpSender
from vr_stream_ros.ring.frame_ring import FrameView
from vr_stream_ros.rtp.feedback import HeadsetFeedback
from vr_stream_ros.rtp.jpeg import JpegPacketizer
from vr_stream_ros.rtp.packet import rtp_timestamp
from vr_stream_ros.rtp.rtcp import DetectionsMeta, detections_app, is_rtcp, sender_report
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


class RtpJpegSink(FrameSink):
    """JPEG -> RTP -> the injected sender; RTCP both ways between frames."""

    stages = (*HEADSET_STAGES, END_TO_DECODED)

    def __init__(self, sender: UdpRtpSender | TcpRtpSender, encoder: JpegEncoder, *,
                 ssrc: int, mtu: int, rtcp_interval_s: float, stats: StreamStats,
                 transport: str = "udp") -> None:
        self.transport = transport
        self._sender = sender
        self._encoder = encoder
        self._packetizer = JpegPacketizer(ssrc=ssrc, mtu=mtu)
        self._feedback = HeadsetFeedback(ssrc)
        self._loss = FrameLossCounter()
        self._lock = threading.Lock()  # feedback state is read by the executor
        self._rtcp_interval_ns = int(rtcp_interval_s * 1e9)
        self._next_sr_ns = 0
        self._stats = stats

    @property
    def ssrc(self) -> int:
        """The RTP stream's SSRC."""
        return self._packetizer.ssrc

    def send(self, view: FrameView, pickup_ns: int,
             intact: Callable[[FrameView], bool]) -> SendOutcome:
        jpeg = self._encoder.encode(view.array)
        encoded_ns = time.monotonic_ns()
        if not intact(view):  # the writer lapped us while we encoded
            return SendOutcome(Outcome.TORN, encoded_ns)
        packets = self._packetizer.packetize(
            jpeg, rtp_timestamp(view.capture_ns), view.capture_ns, view.seq)
        result = self._sender.send_frame(packets)
        if result.dropped:
            return SendOutcome(Outcome.DROPPED, encoded_ns, result.done_ns, result.reason)
        with self._lock:
            self._feedback.frame_sent(view.seq, view.capture_ns, result.done_ns)
            self._loss.frame_sent(view.seq)
        return SendOutcome(Outcome.SENT, encoded_ns, result.done_ns)

    def idle(self, now_ns: int) -> float:
        """RTCP between frames, on the video thread (a TCP stream stays whole)."""
        if now_ns >= self._next_sr_ns:
            self._next_sr_ns = now_ns + self._rtcp_interval_ns
            self._send_sender_report()
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

    def _read_feedback(self) -> None:
        for packet, arrived in self._sender.poll_feedback_stamped():
            with self._lock:
                if not is_rtcp(packet):
                    self._feedback.malformed += 1
                    continue
                frames = self._feedback.on_packet(packet, arrived)
                self._loss.frames_reported(f.frame_seq for f in frames)
            for f in frames:
                self._stats.viewer_samples(
                    f.frame_seq,
                    {"network": f.last_packet_ns - f.sent_ns,
                     "receive_decode": f.decoded_ns - f.last_packet_ns,
                     END_TO_DECODED: f.decoded_ns - f.capture_ns},
                    {"headset_last_packet": f.last_packet_ns, "headset_decoded": f.decoded_ns})

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
                reports_malformed=fb.malformed)

    def close(self) -> None:
        self._sender.close()


class TcpRtpJpegSink(RtpJpegSink):
    """RTP over TCP: between frames, also push on what the kernel did not take yet."""

    def __init__(self, sender: TcpRtpSender, encoder: JpegEncoder, **kwargs) -> None:
        super().__init__(sender, encoder, transport="tcp", **kwargs)
        self._tcp = sender

    def idle(self, now_ns: int) -> float:
        self._tcp.flush()  # first: an SR cannot go while a frame's rest waits
        wait = super().idle(now_ns)
        return wait if self._tcp.flush() else min(wait, FLUSH_RETRY_S)
