"""RTCP feedback between bridge and headset: round trip, clock offset, loss, frame stamps.

The bridge sends sender reports (SR, RFC 3550) whose NTP field is its CLOCK_MONOTONIC.
The receiver answers with a compound packet on the same port (rtcp-mux, RFC 5761):

- RR (RFC 3550): loss, interarrival jitter, LSR (the SR it last saw) and DLSR (how long
  it held it), so the bridge gets the round trip from its own clock alone;
- XR with a Receiver Reference Time block (RFC 3611, block type 4): the receiver's
  clock when it sent the report. With LSR/DLSR this gives the four times of an NTP
  exchange, so the bridge knows the receiver's clock offset as well as the RTT;
- generic NACK (RFC 4585 6.2.1, rtp/nack.py): packets to resend;
- APP "VRFS" (RFC 3550 6.7): for recent frames, the receiver's own stamps (first
  packet, last packet, decoded), so the bridge can report capture-to-decoded latency
  on its own clock even when the headset is another machine.

``read_compound`` raises :class:`RtcpError` for anything malformed; ``parse_compound``
never raises: the error's text comes back as ``malformed``.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field

from vr_stream_ros.rtp.nack import FMT_GENERIC_NACK, PT_RTPFB, NackError, parse_nack_fci
from vr_stream_ros.rtp.packet import ns_to_uq32_32, uq32_32_to_ns

PT_SR, PT_RR, PT_APP, PT_XR = 200, 201, 204, 207
APP_NAME = b"VRFS"
APP_DETECTIONS = b"VRDT"
MAX_BOXES_PER_APP = 30  # ~1.3 KB of JSON: one datagram within a 1400-byte MTU
XR_RRTR = 4
_FRAME_STAMP = struct.Struct("!IQQQ")  # frame_seq, first packet, last packet, decoded (UQ32.32)
MAX_STAMPS_PER_APP = 40


class RtcpError(ValueError):
    """A malformed RTCP packet (the message says which part)."""


@dataclass(frozen=True)
class SenderReport:
    """The part of an SR the receiver needs."""

    ssrc: int
    ntp: int  # UQ32.32 of the sender's clock
    rtp_timestamp: int
    packets: int
    octets: int


@dataclass(frozen=True)
class ReportBlock:
    """One RR report block."""

    ssrc: int
    fraction_lost: float
    cumulative_lost: int
    highest_seq: int
    jitter: int  # RTP timestamp units
    lsr: int  # middle 32 bits of the last SR's NTP time, 0 = none yet
    dlsr: int  # 1/65536 s since that SR


@dataclass(frozen=True)
class FrameStamps:
    """A receiver's stamps of one frame, in its clock (ns)."""

    frame_seq: int
    first_packet_ns: int
    last_packet_ns: int
    decoded_ns: int


@dataclass(frozen=True)
class DetectionsMeta:
    """APP 'VRDT' (bridge -> headset): the newest detections, from frame ``frame_seq``.

    Boxes are (centre x, centre y, width, height) in the frame's pixels, the class name
    and the score. ``sent_with_seq`` is the frame the bridge sent just before: the lag
    in frames is ``sent_with_seq - frame_seq``.
    """

    frame_seq: int
    sent_with_seq: int
    boxes: list[tuple[float, float, float, float, str, float]]


@dataclass
class Compound:
    """What a compound RTCP packet carried."""

    sender_reports: list[SenderReport] = field(default_factory=list)
    report_blocks: list[ReportBlock] = field(default_factory=list)
    receiver_time_ns: int | None = None  # XR RRTR
    frames: list[FrameStamps] = field(default_factory=list)
    detections: DetectionsMeta | None = None
    nacks: list[tuple[int, list[int]]] = field(default_factory=list)  # media SSRC, seqs
    malformed: str = ""


def middle32(ntp: int) -> int:
    """The middle 32 bits of a 64-bit NTP time (the LSR field)."""
    return (ntp >> 16) & 0xFFFFFFFF


def _header(pt: int, count: int, body_len: int) -> bytes:
    if body_len % 4:
        raise RtcpError("RTCP body not a multiple of 4 bytes")
    return struct.pack("!BBH", 0x80 | count, pt, body_len // 4)


def sender_report(ssrc: int, now_ns: int, rtp_timestamp: int, packets: int,
                  octets: int) -> bytes:
    """An SR without report blocks."""
    ntp = ns_to_uq32_32(now_ns)
    body = struct.pack("!IQIII", ssrc, ntp, rtp_timestamp & 0xFFFFFFFF, packets & 0xFFFFFFFF,
                       octets & 0xFFFFFFFF)
    return _header(PT_SR, 0, len(body)) + body


def receiver_report(ssrc: int, blocks: list[ReportBlock]) -> bytes:
    """An RR with the given blocks."""
    body = struct.pack("!I", ssrc)
    for b in blocks:
        lost = max(-(1 << 23), min((1 << 23) - 1, b.cumulative_lost)) & 0xFFFFFF
        fraction = max(0, min(255, int(b.fraction_lost * 256)))
        body += struct.pack("!IIIIII", b.ssrc, (fraction << 24) | lost, b.highest_seq,
                            b.jitter & 0xFFFFFFFF, b.lsr, b.dlsr)
    return _header(PT_RR, len(blocks), len(body)) + body


def receiver_reference_time(ssrc: int, now_ns: int) -> bytes:
    """An XR packet with one Receiver Reference Time block."""
    body = struct.pack("!IBBHQ", ssrc, XR_RRTR, 0, 2, ns_to_uq32_32(now_ns))
    return _header(PT_XR, 0, len(body)) + body


def frame_stamps_app(ssrc: int, frames: list[FrameStamps]) -> bytes:
    """An APP 'VRFS' packet with up to MAX_STAMPS_PER_APP frames' receiver stamps."""
    body = struct.pack("!I4s", ssrc, APP_NAME) + b"".join(
        _FRAME_STAMP.pack(f.frame_seq & 0xFFFFFFFF, ns_to_uq32_32(f.first_packet_ns),
                          ns_to_uq32_32(f.last_packet_ns), ns_to_uq32_32(f.decoded_ns))
        for f in frames[-MAX_STAMPS_PER_APP:])
    return _header(PT_APP, 0, len(body)) + body


def detections_app(ssrc: int, meta: DetectionsMeta) -> bytes:
    """An APP 'VRDT' packet: JSON {"frame", "sent_with", "boxes"}, padded with spaces."""
    boxes = [[round(v, 1) for v in b[:4]] + [b[4], round(b[5], 3)]
             for b in meta.boxes[:MAX_BOXES_PER_APP]]
    text = json.dumps({"frame": meta.frame_seq, "sent_with": meta.sent_with_seq,
                       "boxes": boxes}, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 4)
    body = struct.pack("!I4s", ssrc, APP_DETECTIONS) + text
    return _header(PT_APP, 0, len(body)) + body


def _number(value: object) -> float | None:
    """A JSON number as a float; None for anything else (bools, strings, huge integers)."""
    if isinstance(value, float):
        return value
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) < 1 << 53:
        return float(value)
    return None


def _parse_detections(payload: memoryview) -> DetectionsMeta:
    what = "RTCP APP VRDT"
    try:
        data = json.loads(bytes(payload).decode())
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError;
        # RecursionError: '[[[[...' nested deeper than the interpreter's stack
        raise RtcpError(f"{what}: not UTF-8 JSON ({str(exc)[:80]})") from None
    if not isinstance(data, dict) or not isinstance(data.get("boxes"), list) or not all(
            type(data.get(k)) is int for k in ("frame", "sent_with")):
        raise RtcpError(f'{what}: expected {{"frame": int, "sent_with": int, "boxes": '
                        f"[...]}}, got {str(data)[:60]}")
    boxes = []
    for box in data["boxes"]:
        ok = isinstance(box, list) and len(box) == 6
        numbers = [_number(v) for v in box[:4] + box[5:]] if ok else [None]
        if None in numbers or not isinstance(box[4], str):
            raise RtcpError(f"{what}: box {str(box)[:60]}, expected [x, y, width, height, "
                            "class name, score]")
        x, y, w, h, score = numbers
        boxes.append((x, y, w, h, box[4], score))
    return DetectionsMeta(data["frame"], data["sent_with"], boxes)


def is_rtcp(packet: bytes | memoryview) -> bool:
    """RFC 5761 demultiplexing: RTCP packet types 192..223 in the second byte."""
    return len(packet) >= 2 and 192 <= packet[1] <= 223


def parse_compound(packet: bytes | memoryview) -> Compound:
    """Parse a compound RTCP packet; never raises (see ``Compound.malformed``).

    The packets before a malformed one are kept (an SR followed by junk still counts).
    """
    out = Compound()
    try:
        _parse_into(memoryview(packet), out)
    except RtcpError as exc:
        out.malformed = str(exc)
    return out


def read_compound(packet: bytes | memoryview) -> Compound:
    """Parse a compound RTCP packet; :class:`RtcpError` names what is malformed.

    Every malformed input raises RtcpError and nothing else: anything other escaping
    from here is a bug (the fuzz test in test_rtcp.py holds it to that).
    """
    out = Compound()
    _parse_into(memoryview(packet), out)
    return out


def _parse_into(data: memoryview, out: Compound) -> None:
    pos = 0
    if len(data) < 4:
        raise RtcpError(f"RTCP packet of {len(data)} bytes: shorter than a header")
    while pos < len(data):
        if len(data) - pos < 4:
            raise RtcpError("RTCP: trailing bytes after the last packet")
        b0, pt, words = struct.unpack_from("!BBH", data, pos)
        if b0 >> 6 != 2:
            raise RtcpError(f"RTCP: version {b0 >> 6}, expected 2")
        end = pos + 4 + 4 * words
        if end > len(data):
            raise RtcpError(f"RTCP type {pt}: length {4 * words} runs past the packet")
        body = data[pos + 4: end]
        if b0 & 0x20:  # padding
            if not body or body[-1] == 0 or body[-1] > len(body):
                raise RtcpError(f"RTCP type {pt}: bad padding")
            body = body[: len(body) - body[-1]]
        count = b0 & 0x1F
        if pt == PT_SR:
            if len(body) < 24:
                raise RtcpError(f"RTCP SR: body of {len(body)} bytes, shorter than its "
                                "24-byte sender info")
            ssrc, ntp, ts, pkts, octets = struct.unpack_from("!IQIII", body, 0)
            out.sender_reports.append(SenderReport(ssrc, ntp, ts, pkts, octets))
            _blocks(body[24:], count, out)
        elif pt == PT_RR:
            _blocks(body[4:], count, out)
        elif pt == PT_XR:
            _xr(body, out)
        elif pt == PT_APP and len(body) >= 8 and bytes(body[4:8]) == APP_NAME:
            stamps = body[8:]
            if len(stamps) % _FRAME_STAMP.size:
                raise RtcpError("RTCP APP VRFS: not a whole number of frame stamps")
            for i in range(0, len(stamps), _FRAME_STAMP.size):
                seq, first, last, decoded = _FRAME_STAMP.unpack_from(stamps, i)
                out.frames.append(FrameStamps(seq, uq32_32_to_ns(first), uq32_32_to_ns(last),
                                              uq32_32_to_ns(decoded)))
        elif pt == PT_APP and len(body) >= 8 and bytes(body[4:8]) == APP_DETECTIONS:
            out.detections = _parse_detections(body[8:])
        elif pt == PT_RTPFB and count == FMT_GENERIC_NACK:
            if len(body) < 8:
                raise RtcpError(f"RTCP generic NACK: body of {len(body)} bytes, shorter than "
                                "its two SSRCs")
            try:
                out.nacks.append((struct.unpack_from("!I", body, 4)[0], parse_nack_fci(body[8:])))
            except NackError as exc:
                raise RtcpError(f"RTCP {exc}") from None
        pos = end


def _blocks(data: memoryview, count: int, out: Compound) -> None:
    if len(data) < 24 * count:
        raise RtcpError(f"RTCP: {count} report blocks need {24 * count} bytes, got {len(data)}")
    for i in range(count):
        ssrc, lost_word, highest, jitter, lsr, dlsr = struct.unpack_from("!IIIIII", data, 24 * i)
        lost = lost_word & 0xFFFFFF
        if lost & 0x800000:
            lost -= 1 << 24
        out.report_blocks.append(ReportBlock(ssrc, (lost_word >> 24) / 256, lost, highest,
                                             jitter, lsr, dlsr))


def _xr(body: memoryview, out: Compound) -> None:
    pos = 4
    while pos + 4 <= len(body):
        block_type, _spec, words = struct.unpack_from("!BBH", body, pos)
        end = pos + 4 + 4 * words
        if end > len(body):
            raise RtcpError(f"RTCP XR block {block_type}: runs past the packet")
        if block_type == XR_RRTR:
            if words != 2:
                raise RtcpError("RTCP XR RRTR block: length must be 2 words")
            out.receiver_time_ns = uq32_32_to_ns(struct.unpack_from("!Q", body, pos + 4)[0])
        pos = end


@dataclass(frozen=True)
class ClockEstimate:
    """One NTP-style exchange: round trip and the receiver's clock offset (ns)."""

    rtt_ns: int
    offset_ns: int  # receiver clock - sender clock


def estimate_clock(sr_sent_ns: int, dlsr: int, receiver_sent_ns: int,
                   report_arrived_ns: int) -> ClockEstimate:
    """NTP's four times: T1 SR sent, T2 = T3 - DLSR, T3 report sent, T4 report arrived."""
    held_ns = dlsr * 1_000_000_000 // 65536
    t1, t3, t4 = sr_sent_ns, receiver_sent_ns, report_arrived_ns
    t2 = t3 - held_ns
    rtt = (t4 - t1) - held_ns
    offset = ((t2 - t1) + (t3 - t4)) // 2
    return ClockEstimate(rtt, offset)
