"""RTP payload format for JPEG (RFC 2435): packetizer and depacketizer.

The packetizer takes a baseline JPEG with the standard Huffman tables (what
libjpeg-turbo writes unless asked to optimise), sends its entropy-coded scan in
fragments of at most ``mtu`` bytes per datagram, and its quantisation tables in-band
(Q = 255) in the first fragment. Types 1 (4:2:0) and 0 (4:2:2) are supported, as
RFC 2435 defines no others without restart markers.

The depacketizer rebuilds a complete JFIF stream from those headers (RFC 2435
Appendix B) so any JPEG decoder can read it. The standard tables it needs (K.3
Huffman tables; Appendix A quantisation tables scaled by Q) are taken from
libjpeg-turbo's own output once, which is byte-identical to the RFC's tables.
"""

from __future__ import annotations

import functools
import struct
from dataclasses import dataclass, field

import numpy as np
import simplejpeg

from vr_stream_ros.rtp import (
    RtpError,
    frame_extensions,
    pack_header,
    parse_packet,
    read_frame_extensions,
)

JPEG_PAYLOAD_TYPE = 26
_MAIN = struct.Struct("!BBHBBBB")  # type-specific, offset (24 bit as B+H), type, q, w/8, h/8
_MAIN_SIZE = 8
_QHEADER = struct.Struct("!BBH")
_MAX_DIM = 2040


class JpegFormatError(ValueError):
    """A JPEG that RTP/JPEG cannot carry (the message says why and what is supported)."""


@dataclass(frozen=True)
class ParsedJpeg:
    """What RTP/JPEG needs from a JPEG: type, size, tables and the scan bytes."""

    jpeg_type: int
    width: int
    height: int
    qtables: bytes
    scan: memoryview


def _segments(data: memoryview):
    """Yield (marker, segment body) up to and including SOS; the scan follows it."""
    if bytes(data[:2]) != b"\xff\xd8":
        raise JpegFormatError("not a JPEG: no SOI marker")
    pos = 2
    n = len(data)
    while pos + 4 <= n:
        if data[pos] != 0xFF:
            raise JpegFormatError(f"JPEG: expected a marker at byte {pos}")
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        length = (data[pos + 2] << 8) | data[pos + 3]
        body = data[pos + 4: pos + 2 + length]
        pos += 2 + length
        yield marker, body, pos
        if marker == 0xDA:
            return
    raise JpegFormatError("JPEG: no SOS marker (truncated?)")


def parse_jpeg(jpeg: bytes | memoryview) -> ParsedJpeg:
    """Extract what RTP/JPEG carries; JpegFormatError for anything it cannot carry."""
    data = memoryview(jpeg)
    tables: dict[int, bytes] = {}
    sof = None
    scan_start = 0
    for marker, body, end in _segments(data):
        if marker == 0xDB:  # DQT: one or more tables
            i = 0
            while i < len(body):
                pq, tq = body[i] >> 4, body[i] & 0x0F
                if pq != 0:
                    raise JpegFormatError("JPEG: 16-bit quantisation tables are not supported")
                tables[tq] = bytes(body[i + 1: i + 65])
                i += 65
        elif marker in (0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF):
            raise JpegFormatError("JPEG: only baseline (SOF0) JPEG can be sent over RTP/JPEG")
        elif marker == 0xC0:
            sof = bytes(body)
        elif marker == 0xDD and struct.unpack("!H", body[:2])[0] != 0:
            raise JpegFormatError("JPEG: restart markers are not supported (types 64/65)")
        elif marker == 0xDA:
            scan_start = end
    if sof is None:
        raise JpegFormatError("JPEG: no SOF0 frame header")
    height, width, ncomp = struct.unpack_from("!HHB", sof, 1)
    if ncomp != 3:
        raise JpegFormatError(f"JPEG: {ncomp} components; RTP/JPEG types 0/1 need YCbCr (3)")
    sampling = [sof[6 + 3 * i + 1] for i in range(3)]
    qsel = [sof[6 + 3 * i + 2] for i in range(3)]
    if sampling[1:] != [0x11, 0x11] or sampling[0] not in (0x21, 0x22):
        raise JpegFormatError("JPEG: chroma subsampling must be 4:2:0 or 4:2:2 for RTP/JPEG "
                              f"(got sampling factors {[hex(s) for s in sampling]})")
    if width % 8 or height % 8 or width > _MAX_DIM or height > _MAX_DIM:
        raise JpegFormatError(f"JPEG: {width}x{height}; RTP/JPEG needs width and height that "
                              f"are multiples of 8 and at most {_MAX_DIM}")
    if qsel[1] != qsel[2] or qsel[0] not in tables or qsel[1] not in tables:
        raise JpegFormatError("JPEG: needs one luma and one shared chroma quantisation table")
    end = len(data)
    if bytes(data[end - 2:]) == b"\xff\xd9":
        end -= 2
    return ParsedJpeg(1 if sampling[0] == 0x22 else 0, width, height,
                      tables[qsel[0]] + tables[qsel[1]], data[scan_start:end])


class JpegPacketizer:
    """Turns JPEG frames into RTP/JPEG datagrams of at most ``mtu`` bytes."""

    def __init__(self, ssrc: int, payload_type: int = JPEG_PAYLOAD_TYPE, mtu: int = 1400) -> None:
        if mtu < 200:
            raise ValueError(f"parameter 'mtu': got {mtu}, expected at least 200 bytes")
        self.ssrc = ssrc
        self.payload_type = payload_type
        self.mtu = mtu
        self.sequence = 0

    def packetize(self, jpeg: bytes, rtp_timestamp: int, capture_ns: int,
                  frame_seq: int) -> list[bytes]:
        """RTP packets of one frame; the last one carries the marker bit."""
        parsed = parse_jpeg(jpeg)
        ext = frame_extensions(capture_ns, frame_seq)
        overhead = 12 + len(ext) + _MAIN_SIZE
        qheader = _QHEADER.pack(0, 0, len(parsed.qtables)) + parsed.qtables
        scan = parsed.scan
        total = len(scan)
        packets = []
        offset = 0
        while offset < total or offset == 0:
            extra = qheader if offset == 0 else b""
            room = self.mtu - overhead - len(extra)
            chunk = scan[offset: offset + room]
            last = offset + len(chunk) >= total
            header = pack_header(self.payload_type, last, self.sequence, rtp_timestamp,
                                 self.ssrc, ext)
            main = _MAIN.pack(0, offset >> 16, offset & 0xFFFF, parsed.jpeg_type, 255,
                              parsed.width // 8, parsed.height // 8)
            packets.append(b"".join((header, main, extra, chunk)))
            self.sequence = (self.sequence + 1) & 0xFFFF
            offset += len(chunk)
            if last:
                break
        return packets


@dataclass
class ReceivedFrame:
    """One reassembled frame."""

    jpeg: bytes
    rtp_timestamp: int
    capture_ns: int | None
    frame_seq: int | None
    first_packet_ns: int
    last_packet_ns: int
    packets: int


@dataclass
class _Pending:
    timestamp: int
    chunks: dict[int, bytes] = field(default_factory=dict)
    total: int | None = None
    jpeg_type: int = 1
    width: int = 0
    height: int = 0
    q: int = 0
    qtables: bytes | None = None
    capture_ns: int | None = None
    frame_seq: int | None = None
    first_ns: int = 0
    last_ns: int = 0
    packets: int = 0

    def complete(self) -> bool:
        if self.total is None:
            return False
        covered = 0
        for offset in sorted(self.chunks):
            if offset != covered:
                return False
            covered += len(self.chunks[offset])
        return covered == self.total


class JpegDepacketizer:
    """Reassembles RTP/JPEG frames; never raises on bad input (it counts it)."""

    MAX_PENDING = 2

    def __init__(self) -> None:
        self.frames_complete = 0
        self.frames_incomplete = 0
        self.packets = 0
        self.packets_lost = 0
        self.malformed = 0
        self._pending: dict[int, _Pending] = {}
        self._highest_seq: int | None = None
        self.cycles = 0  # sequence number wrap-arounds (for the extended highest seq)
        self.jitter = 0.0  # RFC 3550 interarrival jitter, RTP timestamp units
        self._last_transit: int | None = None
        self._done: list[int] = []  # timestamps already emitted or dropped

    @property
    def extended_highest_seq(self) -> int:
        """Highest sequence number seen, with wrap-arounds (RFC 3550 A.1)."""
        return (self.cycles << 16) | (self._highest_seq or 0)

    def _update_jitter(self, rtp_timestamp: int, arrival_ns: int) -> None:
        transit = (arrival_ns * 9 // 100_000 - rtp_timestamp) & 0xFFFFFFFF
        if self._last_transit is not None:
            d = abs(((transit - self._last_transit + (1 << 31)) & 0xFFFFFFFF) - (1 << 31))
            self.jitter += (d - self.jitter) / 16
        self._last_transit = transit

    def push(self, packet: bytes, arrival_ns: int) -> list[ReceivedFrame]:
        """Feed one datagram; return the frames it completed."""
        try:
            return self._push(packet, arrival_ns)
        except (RtpError, JpegFormatError, struct.error, IndexError, ValueError):
            self.malformed += 1
            return []

    def _track_sequence(self, seq: int) -> None:
        if self._highest_seq is None:
            self._highest_seq = seq
            return
        delta = (seq - self._highest_seq) & 0xFFFF
        if delta == 0:
            return
        if delta < 0x8000:  # ahead
            self.packets_lost += delta - 1
            if seq < self._highest_seq:
                self.cycles += 1
            self._highest_seq = seq
        elif self.packets_lost > 0:  # a late packet fills a gap counted before
            self.packets_lost -= 1

    def _push(self, packet: bytes, arrival_ns: int) -> list[ReceivedFrame]:
        rtp = parse_packet(packet)
        if rtp.payload_type != JPEG_PAYLOAD_TYPE:
            raise RtpError(f"payload type {rtp.payload_type}, expected {JPEG_PAYLOAD_TYPE}")
        payload = rtp.payload
        if len(payload) < _MAIN_SIZE:
            raise RtpError("RTP/JPEG payload shorter than its 8-byte header")
        _ts, off_hi, off_lo, jtype, q, w8, h8 = _MAIN.unpack_from(payload, 0)
        offset = (off_hi << 16) | off_lo
        if jtype not in (0, 1) or w8 == 0 or h8 == 0 or q == 0:
            raise RtpError(f"RTP/JPEG header: type {jtype}, q {q}, {w8 * 8}x{h8 * 8} unsupported")
        pos = _MAIN_SIZE
        qtables = None
        if q >= 128 and offset == 0:
            _mbz, precision, length = _QHEADER.unpack_from(payload, pos)
            if precision != 0 or length != 128 or len(payload) < pos + 4 + length:
                raise RtpError("RTP/JPEG quantisation table header: expected two 8-bit tables")
            qtables = bytes(payload[pos + 4: pos + 4 + length])
            pos += 4 + length
        self.packets += 1
        self._track_sequence(rtp.sequence)
        self._update_jitter(rtp.timestamp, arrival_ns)
        if rtp.timestamp in self._done:
            return []  # a straggler of a frame already finished or given up
        frame = self._pending.get(rtp.timestamp)
        out: list[ReceivedFrame] = []
        if frame is None:
            frame = _Pending(rtp.timestamp, first_ns=arrival_ns)
            self._pending[rtp.timestamp] = frame
            while len(self._pending) > self.MAX_PENDING:  # dicts keep arrival order
                self._give_up(next(iter(self._pending.values())))
        frame.chunks[offset] = bytes(payload[pos:])
        frame.jpeg_type, frame.width, frame.height, frame.q = jtype, w8 * 8, h8 * 8, q
        if qtables is not None:
            frame.qtables = qtables
        if frame.capture_ns is None:
            frame.capture_ns, frame.frame_seq = read_frame_extensions(rtp.extensions)
        frame.last_ns = arrival_ns
        frame.packets += 1
        if rtp.marker:
            frame.total = offset + len(payload) - pos
        if frame.complete():
            # Frames that began before a completed one will not complete any more.
            for other in list(self._pending.values()):
                if other is frame:
                    break
                self._give_up(other)
            out.append(self._finish(frame))
        return out

    def _forget(self, frame: _Pending) -> None:
        del self._pending[frame.timestamp]
        self._done.append(frame.timestamp)
        if len(self._done) > 8:
            del self._done[0]

    def _give_up(self, frame: _Pending) -> None:
        self._forget(frame)
        self.frames_incomplete += 1

    def _finish(self, frame: _Pending) -> ReceivedFrame:
        self._forget(frame)
        if frame.q >= 128:
            if frame.qtables is None:
                self.frames_incomplete += 1
                raise RtpError("RTP/JPEG: dynamic Q without tables in the first packet")
            tables = frame.qtables
        else:
            tables = standard_qtables(frame.q)
        scan = b"".join(frame.chunks[o] for o in sorted(frame.chunks))
        jpeg = jpeg_headers(frame.jpeg_type, frame.width, frame.height, tables) + scan + \
            b"\xff\xd9"
        self.frames_complete += 1
        return ReceivedFrame(jpeg, frame.timestamp, frame.capture_ns, frame.frame_seq,
                             frame.first_ns, frame.last_ns, frame.packets)


@functools.cache
def _reference_segments() -> dict[str, bytes]:
    """DHT segment of libjpeg-turbo's standard tables (JPEG spec K.3)."""
    jpeg = simplejpeg.encode_jpeg(np.zeros((16, 16, 3), np.uint8), 50, "RGB", "420")
    dht = b""
    data = memoryview(jpeg)
    for marker, body, _end in _segments(data):
        if marker == 0xC4:
            dht += b"\xff\xc4" + struct.pack("!H", len(body) + 2) + bytes(body)
    return {"dht": dht}


@functools.cache
def standard_qtables(q: int) -> bytes:
    """RFC 2435 Appendix A tables for Q in 1..99 (libjpeg's quality scaling, zigzag order)."""
    jpeg = simplejpeg.encode_jpeg(np.zeros((16, 16, 3), np.uint8), min(max(q, 1), 100),
                                  "RGB", "420")
    return parse_jpeg(jpeg).qtables


def jpeg_headers(jpeg_type: int, width: int, height: int, qtables: bytes) -> bytes:
    """SOI ... SOS of a baseline JPEG for an RTP/JPEG frame (RFC 2435 Appendix B)."""
    dqt = b"\xff\xdb" + struct.pack("!H", 2 + 2 * 65) + b"\x00" + qtables[:64] + b"\x01" + \
        qtables[64:128]
    luma = 0x22 if jpeg_type == 1 else 0x21
    sof = b"\xff\xc0" + struct.pack("!HBHHB", 17, 8, height, width, 3) + bytes(
        [1, luma, 0, 2, 0x11, 1, 3, 0x11, 1])
    sos = b"\xff\xda" + struct.pack("!HB", 12, 3) + bytes([1, 0x00, 2, 0x11, 3, 0x11, 0, 63, 0])
    return b"\xff\xd8" + dqt + sof + _reference_segments()["dht"] + sos
