"""RTP payload format for JPEG (RFC 2435): packetizer and depacketizer.

Sender side, :class:`JpegPacketizer` takes a baseline JPEG as libjpeg-turbo writes it
(``simplejpeg.encode_jpeg``: standard Huffman tables, 4:2:0 or 4:2:2) and sends

- its entropy-coded scan in fragments, each datagram at most ``mtu`` bytes in all
  (RTP header, header extensions, JPEG header, payload);
- its two quantisation tables in-band in the first fragment, with Q = 255 (RFC 2435
  3.1.8), so the receiver needs no table agreement and the encoder may change quality
  at any frame;
- the header extensions of rtp.py (capture time, frame number) on *every* packet:
  20 bytes each, and a receiver can attribute any fragment, even without the first;
- the marker bit on the last packet of the frame.

RFC 2435 types 0 (4:2:2) and 1 (4:2:0) are supported; a JPEG with restart markers
(DRI) goes out as type 64/65. Everything else (4:4:4, grayscale, progressive,
optimised Huffman tables, > 2040 px) is refused with a :class:`JpegFormatError`.

Receiver side, :class:`JpegDepacketizer` reassembles frames by RTP timestamp,
checks that the fragment offsets cover the frame without a hole, and rebuilds a
complete JFIF file (RFC 2435 Appendix B): in-band tables for Q >= 128 (cached per Q
for 128..254 when a sender omits them), RFC 2435 Appendix A tables scaled by Q
below 128, and the standard Huffman tables of JPEG Annex K.3.
"""

from __future__ import annotations

import contextlib
import functools
import struct
from dataclasses import dataclass

from vr_stream_ros.rtp.conceal import RST, StripeConcealer, interval_count
from vr_stream_ros.rtp.packet import (
    RTP_HEADER_SIZE,
    RtpError,
    RtpPacket,
    frame_extensions,
    parse_packet,
    read_frame_extensions,
)

JPEG_PAYLOAD_TYPE = 26
MAX_DIMENSION = 2040
"""Largest width/height RTP/JPEG can describe (8 bits of 8-pixel blocks)."""

_FIXED = struct.Struct("!BBHII")  # RTP fixed header
_MAIN = struct.Struct("!BBHBBBB")  # type-specific, offset (24 bits as B+H), type, Q, w/8, h/8
_MAIN_SIZE = 8
_RESTART = struct.Struct("!HH")  # restart interval, F(1) L(1) restart count(14)
_QHEADER = struct.Struct("!BBH")  # MBZ, precision, length
_MAX_OFFSET = 1 << 24
_MAX_FRAGMENTS = 1 << 16  # a 16 MiB scan in 256-byte datagrams
_SOI, _EOI = b"\xff\xd8", b"\xff\xd9"
_JFIF_APP0 = b"\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
_OTHER_SOF = frozenset((0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE,
                        0xCF))
_SAMPLING_NAMES = {0x22: "4:2:0", 0x21: "4:2:2", 0x11: "4:4:4", 0x12: "4:4:0",
                   0x41: "4:1:1"}

# JPEG Annex K.1/K.2 quantisation tables in natural (row-major) order: RFC 2435 Appendix A.
_LUMA_Q = (
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99)
_CHROMA_Q = (
    17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99,
    24, 26, 56, 99, 99, 99, 99, 99, 47, 66, 99, 99, 99, 99, 99, 99) + (99,) * 32
# Natural-order index of each zigzag position: tables travel (in DQT and RTP) zigzagged.
_ZIGZAG = (
    0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5,
    12, 19, 26, 33, 40, 48, 41, 34, 27, 20, 13, 6, 7, 14, 21, 28,
    35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51,
    58, 59, 52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63)

# JPEG Annex K.3 Huffman tables (RFC 2435 Appendix B): (class, id) -> 16 code counts
# followed by the symbols, exactly as a DHT segment carries them.
_STANDARD_HUFFMAN: dict[tuple[int, int], bytes] = {
    (0, 0): bytes.fromhex("00010501010101010100000000000000000102030405060708090a0b"),
    (1, 0): bytes.fromhex(
        "0002010303020403050504040000017d01020300041105122131410613516107227114328191a108"
        "2342b1c11552d1f02433627282090a161718191a25262728292a3435363738393a43444546474849"
        "4a535455565758595a636465666768696a737475767778797a838485868788898a92939495969798"
        "999aa2a3a4a5a6a7a8a9aab2b3b4b5b6b7b8b9bac2c3c4c5c6c7c8c9cad2d3d4d5d6d7d8d9dae1e2"
        "e3e4e5e6e7e8e9eaf1f2f3f4f5f6f7f8f9fa"),
    (0, 1): bytes.fromhex("00030101010101010101010000000000000102030405060708090a0b"),
    (1, 1): bytes.fromhex(
        "00020102040403040705040400010277000102031104052131061241510761711322328108144291"
        "a1b1c109233352f0156272d10a162434e125f11718191a262728292a35363738393a434445464748"
        "494a535455565758595a636465666768696a737475767778797a82838485868788898a9293949596"
        "9798999aa2a3a4a5a6a7a8a9aab2b3b4b5b6b7b8b9bac2c3c4c5c6c7c8c9cad2d3d4d5d6d7d8d9da"
        "e2e3e4e5e6e7e8e9eaf2f3f4f5f6f7f8f9fa"),
}
_DHT_SEGMENT = b"".join(
    b"\xff\xc4" + struct.pack("!HB", 3 + len(table), (tc << 4) | th) + table
    for (tc, th), table in sorted(_STANDARD_HUFFMAN.items(), key=lambda kv: kv[0][::-1]))


class JpegFormatError(ValueError):
    """A JPEG that RTP/JPEG cannot carry (the message says why and what is supported)."""


@dataclass(frozen=True, slots=True)
class ParsedJpeg:
    """What RTP/JPEG needs from a JPEG: type, size, tables and the scan bytes."""

    jpeg_type: int  # 0 (4:2:2) or 1 (4:2:0); +64 when restart markers are used
    width: int
    height: int
    qtables: bytes  # luma then chroma table, 64 bytes each, zigzag order
    restart_interval: int
    scan: memoryview  # entropy-coded data after SOS, without the EOI marker


def _sampling_name(factor: int) -> str:
    return _SAMPLING_NAMES.get(factor, f"luma {factor >> 4}x{factor & 15}")


@functools.lru_cache(maxsize=16)
def _check_huffman(segments: tuple[bytes, ...]) -> None:
    """JpegFormatError unless the DHT segments hold the standard tables (cached per input)."""
    for body in segments:
        i = 0
        while i < len(body):
            if i + 17 > len(body):
                raise JpegFormatError("JPEG: truncated DHT (Huffman table) segment")
            key = (body[i] >> 4, body[i] & 0x0F)
            size = 17 + sum(body[i + 1: i + 17])
            table = body[i + 1: i + size]
            if _STANDARD_HUFFMAN.get(key) != table:
                raise JpegFormatError(
                    f"JPEG: Huffman table class {key[0]} id {key[1]} is not the standard one "
                    "(JPEG Annex K.3); RTP/JPEG receivers rebuild the standard tables, so "
                    "encode without Huffman optimisation")
            i += size


def parse_jpeg(jpeg: bytes | memoryview) -> ParsedJpeg:
    """Extract what RTP/JPEG carries; JpegFormatError for anything it cannot carry.

    The scan is a view into ``jpeg`` (no copy).
    """
    data = memoryview(jpeg)
    n = len(data)
    if data[:2] != _SOI:
        raise JpegFormatError("not a JPEG: the data does not start with SOI (FF D8)")
    tables: dict[int, bytes] = {}
    huffman: list[bytes] = []
    sof = sos = None
    restart_interval = 0
    pos = 2
    while sos is None:
        if pos + 4 > n:
            raise JpegFormatError("JPEG: ends before its SOS (start of scan) marker")
        if data[pos] != 0xFF:
            raise JpegFormatError(f"JPEG: expected a marker at byte {pos}, found "
                                  f"0x{data[pos]:02x}")
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte before a marker
            pos += 1
            continue
        length = (data[pos + 2] << 8) | data[pos + 3]
        if length < 2 or pos + 2 + length > n:
            raise JpegFormatError(f"JPEG: segment 0xff{marker:02x} at byte {pos} "
                                  "runs past the end")
        body = data[pos + 4: pos + 2 + length]
        pos += 2 + length
        if marker == 0xDB:  # DQT: one or more tables
            i = 0
            while i < len(body):
                if body[i] >> 4 != 0:
                    raise JpegFormatError("JPEG: 16-bit quantisation tables are not baseline; "
                                          "RTP/JPEG carries 8-bit tables")
                if i + 65 > len(body):
                    raise JpegFormatError("JPEG: truncated DQT (quantisation table) segment")
                tables[body[i] & 0x0F] = bytes(body[i + 1: i + 65])
                i += 65
        elif marker == 0xC4:
            huffman.append(bytes(body))
        elif marker == 0xC0:
            sof = body
        elif marker == 0xDD and len(body) >= 2:
            restart_interval = (body[0] << 8) | body[1]
        elif marker == 0xDA:
            sos = body
        elif marker in _OTHER_SOF:
            raise JpegFormatError(f"JPEG: SOF marker 0xff{marker:02x} (progressive, extended "
                                  "or lossless); RTP/JPEG carries baseline (SOF0) JPEG only")
    if sof is None:
        raise JpegFormatError("JPEG: no SOF0 (baseline frame header) before the scan")
    if len(sof) < 6 or len(sof) < 6 + 3 * sof[5]:
        raise JpegFormatError("JPEG: truncated SOF0 segment")
    precision, height, width, ncomp = struct.unpack_from("!BHHB", sof, 0)
    if ncomp != 3 or precision != 8:
        raise JpegFormatError(f"JPEG: {ncomp} components of {precision} bits; RTP/JPEG "
                              "types 0/1 carry 8-bit YCbCr (3 components)")
    ids = [sof[6 + 3 * i] for i in range(3)]
    sampling = [sof[7 + 3 * i] for i in range(3)]
    qsel = [sof[8 + 3 * i] for i in range(3)]
    if sampling[1:] != [0x11, 0x11] or sampling[0] not in (0x21, 0x22):
        got = _sampling_name(sampling[0]) if sampling[1:] == [0x11, 0x11] else \
            "sampling factors " + ", ".join(f"{s >> 4}x{s & 15}" for s in sampling)
        raise JpegFormatError(
            f"JPEG: chroma subsampling {got} cannot be sent; RTP/JPEG supports 4:2:0 "
            "(type 1) and 4:2:2 (type 0): encode with colorsubsampling '420' or '422'")
    if width == 0 or height == 0 or width % 8 or height % 8 or width > MAX_DIMENSION or \
            height > MAX_DIMENSION:
        raise JpegFormatError(f"JPEG: {width}x{height}; RTP/JPEG needs width and height that "
                              f"are multiples of 8 in 8..{MAX_DIMENSION}")
    if qsel[1] != qsel[2] or qsel[0] not in tables or qsel[1] not in tables:
        raise JpegFormatError("JPEG: needs a luma and a shared chroma quantisation table, "
                              f"got table ids {qsel} of {sorted(tables)}")
    if len(sos) != 10 or sos[0] != 3 or [sos[1], sos[3], sos[5]] != ids or \
            [sos[2], sos[4], sos[6]] != [0x00, 0x11, 0x11] or bytes(sos[7:]) != b"\x00\x3f\x00":
        raise JpegFormatError("JPEG: the scan must be one interleaved baseline scan of Y, Cb, "
                              "Cr with Huffman tables 0 (luma) and 1 (chroma)")
    if huffman:  # no DHT at all (camera MJPEG) means the standard tables
        _check_huffman(tuple(huffman))
    end = n - 2 if data[n - 2:] == _EOI else n
    jpeg_type = (1 if sampling[0] == 0x22 else 0) | (64 if restart_interval else 0)
    return ParsedJpeg(jpeg_type, width, height, tables[qsel[0]] + tables[qsel[1]],
                      restart_interval, data[pos:end])


def _cuts(scan: memoryview, room: int, first_room: int,
          restart: bool) -> list[tuple[int, int, int]]:
    """(offset, end, restart word) of each packet's slice of the scan.

    Without restart markers: fixed-size slices. With them (RFC 2435 3.1.7): packets cut
    at restart interval boundaries, as many whole intervals as fit, an interval bigger
    than a packet in fragments; the word is F (first fragment of an interval), L (last)
    and the index of the packet's first interval (mod 2**14).
    """
    total = len(scan)
    if not restart:
        cuts, offset = [], 0
        while True:
            end = min(total, offset + (first_room if offset == 0 else room))
            cuts.append((offset, end, 0))
            if end == total:
                return cuts
            offset = end
    starts = [0] + [m.end() for m in RST.finditer(bytes(scan)) if m.end() < total]
    ends = [*starts[1:], total]
    cuts, k = [], 0
    while k < len(starts):
        start = starts[k]
        fits = first_room if start == 0 else room
        if ends[k] - start > fits:  # one interval over several packets
            pos = start
            while pos < ends[k]:
                end = min(ends[k], pos + (first_room if pos == 0 else room))
                word = (0x8000 if pos == start else 0) | (0x4000 if end == ends[k] else 0)
                cuts.append((pos, end, word | (k & 0x3FFF)))
                pos = end
            k += 1
            continue
        j = k
        while j + 1 < len(starts) and ends[j + 1] - start <= fits:
            j += 1
        cuts.append((start, ends[j], 0xC000 | (k & 0x3FFF)))
        k = j + 1
    return cuts


class JpegPacketizer:
    """Turns JPEG frames into RTP/JPEG datagrams of at most ``mtu`` bytes each.

    ``sequence`` is the RTP sequence number of the next packet; it runs on across
    frames (and wraps at 2**16).
    """

    def __init__(self, ssrc: int, payload_type: int = JPEG_PAYLOAD_TYPE, mtu: int = 1400,
                 frame_span: bool = False) -> None:
        if not 0 <= ssrc <= 0xFFFFFFFF:
            raise ValueError(f"parameter 'ssrc': got {ssrc}, expected 0..2**32-1")
        if not 0 <= payload_type <= 127:
            raise ValueError(f"parameter 'payload_type': got {payload_type}, expected 0..127")
        if not 256 <= mtu <= 65507:
            raise ValueError(f"parameter 'mtu': got {mtu}, expected 256..65507 bytes "
                             "(RTP + JPEG headers and tables take up to 176)")
        self.ssrc = ssrc
        self.payload_type = payload_type
        self.mtu = mtu
        self.frame_span = frame_span  # the frame-packets extension (packet.py, id 3)
        self.sequence = 0

    def packetize(self, jpeg: bytes, rtp_timestamp: int, capture_ns: int,
                  frame_seq: int) -> list[bytes]:
        """RTP packets of one frame, in order; the last one carries the marker bit."""
        parsed = parse_jpeg(jpeg)
        scan = parsed.scan
        total = len(scan)
        if total >= _MAX_OFFSET:
            raise JpegFormatError(f"JPEG: scan of {total} bytes exceeds RTP/JPEG's 24-bit "
                                  "fragment offset")
        qheader = _QHEADER.pack(0, 0, len(parsed.qtables)) + parsed.qtables
        restart = 4 if parsed.restart_interval else 0
        ext_size = len(frame_extensions(capture_ns, frame_seq, (0, 1) if self.frame_span
                                        else None))
        room = self.mtu - (RTP_HEADER_SIZE + ext_size + _MAIN_SIZE + restart)
        cuts = _cuts(scan, room, room - len(qheader), bool(restart))
        # The packet count is known before the first packet leaves (frame-packets).
        span = (self.sequence, len(cuts)) if self.frame_span else None
        ext = frame_extensions(capture_ns, frame_seq, span)
        main_at = RTP_HEADER_SIZE + len(ext)
        header = bytearray(main_at + _MAIN_SIZE + restart)
        header[RTP_HEADER_SIZE:main_at] = ext
        b0 = 0x90  # version 2, extension bit
        pt, ts, ssrc = self.payload_type, rtp_timestamp & 0xFFFFFFFF, self.ssrc
        jtype, w8, h8 = parsed.jpeg_type, parsed.width // 8, parsed.height // 8
        seq = self.sequence
        packets: list[bytes] = []
        for offset, end, word in cuts:
            last = end == total
            _FIXED.pack_into(header, 0, b0, pt | (0x80 if last else 0), seq, ts, ssrc)
            _MAIN.pack_into(header, main_at, 0, offset >> 16, offset & 0xFFFF, jtype, 255, w8, h8)
            if restart:
                _RESTART.pack_into(header, main_at + _MAIN_SIZE, parsed.restart_interval, word)
            if offset == 0:
                packets.append(b"".join((header, qheader, scan[offset:end])))
            else:
                packets.append(b"".join((header, scan[offset:end])))
            seq = (seq + 1) & 0xFFFF
        self.sequence = seq
        return packets


@dataclass(slots=True)
class ReceivedFrame:
    """One reassembled frame: a complete JPEG file and when its packets arrived."""

    jpeg: bytes
    rtp_timestamp: int
    capture_ns: int | None  # abs-capture-time, in the sender's clock (see rtp.py)
    frame_seq: int | None  # frame-seq extension
    first_packet_ns: int
    last_packet_ns: int
    packets: int
    stale: float = 0.0  # fraction of the picture concealed from the previous frame


class _Pending:
    """A frame being reassembled."""

    __slots__ = ("capture_ns", "chunks", "complete", "dims", "first_ns", "frame_seq", "last_ns",
                 "packets", "qtables", "received", "restart_interval", "restart_words", "result",
                 "scan", "timestamp", "total")

    def __init__(self, timestamp: int, arrival_ns: int) -> None:
        self.timestamp = timestamp
        self.chunks: dict[int, bytes | memoryview] = {}  # fragment offset -> payload
        self.received = 0  # payload bytes held in chunks
        self.total: int | None = None  # frame size, known from the marker packet
        self.dims: tuple[int, int, int, int] | None = None  # type, width, height, Q
        self.qtables: bytes | None = None
        self.restart_interval = 0
        self.capture_ns: int | None = None
        self.frame_seq: int | None = None
        self.first_ns = self.last_ns = arrival_ns
        self.packets = 0
        self.restart_words: dict[int, int] = {}  # fragment offset -> RFC 2435 restart word
        self.complete = False  # reassembled, waiting (hold) for an older frame's repair
        self.result: ReceivedFrame | None = None
        self.scan = b""  # kept for concealment until the frame comes out

    def contiguous(self) -> bool:
        """True when the fragments cover 0..total exactly, without holes or overlaps."""
        covered = 0
        for offset in sorted(self.chunks):
            if offset != covered:
                return False
            covered += len(self.chunks[offset])
        return covered == self.total


class MalformedPacket(RtpError):
    """A datagram that is not a well-formed RTP/JPEG packet (the message says which part)."""


@dataclass(frozen=True, slots=True)
class JpegFragment:
    """One parsed RTP/JPEG datagram: its RTP header, RFC 2435 headers and scan bytes."""

    rtp: RtpPacket
    offset: int  # of ``data`` in the frame's scan
    jpeg_type: int  # RFC 2435 type: 0/1, +64 with restart markers
    q: int
    width: int
    height: int
    restart_interval: int
    q_header: bool  # a quantisation table header was present (first fragment, Q >= 128)
    qtables: bytes | None  # 128 bytes (luma, chroma) when in-band, else None
    data: memoryview  # scan bytes, a view into the datagram
    restart_word: int = 0  # RFC 2435 3.1.7: F(1) L(1) restart count(14); 0 without restarts


def parse_jpeg_packet(packet: bytes | memoryview,
                      payload_type: int = JPEG_PAYLOAD_TYPE) -> JpegFragment:
    """Parse one RTP/JPEG datagram; :class:`MalformedPacket` names what is wrong.

    Every malformed input raises MalformedPacket and nothing else: anything other
    escaping from here is a bug (the fuzz test in test_rtp_jpeg.py holds it to that).
    """
    try:
        rtp = parse_packet(packet)
    except RtpError as exc:
        raise MalformedPacket(str(exc)) from None
    what = f"RTP/JPEG packet seq {rtp.sequence}"
    if rtp.payload_type != payload_type:
        raise MalformedPacket(f"{what}: payload type {rtp.payload_type}, expected "
                              f"{payload_type}")
    payload = rtp.payload
    if len(payload) < _MAIN_SIZE:
        raise MalformedPacket(f"{what}: payload of {len(payload)} bytes, shorter than the "
                              f"{_MAIN_SIZE}-byte RFC 2435 header")
    _spec, off_hi, off_lo, jtype, q, w8, h8 = _MAIN.unpack_from(payload, 0)
    offset = (off_hi << 16) | off_lo
    if jtype & 63 > 1 or jtype > 127 or w8 == 0 or h8 == 0 or q == 0:
        raise MalformedPacket(f"{what}: type {jtype}, Q {q}, {w8 * 8}x{h8 * 8}; expected "
                              "type 0/1 (+64), Q 1..255 and a non-zero size")
    pos = _MAIN_SIZE
    restart_interval = restart_word = 0
    if jtype >= 64:
        if len(payload) < pos + _RESTART.size:
            raise MalformedPacket(f"{what}: type {jtype} needs a 4-byte restart marker "
                                  f"header, the payload has {len(payload)} bytes")
        restart_interval, restart_word = _RESTART.unpack_from(payload, pos)
        if restart_interval == 0:
            raise MalformedPacket(f"{what}: type {jtype} with a restart interval of 0; "
                                  "expected 1..65535 MCUs")
        pos += _RESTART.size
    qtables = None
    q_header = q >= 128 and offset == 0
    if q_header:
        if len(payload) < pos + _QHEADER.size:
            raise MalformedPacket(f"{what}: Q {q} at offset 0 needs a 4-byte quantisation "
                                  f"table header, the payload has {len(payload)} bytes")
        _mbz, precision, length = _QHEADER.unpack_from(payload, pos)
        pos += _QHEADER.size
        if length:
            if precision != 0 or length % 64 or len(payload) < pos + length:
                raise MalformedPacket(f"{what}: quantisation tables of precision {precision}"
                                      f", {length} bytes; expected 8-bit tables of 64 bytes "
                                      f"within the payload ({len(payload) - pos} left)")
            # One table (FFmpeg's encoder shares it) serves luma and chroma alike.
            qtables = bytes(payload[pos: pos + 128]) if length >= 128 else \
                bytes(payload[pos: pos + 64]) * 2
            pos += length
    return JpegFragment(rtp, offset, jtype, q, w8 * 8, h8 * 8, restart_interval, q_header,
                        qtables, payload[pos:], restart_word)


class JpegDepacketizer:
    """Reassembles RTP/JPEG frames; a malformed datagram is counted, not raised.

    A frame is given up (``frames_incomplete``) when a later frame completes first, or
    when more than ``MAX_PENDING`` frames are in flight. With ``conceal`` a given-up frame
    with restart markers comes out anyway, its missing intervals taken from the previous
    frame (rtp/conceal.py; ``ReceivedFrame.stale`` says how much). With ``hold_ms`` > 0 (a receiver
    that asks for repairs), a complete frame waits behind an older incomplete one until
    that one completes or is ``hold_ms`` old (from its first packet), so frames still
    come out in order and a repaired frame is shown; call ``release`` when no packet
    arrives (``next_release_ns`` says when). Counters: ``frames_complete``,
    ``frames_incomplete``, ``packets`` (valid ones), ``packets_lost`` (sequence gaps
    not filled later), ``malformed`` (datagrams dropped as not RTP/JPEG).
    """

    MAX_PENDING = 2
    MAX_PENDING_HELD = 5  # with hold_ms: a frame period of repair time at 60 fps, and more
    MAX_DROPOUT = 3000  # RFC 3550 A.1: a bigger jump is a restarted sender, not loss
    MAX_MISORDER = 100

    def __init__(self, payload_type: int = JPEG_PAYLOAD_TYPE, hold_ms: float = 0.0,
                 conceal: bool = False) -> None:
        if hold_ms < 0:
            raise ValueError(f"depacketizer hold_ms: got {hold_ms}, expected >= 0")
        self.payload_type = payload_type
        self.concealer = StripeConcealer() if conceal else None
        self.hold_ns = int(hold_ms * 1e6)
        self._max_pending = self.MAX_PENDING_HELD if hold_ms else self.MAX_PENDING
        self.frames_complete = 0
        self.frames_incomplete = 0
        self.packets = 0
        self.packets_lost = 0
        self.packets_recovered = 0  # retransmitted packets received
        self.malformed = 0
        self.cycles = 0  # sequence number wrap-arounds (for the extended highest seq)
        self.jitter = 0.0  # RFC 3550 interarrival jitter, RTP timestamp units
        self._pending: dict[int, _Pending] = {}  # by RTP timestamp, oldest first
        self._done: list[int] = []  # timestamps recently finished or given up
        self._ssrc: int | None = None
        self._highest_seq: int | None = None
        self._last_transit: int | None = None
        self._q_cache: dict[int, bytes] = {}  # Q 128..254 -> tables (RFC 2435 3.1.8)
        self._headers_key: tuple | None = None
        self._headers = b""

    @property
    def extended_highest_seq(self) -> int:
        """Highest sequence number seen, with wrap-arounds (RFC 3550 A.1)."""
        return (self.cycles << 16) | (self._highest_seq or 0)

    @property
    def pending(self) -> int:
        """Frames started but not yet complete."""
        return len(self._pending)

    def push(self, packet: bytes, arrival_ns: int,
             retransmitted: bool = False) -> list[ReceivedFrame]:
        """Feed one datagram received at ``arrival_ns``; return the frames it completed.

        A malformed datagram (:class:`MalformedPacket`) is counted in ``malformed`` and
        dropped; nothing else is caught. A ``bytes`` packet is kept by reference until its
        frame completes (no copy); any other buffer is copied. A ``retransmitted`` packet
        (restored from RTX) fills its frame but counts in neither the sequence (loss)
        nor the jitter figures, which describe the network.
        """
        try:
            fragment = parse_jpeg_packet(packet, self.payload_type)
        except MalformedPacket:
            self.malformed += 1
            return []
        return self._add(fragment, type(packet) is bytes, arrival_ns, retransmitted)

    def parse(self, packet: bytes | memoryview) -> JpegFragment | None:
        """``parse_jpeg_packet`` for this stream's payload type; None (counted in
        ``malformed``) for a malformed datagram."""
        try:
            return parse_jpeg_packet(packet, self.payload_type)
        except MalformedPacket:
            self.malformed += 1
            return None

    def push_fragment(self, fragment: JpegFragment, arrival_ns: int, keep_reference: bool,
                      retransmitted: bool = False) -> list[ReceivedFrame]:
        """``push`` for a datagram already parsed with ``parse``."""
        return self._add(fragment, keep_reference, arrival_ns, retransmitted)

    def flush(self) -> int:
        """Give up every frame still pending (end of stream); return how many."""
        count = len(self._pending)
        for frame in list(self._pending.values()):
            self._give_up(frame)
        return count

    def _track_sequence(self, ssrc: int, seq: int) -> None:
        if ssrc != self._ssrc or self._highest_seq is None:  # a new (or restarted) sender
            self._ssrc, self._highest_seq, self._last_transit = ssrc, seq, None
            return
        delta = (seq - self._highest_seq) & 0xFFFF
        if delta == 0:
            return  # duplicate
        if delta < self.MAX_DROPOUT:  # ahead, maybe after a gap
            self.packets_lost += delta - 1
            if seq < self._highest_seq:
                self.cycles += 1
            self._highest_seq = seq
        elif delta > 0x10000 - self.MAX_MISORDER:  # late: it fills a gap counted before
            if self.packets_lost > 0:
                self.packets_lost -= 1
        else:  # a jump: the sender restarted its numbering; resynchronise
            self._highest_seq = seq

    def _update_jitter(self, rtp_timestamp: int, arrival_ns: int) -> None:
        """RFC 3550 A.8's estimator over frames: fed the arrival of each frame's last
        (marker) packet. Over every packet it reads far too low, since the packets of a
        frame share one timestamp and leave in one burst."""
        transit = (arrival_ns * 9 // 100_000 - rtp_timestamp) & 0xFFFFFFFF  # 90 kHz units
        if self._last_transit is not None:
            d = abs(((transit - self._last_transit + (1 << 31)) & 0xFFFFFFFF) - (1 << 31))
            self.jitter += (d - self.jitter) / 16
        self._last_transit = transit

    def _add(self, fragment: JpegFragment, keep_reference: bool, arrival_ns: int,
             retransmitted: bool = False) -> list[ReceivedFrame]:
        rtp, offset, q = fragment.rtp, fragment.offset, fragment.q
        qtables = fragment.qtables
        if fragment.q_header and qtables is None:
            qtables = self._q_cache.get(q)  # the sender omitted tables it sent before
        elif qtables is not None and q < 255:
            self._q_cache[q] = qtables
        self.packets += 1
        if retransmitted:
            self.packets_recovered += 1
        else:
            self._track_sequence(rtp.ssrc, rtp.sequence)
            if rtp.marker:
                self._update_jitter(rtp.timestamp, arrival_ns)
        if rtp.timestamp in self._done:
            return self.release(arrival_ns)  # a straggler of a frame finished or given up
        frame = self._pending.get(rtp.timestamp)
        out: list[ReceivedFrame] = []
        if frame is None:
            frame = _Pending(rtp.timestamp, arrival_ns)
            self._pending[rtp.timestamp] = frame
            while len(self._pending) > self._max_pending:  # dicts keep arrival order
                oldest = next(iter(self._pending.values()))
                if oldest.complete:
                    out.append(self._deliver(oldest))
                elif (concealed := self._give_up(oldest)) is not None:
                    out.append(concealed)
        elif frame.complete:
            return self.release(arrival_ns)  # a duplicate of a frame held complete
        chunk = fragment.data if keep_reference else bytes(fragment.data)
        old = frame.chunks.get(offset)
        if old is not None:
            frame.received -= len(old)
        frame.chunks[offset] = chunk
        frame.received += len(chunk)
        if fragment.jpeg_type >= 64:
            frame.restart_words[offset] = fragment.restart_word
        if frame.received >= _MAX_OFFSET or len(frame.chunks) > _MAX_FRAGMENTS:
            self._give_up(frame)  # overlapping junk fragments: bound what one frame holds
            return out + self.release(arrival_ns)
        if offset == 0 or frame.dims is None:
            frame.dims = (fragment.jpeg_type & 1, fragment.width, fragment.height, q)
            frame.restart_interval = fragment.restart_interval
        if qtables is not None:
            frame.qtables = qtables
        if frame.capture_ns is None or frame.frame_seq is None:
            with contextlib.suppress(RtpError):  # a broken block costs the stamps only
                frame.capture_ns, frame.frame_seq = read_frame_extensions(rtp.extensions)
        frame.last_ns = arrival_ns
        frame.packets += 1
        if rtp.marker:
            frame.total = offset + len(chunk)
        if frame.total is None or frame.received < frame.total or not frame.contiguous():
            return out + self.release(arrival_ns)
        frame.result = self._finish(frame)
        if frame.result is None:
            self._forget(frame)  # counted incomplete by _finish
        else:
            frame.complete = True
        return out + self.release(arrival_ns)

    def release(self, now_ns: int) -> list[ReceivedFrame]:
        """Complete frames that may come out now, in order; an older incomplete frame is
        given up once a later one is complete (after ``hold_ms`` when holding)."""
        out = []
        while self._pending:
            oldest = next(iter(self._pending.values()))
            if oldest.complete:
                out.append(self._deliver(oldest))
                continue
            if not any(p.complete for p in self._pending.values()):
                break
            if self.hold_ns and now_ns - oldest.first_ns < self.hold_ns:
                break
            concealed = self._give_up(oldest)  # it will not complete any more
            if concealed is not None:
                out.append(concealed)
        return out

    def next_release_ns(self) -> int | None:
        """When a held frame is next due out (None: none held)."""
        if not self.hold_ns or not any(p.complete for p in self._pending.values()):
            return None
        return next(iter(self._pending.values())).first_ns + self.hold_ns

    def _forget(self, frame: _Pending) -> None:
        del self._pending[frame.timestamp]
        self._done.append(frame.timestamp)
        if len(self._done) > 8:
            del self._done[0]

    def _deliver(self, frame: _Pending) -> ReceivedFrame:
        """A complete frame comes out (in order): the one later frames are patched from."""
        self._forget(frame)
        if self.concealer is not None and frame.restart_interval:
            self.concealer.remember(self._headers_key_of(frame), frame.scan)
        frame.scan = b""
        return frame.result

    def _headers_key_of(self, frame: _Pending) -> tuple:
        jtype, width, height, q = frame.dims
        tables = frame.qtables if q >= 128 else standard_qtables(q)
        return (jtype, width, height, tables, frame.restart_interval)

    def _give_up(self, frame: _Pending) -> ReceivedFrame | None:
        """Forget an incomplete frame; with ``conceal``, the frame patched, if it can be."""
        self._forget(frame)
        self.frames_incomplete += 1
        if self.concealer is None or not frame.restart_interval or frame.dims is None:
            return None
        jtype, width, height, q = frame.dims
        tables = (frame.qtables or self.concealer.previous_tables(
            jtype, width, height, frame.restart_interval)) if q >= 128 else standard_qtables(q)
        if tables is None:
            return None
        runs: list[tuple[int, bytes, bool, int, bool]] = []
        chunks, words = frame.chunks, frame.restart_words
        for offset in sorted(chunks):
            data = chunks[offset]
            if runs and runs[-1][0] + len(runs[-1][1]) == offset:
                start, joined, starts, count, _ = runs[-1]
                runs[-1] = (start, joined + bytes(data), starts, count, False)
            else:
                word = words.get(offset, 0x3FFF)
                runs.append((offset, bytes(data), bool(word & 0x8000), word & 0x3FFF, False))
        if runs and frame.total is not None and runs[-1][0] + len(runs[-1][1]) == frame.total:
            runs[-1] = (*runs[-1][:4], True)
        key = (jtype, width, height, tables, frame.restart_interval)
        patched = self.concealer.conceal(
            key, interval_count(jtype, width, height, frame.restart_interval), runs)
        if patched is None:
            return None
        scan, stale = patched
        return ReceivedFrame(self._headers_for(key) + scan + _EOI, frame.timestamp,
                             frame.capture_ns, frame.frame_seq, frame.first_ns, frame.last_ns,
                             frame.packets, stale)

    def _headers_for(self, key: tuple) -> bytes:
        if key != self._headers_key:
            self._headers_key = key
            self._headers = jpeg_headers(*key)
        return self._headers

    def _finish(self, frame: _Pending) -> ReceivedFrame | None:
        jtype, width, height, q = frame.dims
        tables = frame.qtables if q >= 128 else standard_qtables(q)
        if tables is None:  # dynamic Q whose tables never arrived
            self.frames_incomplete += 1
            return None
        key = (jtype, width, height, tables, frame.restart_interval)
        chunks = frame.chunks
        scan = b"".join([chunks[o] for o in sorted(chunks)])
        if self.concealer is not None and frame.restart_interval:
            frame.scan = scan
        self.frames_complete += 1
        return ReceivedFrame(self._headers_for(key) + scan + _EOI, frame.timestamp,
                             frame.capture_ns, frame.frame_seq, frame.first_ns, frame.last_ns,
                             frame.packets)


@functools.cache
def standard_qtables(q: int) -> bytes:
    """RFC 2435 Appendix A: luma + chroma tables for Q in 1..127, zigzag order.

    Q is clamped to 1..99 and scaled like libjpeg's quality setting, so for Q 1..99
    these are the tables libjpeg writes at that quality.
    """
    factor = min(max(q, 1), 99)
    scale = 5000 // factor if factor < 50 else 200 - 2 * factor
    return bytes(min(max((base[i] * scale + 50) // 100, 1), 255)
                 for base in (_LUMA_Q, _CHROMA_Q) for i in _ZIGZAG)


def jpeg_headers(jpeg_type: int, width: int, height: int, qtables: bytes,
                 restart_interval: int = 0) -> bytes:
    """SOI ... SOS of a baseline JFIF file for an RTP/JPEG frame (RFC 2435 Appendix B).

    ``jpeg_type`` 0 is 4:2:2, 1 is 4:2:0 (the restart bit, 64, is ignored here: pass
    ``restart_interval``).
    """
    dqt = b"\xff\xdb\x00\x84\x00" + qtables[:64] + b"\x01" + qtables[64:128]
    luma = 0x22 if jpeg_type & 1 else 0x21
    sof = b"\xff\xc0" + struct.pack("!HBHHB", 17, 8, height, width, 3) + bytes(
        [1, luma, 0, 2, 0x11, 1, 3, 0x11, 1])
    dri = b"\xff\xdd\x00\x04" + struct.pack("!H", restart_interval) if restart_interval else b""
    sos = b"\xff\xda\x00\x0c\x03\x01\x00\x02\x11\x03\x11\x00\x3f\x00"
    return _SOI + _JFIF_APP0 + dqt + sof + _DHT_SEGMENT + dri + sos
