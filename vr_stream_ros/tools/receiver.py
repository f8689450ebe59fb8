"""The reference receiver: what the headset does, runnable on any PC without ROS.

    python3 -m vr_stream_ros.tools.receiver --port 5004 [--tcp] [--duration 10]

It receives RTP/JPEG over UDP (or RTP over TCP, RFC 4571: it listens and accepts the
bridge's connection, and a new connection replaces the old one), reassembles and
decodes every frame (simplejpeg, RGB), reads the frame number the synthetic pattern
carries in its pixels, and prints fps, loss and latency once a second; at the end
(``--duration``, SIGINT or SIGTERM) a summary, and with ``--summary-json`` every figure.
It answers the bridge's RTCP sender reports with receiver reports (loss, jitter, its
clock, and per-frame stamps: see rtcp.py). With ``--nack`` (UDP) it asks for lost
packets with generic NACKs (RFC 4585) and takes the repairs as RFC 4588 RTX packets
(``--rtx-pt``); when to ask is rtp/nack.py's NackTracker. With ``--fec`` it rebuilds a
packet from the bridge's per-frame XOR parity (rtp/fec.py) without asking.

Figures that describe the link: loss counts packets still missing after the reorder
tolerance and every repair round, not packets that came late (``packets_reordered``);
jitter is RFC 3550's estimator over each frame's last packet (over every packet it
reads far too low: a frame's packets share one timestamp and leave in one burst).
With ``--conceal`` a frame with restart markers that lost packets is shown with those
stripes from the previous frame (rtp/conceal.py); ``stale_area_pct`` counts them.

Latency is this host's CLOCK_MONOTONIC right after decoding minus the frame's capture
time from the abs-capture-time extension, which the sender writes in *its*
CLOCK_MONOTONIC (see rtp.py). That difference means something only when both are the
same clock, i.e. the same host: it is reported by default when the sender's address is
loopback, and otherwise only with ``--assume-same-clock`` (the offset between two
hosts' monotonic clocks is unknown here; the bridge estimates it from RTCP instead).

Stereo (``--layout``, default ``auto``: found from the stamps of the first stamped frame):
each eye's stamp is read from its own half, giving per-eye capture -> decoded, the eye
skew (right eye's capture minus left's, from the pixels) and pairs whose eyes show
different frames (``pairs_mismatched``: must stay 0); frame numbers are the left eye's.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import select
import signal
import socket
import sys
import time
from dataclasses import dataclass, field

import simplejpeg

from vr_stream_ros.camera.layout import LAYOUTS
from vr_stream_ros.camera.pattern import PixelStamp, read_eye_stamps, read_stamp
from vr_stream_ros.latency.percentiles import summarize
from vr_stream_ros.net.senders import check_port
from vr_stream_ros.rtp.fec import FEC_PAYLOAD_TYPE, FecDecoder
from vr_stream_ros.rtp.jpeg import JpegDepacketizer, ReceivedFrame
from vr_stream_ros.rtp.nack import NackTracker, generic_nack
from vr_stream_ros.rtp.packet import (
    Rfc4571Decoder,
    RtpError,
    frame_rfc4571,
    parse_packet,
    read_frame_span,
)
from vr_stream_ros.rtp.rtcp import (
    DetectionsMeta,
    FrameStamps,
    ReportBlock,
    frame_stamps_app,
    is_rtcp,
    middle32,
    parse_compound,
    receiver_reference_time,
    receiver_report,
)
from vr_stream_ros.rtp.rtx import RTX_PAYLOAD_TYPE, restore_original

AUTO_GIVE_UP = 30
"""--layout auto: frames without any stamp after which the stream counts as mono."""
STAGES = ("capture_to_first_packet", "first_to_last_packet", "last_packet_to_decoded")
_SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)  # Linux; Python does not export it
HOLD_MS = 35.0
"""With --nack: how long a frame waits for repairs. Two rounds fit (noticed -> repaired
p95 18 ms, one round, at 5 ms one way on a loaded 2-core host); 30 left the second
round's repair a few ms too late at 3 % loss."""
RCVBUF_BYTES = 8 << 20
"""Receive buffer asked for: a few frames of 720p JPEG, so a decode stall drops nothing."""


def _grow_rcvbuf(sock: socket.socket, size: int) -> int:
    """Set SO_RCVBUF past net.core.rmem_max when allowed (root); return what the kernel gave."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, _SO_RCVBUFFORCE, size)
    except OSError:  # not root (or not Linux): capped at net.core.rmem_max
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
    return sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)


def _percentiles(samples: list[float]) -> dict[str, float] | None:
    """p50/p95/p99/max/mean/samples rounded to 3 decimals, None without samples."""
    p = summarize(samples)
    return p.as_dict() if p else None


@dataclass
class ReceiverStats:
    """Everything the receiver counts; ``summary()`` is the JSON it writes."""

    frames_received: int = 0
    frames_decoded: int = 0
    decode_errors: int = 0
    bytes: int = 0
    stamps: list[int] = field(default_factory=list)
    out_of_order: int = 0
    unreadable: int = 0
    latency_ms: list[float] = field(default_factory=list)
    stages_ms: dict[str, list[float]] = field(
        default_factory=lambda: {s: [] for s in STAGES})
    started: float = field(default_factory=time.monotonic)
    detections_received: int = 0
    detection_lag_frames: list[int] = field(default_factory=list)
    last_detections: DetectionsMeta | None = None
    frames_concealed: int = 0  # decoded with stripes taken from the previous frame
    stale_frames: float = 0.0  # the concealed area, in whole frames


@dataclass
class StereoStats:
    """What the receiver reads from the two eyes of stereo frames (``--layout``)."""

    layout: str = "auto"
    """mono, side_by_side, top_bottom; auto until the first stamped frame tells (mono
    after ``AUTO_GIVE_UP`` frames without a stamp: a camera that stamps nothing)."""
    unstamped: int = 0
    pairs: int = 0
    pairs_mismatched: int = 0  # both eyes stamped, different frame numbers
    eye_unreadable: int = 0  # frames with one eye's stamp missing or corrupt
    skew_ms: list[float] = field(default_factory=list)  # right eye's capture - left's
    eye_latency_ms: dict[str, list[float]] = field(
        default_factory=lambda: {"left": [], "right": []})

    def summary(self) -> dict | None:
        """The ``stereo`` part of the JSON; None for a mono stream."""
        if self.layout in ("mono", "auto"):
            return None
        return {"layout": self.layout, "pairs": self.pairs,
                "pairs_mismatched": self.pairs_mismatched,
                "eye_unreadable": self.eye_unreadable,
                "eye_skew_ms": _percentiles([abs(v) for v in self.skew_ms]),
                "eye_skew_signed_max_ms": round(max(self.skew_ms, key=abs), 3)
                if self.skew_ms else None,
                "capture_to_decoded_ms": {e: _percentiles(v)
                                          for e, v in self.eye_latency_ms.items()}}


def detect_layout(image) -> str | None:
    """The layout a stamped frame is packed in, by where its stamps lie; None unstamped."""
    stamp = read_stamp(image)
    if stamp is not None and stamp.eye == "mono":
        return "mono"
    for layout in LAYOUTS[1:]:
        if any(s is not None for s in read_eye_stamps(image, layout).values()):
            return layout
    return None


class StreamReceiver:
    """Receives, reassembles and decodes one RTP/JPEG stream, keeping statistics."""

    def __init__(self, port: int, bind: str = "127.0.0.1", *, tcp: bool = False,
                 same_clock: bool | None = None, report_interval: float = 0.2,
                 clock_offset_ns: int = 0, nack: bool = False, reorder_ms: float = 2.0,
                 nack_rounds: int = 3, rtx_payload_type: int = RTX_PAYLOAD_TYPE,
                 tail_ms: float = 6.0, hold_ms: float = HOLD_MS, conceal: bool = False,
                 layout: str = "auto", fec: bool = False,
                 fec_payload_type: int = FEC_PAYLOAD_TYPE) -> None:
        self.tcp = tcp
        self.stereo = StereoStats(layout)
        self.fec = FecDecoder() if fec and not tcp else None
        self.fec_payload_type = fec_payload_type
        self._media_ssrc: int | None = None
        self.tracker = NackTracker(reorder_ms, nack_rounds, enabled=nack and not tcp,
                                   tail_ms=tail_ms)
        self.rtx_payload_type = rtx_payload_type
        self.rtx_malformed = 0
        self.rtcp_malformed = 0  # RTCP datagrams dropped as malformed (what came before kept)
        self.decoded_at_ns: list[int] = []  # decode time of every frame decoded (freezes)
        self.same_clock = same_clock
        self.report_interval = report_interval
        self.clock_offset_ns = clock_offset_ns  # simulated headset clock (tests)
        self.ssrc = random.getrandbits(32)
        self._last_sr: tuple[int, int, int] | None = None  # LSR, arrival (our clock), ssrc
        self._peer: tuple[str, int] | None = None
        self._last_report = 0.0
        self._stamps: list[FrameStamps] = []
        self._expected_prior = self._lost_prior = 0
        self.reports_sent = 0
        self.depacketizer = JpegDepacketizer(hold_ms=hold_ms if (nack or fec) and not tcp
                                             else 0.0,
                                             conceal=conceal)
        self.stats = ReceiverStats()
        self.window: list[float] = []  # latencies of the current second
        self.window_frames = 0
        self.window_bytes = 0
        self.window_lost_start = 0
        self._conn: socket.socket | None = None
        self._tcp_decoder = Rfc4571Decoder()
        if tcp:
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.sock.bind((bind, port))
            self.sock.listen(1)
        else:
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.sock.bind((bind, port))
        # UDP: room for bursts while we decode. TCP keeps the kernel's autotuning.
        self.rcvbuf = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) if tcp else \
            _grow_rcvbuf(self.sock, RCVBUF_BYTES)
        self.sock.setblocking(False)
        self._tcp_buf = bytearray(1 << 18)
        self._window_complete_start = 0

    def poll(self, timeout: float) -> list[ReceivedFrame]:
        """Wait up to ``timeout`` s for data; handle it and return the frames it completed."""
        readable = [self.sock] + ([self._conn] if self._conn is not None else [])
        for due in (self.tracker.next_due_ns(), self.depacketizer.next_release_ns()):
            if due is not None:
                timeout = min(timeout, max(0.0, (due - self.clock_ns()) / 1e9))
        ready, _, _ = select.select(readable, [], [], timeout)
        frames: list[ReceivedFrame] = []
        for s in ready:
            if s is self.sock and self.tcp:
                frames += self._accept()
            elif s is self.sock:
                frames += self._read_udp()
            else:
                frames += self._read_tcp()
        frames += self.depacketizer.release(self.clock_ns())
        # Ask for what is missing before decoding: a 720p decode takes 3-10 ms here, and
        # a NACK that waits behind it delays the repair by as much.
        self._send_nacks()
        for frame in frames:
            self._handle(frame)
            self._send_nacks()
        if self._last_sr is not None and time.monotonic() - self._last_report >= \
                self.report_interval:
            self._send_report()
        return frames

    def _send_nacks(self) -> None:
        seqs = self.tracker.due(self.clock_ns())
        if not seqs or self._last_sr is None or self._peer is None:
            return
        with contextlib.suppress(OSError):  # the bridge went away: given up in time
            self.sock.sendto(generic_nack(self.ssrc, self._last_sr[2], seqs), self._peer)

    def clock_ns(self) -> int:
        """This receiver's clock as reported to the bridge (CLOCK_MONOTONIC + offset)."""
        return time.monotonic_ns() + self.clock_offset_ns

    def _packet(self, data: bytes, peer: tuple[str, int] | None) -> list[ReceivedFrame]:
        if is_rtcp(data):
            report = parse_compound(data)
            self.rtcp_malformed += bool(report.malformed)
            if report.detections is not None:
                st = self.stats
                st.detections_received += 1
                st.last_detections = report.detections
                st.detection_lag_frames.append(report.detections.sent_with_seq
                                               - report.detections.frame_seq)
            for sr in report.sender_reports:
                self._last_sr = (middle32(sr.ntp), self.clock_ns(), sr.ssrc)
                if peer is not None:
                    self._peer = peer
            return []
        now = self.clock_ns()
        d = self.depacketizer
        pt = data[1] & 0x7F if len(data) >= 2 else -1
        if self.fec is not None and pt == self.fec_payload_type != d.payload_type:
            return self._parity(data, now)
        retransmitted = False
        if pt == self.rtx_payload_type != d.payload_type:
            try:
                rtx = parse_packet(data)
                if self._last_sr is None:
                    raise RtpError("RTX packet before any sender report")
                data = restore_original(rtx, d.payload_type, self._last_sr[2])
            except RtpError:
                self.rtx_malformed += 1
                return []
            retransmitted = True
        return self._media(data, now, retransmitted)

    def _parity(self, data: bytes, now: int) -> list[ReceivedFrame]:
        """A parity packet (--fec): the frames the packets it rebuilds complete."""
        if self._media_ssrc is None:
            return []  # nothing to protect yet
        try:
            rebuilt = self.fec.parity(parse_packet(data), self._media_ssrc)
        except RtpError:
            self.fec.malformed += 1
            return []
        frames: list[ReceivedFrame] = []
        for packet in rebuilt:
            frames += self._media(packet, now, fec=True)
        return frames

    def _media(self, data: bytes, now: int, retransmitted: bool = False,
               fec: bool = False) -> list[ReceivedFrame]:
        """A media packet: as sent, restored from RTX, or rebuilt from parity (``fec``)."""
        d = self.depacketizer
        fragment = d.parse(data)
        if fragment is None:
            return []
        self._media_ssrc = fragment.rtp.ssrc
        span = None
        if fragment.rtp.extension_data is not None:
            try:
                span = read_frame_span(fragment.rtp.extensions)
            except RtpError:
                span = None
        self.tracker.on_packet(fragment.rtp.sequence, now, retransmitted=retransmitted,
                               span=span, fec=fec)
        frames = d.push_fragment(fragment, now, type(data) is bytes, retransmitted or fec)
        if self.fec is not None and not fec:
            for packet in self.fec.media(fragment.rtp.sequence, bytes(data)):
                frames += self._media(packet, now, fec=True)
        return frames

    def _send_report(self) -> None:
        """RR + XR receiver time + APP frame stamps, back to the sender (rtcp-mux)."""
        lsr, sr_arrival, sender_ssrc = self._last_sr
        d, t = self.depacketizer, self.tracker
        t.due(self.clock_ns())  # settle what is given up by now
        expected, lost = t.expected, t.network_lost
        expected_interval = expected - self._expected_prior
        lost_interval = lost - self._lost_prior
        self._expected_prior, self._lost_prior = expected, lost
        now = self.clock_ns()
        block = ReportBlock(
            sender_ssrc, lost_interval / expected_interval if expected_interval > 0 else 0.0,
            lost, t.highest & 0xFFFFFFFF, int(d.jitter), lsr,
            min(0xFFFFFFFF, (now - sr_arrival) * 65536 // 1_000_000_000))
        packet = receiver_report(self.ssrc, [block]) + \
            receiver_reference_time(self.ssrc, self.clock_ns())
        if self._stamps:
            packet += frame_stamps_app(self.ssrc, self._stamps)
            self._stamps = []
        try:
            if self.tcp and self._conn is not None:
                self._conn.send(frame_rfc4571(packet), socket.MSG_DONTWAIT)
            elif not self.tcp and self._peer is not None:
                self.sock.sendto(packet, self._peer)
            self.reports_sent += 1
        except OSError:
            pass  # the bridge went away; it will send a new SR when it is back
        self._last_report = time.monotonic()

    def _accept(self) -> list[ReceivedFrame]:
        """Take a new connection; it replaces the old one after what that still holds."""
        conn, peer = self.sock.accept()
        frames: list[ReceivedFrame] = []
        for _ in range(64):  # the sender reconnected: first finish what the old one holds
            if self._conn is None or not select.select([self._conn], [], [], 0)[0]:
                break
            frames += self._read_tcp()
        if self._conn is not None:
            self._conn.close()
        conn.setblocking(False)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # RTCP replies
        self._conn = conn
        self._tcp_decoder.reset()
        self._note_peer(peer[0])
        return frames

    def _note_peer(self, host: str) -> None:
        if self.same_clock is None:
            self.same_clock = host.startswith("127.")

    def _read_udp(self) -> list[ReceivedFrame]:
        frames = []
        for _ in range(256):
            try:
                data, peer = self.sock.recvfrom(65536)
            except BlockingIOError:
                break
            if self.same_clock is None:
                self._note_peer(peer[0])
            self.stats.bytes += len(data)
            self.window_bytes += len(data)
            frames += self._packet(data, peer)
        return frames

    def _read_tcp(self) -> list[ReceivedFrame]:
        try:
            n = self._conn.recv_into(self._tcp_buf)
        except (BlockingIOError, InterruptedError):
            return []
        except OSError:
            n = 0
        if not n:  # the sender closed (or reset) the connection; wait for the next one
            self._conn.close()
            self._conn = None
            return []
        self.stats.bytes += n
        self.window_bytes += n
        frames = []
        with memoryview(self._tcp_buf) as view:
            packets = self._tcp_decoder.feed(view[:n])
        for packet in packets:
            frames += self._packet(packet, None)
        return frames

    def _handle(self, frame: ReceivedFrame) -> None:
        st = self.stats
        st.frames_received += 1
        try:
            image = simplejpeg.decode_jpeg(frame.jpeg, colorspace="RGB")
        except ValueError:
            st.decode_errors += 1
            return
        decoded_clock = self.clock_ns()
        self.decoded_at_ns.append(decoded_clock - self.clock_offset_ns)
        if frame.frame_seq is not None:
            self._stamps.append(FrameStamps(frame.frame_seq, frame.first_packet_ns,
                                            frame.last_packet_ns, decoded_clock))
        # Our own figures use the true clock (a simulated offset is the bridge's problem).
        decoded_ns = decoded_clock - self.clock_offset_ns
        first_ns = frame.first_packet_ns - self.clock_offset_ns
        last_ns = frame.last_packet_ns - self.clock_offset_ns
        st.frames_decoded += 1
        if frame.stale:
            st.frames_concealed += 1
            st.stale_frames += frame.stale
        self.window_frames += 1
        try:
            stamp = self._read_stamps(image, decoded_ns)
        except ValueError:  # a frame too small to carry a stamp (or an odd stereo half)
            stamp = None
        if stamp is None:
            st.unreadable += 1
        else:
            if st.stamps and stamp.frame <= st.stamps[-1]:
                st.out_of_order += 1
            st.stamps.append(stamp.frame)
        if self.same_clock and frame.capture_ns is not None:
            latency = (decoded_ns - frame.capture_ns) / 1e6
            st.latency_ms.append(latency)
            self.window.append(latency)
            st.stages_ms["capture_to_first_packet"].append((first_ns - frame.capture_ns) / 1e6)
            st.stages_ms["first_to_last_packet"].append((last_ns - first_ns) / 1e6)
            st.stages_ms["last_packet_to_decoded"].append((decoded_ns - last_ns) / 1e6)

    def _read_stamps(self, image, decoded_ns: int) -> PixelStamp | None:
        """The frame's stamp (the left eye's in stereo); per-eye figures into ``stereo``."""
        st = self.stereo
        if st.layout == "auto":
            st.layout = detect_layout(image) or "auto"
            if st.layout == "auto":
                st.unstamped += 1
                if st.unstamped >= AUTO_GIVE_UP:
                    st.layout = "mono"
                return None
        if st.layout == "mono":
            return read_stamp(image)
        eyes = read_eye_stamps(image, st.layout)
        left, right = eyes["left"], eyes["right"]
        if left is None or right is None:
            st.eye_unreadable += 1
            return left
        st.pairs += 1
        if left.frame != right.frame:
            st.pairs_mismatched += 1
        st.skew_ms.append((right.capture_ns - left.capture_ns) / 1e6)
        if self.same_clock:  # the stamps' capture times are the sender's monotonic clock
            for eye, s in eyes.items():
                st.eye_latency_ms[eye].append((decoded_ns - s.capture_ns) / 1e6)
        return left

    def second_line(self, elapsed: float) -> str:
        """The once-a-second line; starts a new window."""
        lost_total = self.depacketizer.frames_incomplete
        lost = lost_total - self.window_lost_start
        complete_total = self.depacketizer.frames_complete
        received = complete_total - self._window_complete_start
        fps = self.window_frames / elapsed if elapsed > 0 else 0.0
        mbit = self.window_bytes * 8 / 1e6 / elapsed if elapsed > 0 else 0.0
        line = (f"[receiver] {fps:.1f} fps | recv {received} lost {lost} | "
                f"decoded {self.window_frames} | ")
        p = _percentiles(self.window)
        if p:
            line += f"e2e p50 {p['p50']:.1f} p95 {p['p95']:.1f} p99 {p['p99']:.1f} ms | "
        elif not self.same_clock:
            line += "e2e n/a (sender on another clock) | "
        line += f"{mbit:.1f} Mbit/s"
        det = self.stats.last_detections
        if det is not None:
            names = ", ".join(f"{b[4]} {b[5]:.2f}" for b in det.boxes[:3])
            line += (f" | detections of frame {det.frame_seq} (lag "
                     f"{det.sent_with_seq - det.frame_seq}): {len(det.boxes)}"
                     + (f" [{names}{', ...' if len(det.boxes) > 3 else ''}]" if names else ""))
        self.window.clear()
        self.window_frames = self.window_bytes = 0
        self.window_lost_start = lost_total
        self._window_complete_start = complete_total
        return line

    def summary(self) -> dict:
        """Every figure, as written by ``--summary-json``."""
        st, d = self.stats, self.depacketizer
        frames = sorted(st.stamps)
        duration = time.monotonic() - st.started
        return {
            "transport": "tcp" if self.tcp else "udp",
            "rcvbuf_bytes": self.rcvbuf,
            "duration_s": round(duration, 3),
            "frames_received": st.frames_received,
            "frames_decoded": st.frames_decoded,
            "frames_lost": d.frames_incomplete - st.frames_concealed,
            "frames_concealed": st.frames_concealed,
            "stale_area_pct": round(100 * st.stale_frames / st.frames_decoded, 3)
            if st.frames_decoded else 0.0,
            "frames_pending": d.pending,
            "decode_errors": st.decode_errors,
            "fps": round(st.frames_decoded / duration, 2) if duration > 0 else 0.0,
            "packets": d.packets,
            "packets_lost": self.tracker.network_lost,
            "packets_unrepaired": self.tracker.lost,
            "packets_reordered": self.tracker.reordered,
            "nack": {"enabled": self.tracker.enabled, "nacks_sent": self.tracker.nacks_sent,
                     "packets_asked": self.tracker.packets_asked,
                     "recovered": self.tracker.recovered, "spurious": self.tracker.spurious,
                     "late": self.tracker.late,
                     "rtx_malformed": self.rtx_malformed,
                     "repair_wait_ms": round(self.tracker.repair_wait_ns / 1e6, 3),
                     "reorder_wait_ms": round(self.tracker.reorder_wait_ns / 1e6, 3),
                     "tail_wait_ms": round(self.tracker.tail_wait_ns / 1e6, 3),
                     "repair_ms": _percentiles(list(self.tracker.repair_ms)),
                     "noticed_to_repaired_ms": _percentiles(
                         list(self.tracker.noticed_to_repaired_ms))},
            "fec": {"enabled": self.fec is not None,
                    **({"received": self.fec.received, "recovered": self.fec.recovered,
                        "malformed": self.fec.malformed, "unused": self.fec.unused}
                       if self.fec is not None else {})},
            "decoded_at_ms": [round((t - self.decoded_at_ns[0]) / 1e6, 3)
                              for t in self.decoded_at_ns],
            # CLOCK_MONOTONIC of decoded_at_ms's 0, to line decodes up with events on this host
            "decoded_origin_mono_ns": self.decoded_at_ns[0] if self.decoded_at_ns else None,
            "malformed_packets": d.malformed,
            "malformed_rtcp": self.rtcp_malformed,
            "bytes": st.bytes,
            "mbit_per_s": round(st.bytes * 8 / 1e6 / duration, 3) if duration > 0 else 0.0,
            "jitter_ms": round(d.jitter / 90, 3),
            "same_clock": bool(self.same_clock),
            "reports_sent": self.reports_sent,
            "clock_offset_ms": self.clock_offset_ns / 1e6,
            "stamps": {
                "first": frames[0] if frames else None,
                "last": frames[-1] if frames else None,
                "count": len(st.stamps),
                "in_order": len(st.stamps) - st.out_of_order,
                "out_of_order": st.out_of_order,
                "unreadable": st.unreadable,
                "frames": frames,
            },
            "latency_ms": _percentiles(st.latency_ms),
            "stages_ms": {k: _percentiles(v) for k, v in st.stages_ms.items()},
            "detections": {
                "messages": st.detections_received,
                "lag_frames": _percentiles([float(k) for k in st.detection_lag_frames]),
                "last": None if st.last_detections is None else {
                    "frame": st.last_detections.frame_seq,
                    "boxes": [list(b) for b in st.last_detections.boxes]},
            },
            "stereo": self.stereo.summary(),
        }

    def close(self) -> None:
        """Close the sockets."""
        if self._conn is not None:
            self._conn.close()
        self.sock.close()


def _summary_text(s: dict) -> str:
    lat = s["latency_ms"]
    st = s["stamps"]
    lines = [
        "[receiver] summary",
        f"  frames           {s['frames_received']} received, {s['frames_decoded']} decoded "
        f"in {s['duration_s']:.1f} s ({s['fps']:.1f} fps), lost {s['frames_lost']} "
        f"(packets lost {s['packets_lost']}, malformed {s['malformed_packets']}), "
        f"decode errors {s['decode_errors']}",
        f"  frame numbers    {st['first']}..{st['last']}, {st['count']} read: "
        f"{st['in_order']} in order, {st['out_of_order']} out of order, "
        f"{st['unreadable']} unreadable",
        f"  traffic          {s['mbit_per_s']:.1f} Mbit/s, jitter {s['jitter_ms']:.2f} ms",
    ]
    if lat:
        lines.append(f"  capture->decoded p50 {lat['p50']:.2f}  p95 {lat['p95']:.2f}  "
                     f"p99 {lat['p99']:.2f}  max {lat['max']:.2f} ms (same clock)")
        lines += [_percentile_line(name, p) for name, p in s["stages_ms"].items() if p]
    elif not s["same_clock"]:
        lines.append("  latency          not reported: the sender is on another host, whose "
                     "clock is unknown here (--assume-same-clock if it is the same)")
    lines += _stereo_text(s.get("stereo"))
    det = s["detections"]
    if det["messages"]:
        lag = det["lag_frames"]
        lines.append(f"  detections       {det['messages']} messages, lag p50 {lag['p50']:.0f} "
                     f"max {lag['max']:.0f} frames; last: frame {det['last']['frame']}, "
                     f"{len(det['last']['boxes'])} boxes")
    return "\n".join(lines)


def _stereo_text(stereo: dict | None) -> list[str]:
    """The summary's stereo lines (none for mono)."""
    if not stereo:
        return []
    lines = [f"  stereo           {stereo['layout']}: {stereo['pairs']} pairs read, "
             f"{stereo['pairs_mismatched']} mismatched, {stereo['eye_unreadable']} with an "
             "eye unreadable"]
    skew = stereo["eye_skew_ms"]
    if skew:
        lines.append(f"  eye skew         p50 {skew['p50']:.3f}  p99 {skew['p99']:.3f}  "
                     f"max {skew['max']:.3f} ms (|right - left capture|)")
    lines += [_percentile_line(f"{eye} capture->decoded", p)
              for eye, p in stereo["capture_to_decoded_ms"].items() if p]
    return lines


def _percentile_line(name: str, p: dict) -> str:
    """One summary line of a percentile summary: name, p50, p95, p99 in ms."""
    return f"  {name:<24} p50 {p['p50']:.2f}  p95 {p['p95']:.2f}  p99 {p['p99']:.2f} ms"


def main(argv: list[str] | None = None) -> int:
    """Command line: receive until --duration or a signal, then print a summary."""
    parser = argparse.ArgumentParser(prog="receiver", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=5004, help="RTP port (default 5004)")
    parser.add_argument("--bind", default="0.0.0.0", help="address to listen on")
    parser.add_argument("--tcp", action="store_true", help="RTP over TCP (RFC 4571)")
    parser.add_argument("--duration", type=float, default=0.0, help="seconds, 0 = until Ctrl-C")
    parser.add_argument("--summary-json", help="write every figure to this JSON file")
    parser.add_argument("--assume-same-clock", action=argparse.BooleanOptionalAction,
                        default=None,
                        help="treat the sender's CLOCK_MONOTONIC as ours and report latency "
                             "(default: only when the sender's address is loopback)")
    parser.add_argument("--quiet", action="store_true", help="no per-second lines")
    parser.add_argument("--report-interval", type=float, default=0.2,
                        help="seconds between RTCP reports to the sender (default 0.2)")
    parser.add_argument("--nack", action="store_true",
                        help="UDP: ask for lost packets (RFC 4585 generic NACK, RTX repairs)")
    parser.add_argument("--reorder-ms", type=float, default=2.0,
                        help="wait this long for a reordered packet before asking (default 2)")
    parser.add_argument("--tail-ms", type=float, default=6.0,
                        help="ask for a frame's missing last packets after this long without "
                             "any packet (default 6)")
    parser.add_argument("--hold-ms", type=float, default=HOLD_MS,
                        help="with --nack: a complete frame waits up to this long (from the "
                             "older frame's first packet) for an older one's repair (default "
                             f"{HOLD_MS:g})")
    parser.add_argument("--conceal", action="store_true",
                        help="show a frame with lost restart intervals, those stripes taken "
                             "from the previous frame (needs a sender with restart markers)")
    parser.add_argument("--fec", action="store_true",
                        help="UDP: rebuild a lost packet from the bridge's XOR parity packets "
                             "(its fec parameter; rtp/fec.py)")
    parser.add_argument("--fec-pt", type=int, default=FEC_PAYLOAD_TYPE,
                        help=f"parity payload type (default {FEC_PAYLOAD_TYPE})")
    parser.add_argument("--nack-rounds", type=int, default=3,
                        help="times a missing packet is asked for at most (default 3)")
    parser.add_argument("--rtx-pt", type=int, default=RTX_PAYLOAD_TYPE,
                        help=f"RTX payload type (default {RTX_PAYLOAD_TYPE})")
    parser.add_argument("--clock-offset-ms", type=float, default=0.0,
                        help="simulate a headset clock this far off (tests the bridge's "
                             "offset estimate; this receiver's own figures stay true)")
    parser.add_argument("--layout", default="auto", choices=("auto", *LAYOUTS),
                        help="how frames pack the eyes (default auto: from the first "
                             "stamped frame; the bridge's SDP says it in a=x-frame-layout)")
    ns = parser.parse_args(argv)
    try:
        check_port(ns.port, "--port")
    except ValueError as exc:
        parser.error(str(exc))
    try:
        receiver = StreamReceiver(ns.port, ns.bind, tcp=ns.tcp, same_clock=ns.assume_same_clock,
                                  report_interval=ns.report_interval,
                                  clock_offset_ns=int(ns.clock_offset_ms * 1e6),
                                  nack=ns.nack, reorder_ms=ns.reorder_ms,
                                  nack_rounds=ns.nack_rounds, rtx_payload_type=ns.rtx_pt,
                                  tail_ms=ns.tail_ms, hold_ms=ns.hold_ms,
                                  conceal=ns.conceal, layout=ns.layout, fec=ns.fec,
                                  fec_payload_type=ns.fec_pt)
    except ValueError as exc:
        parser.error(str(exc))
    except OSError as exc:
        print(f"[receiver] cannot listen on {ns.bind}:{ns.port}: {exc.strerror}", file=sys.stderr)
        return 2
    stop = False

    def _stop(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    print(f"[receiver] listening on {ns.bind}:{ns.port} ({'tcp' if ns.tcp else 'udp'})",
          flush=True)
    start = last = time.monotonic()
    end = start + ns.duration if ns.duration > 0 else float("inf")
    try:
        while not stop and time.monotonic() < end:
            receiver.poll(0.1)
            now = time.monotonic()
            if now - last >= 1.0:
                line = receiver.second_line(now - last)
                last = now
                if not ns.quiet:
                    print(line, flush=True)
    finally:
        summary = receiver.summary()
        receiver.close()
    print(_summary_text(summary), flush=True)
    if ns.summary_json:  # whole or not at all: a reader polling for it never sees half
        tmp = f"{ns.summary_json}.tmp"
        with open(tmp, "w") as f:
            json.dump(summary, f)
        os.replace(tmp, ns.summary_json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
