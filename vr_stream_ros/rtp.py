"""RTP (RFC 3550) headers, one-byte header extensions (RFC 8285) and RFC 4571 framing.

Two extensions ride on every packet of a frame:

- id 1, abs-capture-time (http://www.webrtc.org/experiments/rtp-hdrext/abs-capture-time):
  the frame's capture time as a 64-bit UQ32.32 timestamp. Our sender's clock is
  CLOCK_MONOTONIC (``time.monotonic_ns``); the extension requires the clock the sender
  uses for RTCP sender-report NTP times, and ours uses the same one.
- id 2, urn:vr-stream-ros:frame-seq: the ring's 32-bit frame sequence number.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

RTP_VERSION = 2
EXT_ABS_CAPTURE_TIME = 1
EXT_FRAME_SEQ = 2
ABS_CAPTURE_TIME_URI = "http://www.webrtc.org/experiments/rtp-hdrext/abs-capture-time"
FRAME_SEQ_URI = "urn:vr-stream-ros:frame-seq"
_ONE_BYTE_PROFILE = 0xBEDE
_FIXED = struct.Struct("!BBHII")


class RtpError(ValueError):
    """A packet that is not valid RTP (the message says which part)."""


def ns_to_uq32_32(ns: int) -> int:
    """Nanoseconds to a 64-bit UQ32.32 fixed-point number of seconds."""
    seconds, rest = divmod(ns, 1_000_000_000)
    return ((seconds & 0xFFFFFFFF) << 32) | ((rest << 32) // 1_000_000_000)


def uq32_32_to_ns(value: int) -> int:
    """A 64-bit UQ32.32 number of seconds to nanoseconds (rounded)."""
    return (value >> 32) * 1_000_000_000 + (((value & 0xFFFFFFFF) * 1_000_000_000 + (1 << 31))
                                            >> 32)


def pack_extensions(elements: dict[int, bytes]) -> bytes:
    """RFC 8285 one-byte-header extension block (profile 0xBEDE), padded to 32 bits."""
    body = bytearray()
    for ext_id, data in elements.items():
        if not 1 <= ext_id <= 14 or not 1 <= len(data) <= 16:
            raise RtpError(f"extension id {ext_id}: one-byte form needs id 1..14, 1..16 bytes")
        body.append((ext_id << 4) | (len(data) - 1))
        body += data
    body += bytes(-len(body) % 4)
    return struct.pack("!HH", _ONE_BYTE_PROFILE, len(body) // 4) + bytes(body)


def parse_extensions(profile: int, data: bytes | memoryview) -> dict[int, bytes]:
    """Elements of a one-byte-header extension block; other profiles give {}."""
    if profile != _ONE_BYTE_PROFILE:
        return {}
    out: dict[int, bytes] = {}
    i, n = 0, len(data)
    while i < n:
        b = data[i]
        if b == 0:  # padding
            i += 1
            continue
        ext_id, length = b >> 4, (b & 0x0F) + 1
        if ext_id == 15:  # reserved: stop parsing (RFC 8285 4.2)
            break
        if i + 1 + length > n:
            raise RtpError(f"extension id {ext_id}: {length} bytes run past the block")
        out[ext_id] = bytes(data[i + 1: i + 1 + length])
        i += 1 + length
    return out


@dataclass
class RtpPacket:
    """A parsed RTP packet; ``payload`` is a view into the datagram."""

    payload_type: int
    marker: bool
    sequence: int
    timestamp: int
    ssrc: int
    extensions: dict[int, bytes]
    payload: memoryview


def parse_packet(data: bytes | memoryview) -> RtpPacket:
    """Parse one RTP datagram; raises RtpError naming what is wrong."""
    view = memoryview(data)
    if len(view) < 12:
        raise RtpError(f"RTP packet of {len(view)} bytes: shorter than the 12-byte header")
    b0, b1, seq, ts, ssrc = _FIXED.unpack_from(view, 0)
    if b0 >> 6 != RTP_VERSION:
        raise RtpError(f"RTP packet: version {b0 >> 6}, expected 2")
    offset = 12 + 4 * (b0 & 0x0F)
    end = len(view)
    if b0 & 0x20:  # padding
        pad = view[-1]
        if pad == 0 or pad > end - offset:
            raise RtpError(f"RTP packet: padding of {pad} bytes does not fit")
        end -= pad
    extensions: dict[int, bytes] = {}
    if b0 & 0x10:
        if offset + 4 > end:
            raise RtpError("RTP packet: extension header runs past the packet")
        profile, words = struct.unpack_from("!HH", view, offset)
        ext_end = offset + 4 + 4 * words
        if ext_end > end:
            raise RtpError(f"RTP packet: extension of {4 * words} bytes runs past the packet")
        extensions = parse_extensions(profile, view[offset + 4: ext_end])
        offset = ext_end
    if offset > end:
        raise RtpError("RTP packet: CSRC list runs past the packet")
    return RtpPacket(b1 & 0x7F, bool(b1 & 0x80), seq, ts, ssrc, extensions, view[offset:end])


def pack_header(payload_type: int, marker: bool, sequence: int, timestamp: int, ssrc: int,
                extension_block: bytes = b"") -> bytes:
    """Fixed RTP header (no CSRCs), with an already packed extension block if any."""
    b0 = (RTP_VERSION << 6) | (0x10 if extension_block else 0)
    b1 = (0x80 if marker else 0) | (payload_type & 0x7F)
    return _FIXED.pack(b0, b1, sequence & 0xFFFF, timestamp & 0xFFFFFFFF,
                       ssrc & 0xFFFFFFFF) + extension_block


def frame_extensions(capture_ns: int, frame_seq: int) -> bytes:
    """The extension block our sender puts on every packet of a frame."""
    return pack_extensions({
        EXT_ABS_CAPTURE_TIME: struct.pack("!Q", ns_to_uq32_32(capture_ns)),
        EXT_FRAME_SEQ: struct.pack("!I", frame_seq & 0xFFFFFFFF),
    })


def read_frame_extensions(extensions: dict[int, bytes]) -> tuple[int | None, int | None]:
    """(capture_ns, frame_seq) from a packet's extensions, None where absent or malformed."""
    capture = extensions.get(EXT_ABS_CAPTURE_TIME)
    seq = extensions.get(EXT_FRAME_SEQ)
    capture_ns = uq32_32_to_ns(struct.unpack("!Q", capture[:8])[0]) if capture and len(
        capture) >= 8 else None
    frame_seq = struct.unpack("!I", seq)[0] if seq and len(seq) == 4 else None
    return capture_ns, frame_seq


def frame_rfc4571(packet: bytes | memoryview) -> bytes:
    """One packet with its RFC 4571 two-byte length prefix."""
    if len(packet) > 0xFFFF:
        raise RtpError(f"packet of {len(packet)} bytes too long for RFC 4571 framing")
    return struct.pack("!H", len(packet)) + bytes(packet)


class Rfc4571Decoder:
    """Splits a TCP byte stream into packets (two-byte big-endian length prefixes)."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes | memoryview) -> list[bytes]:
        """Add received bytes; return every packet now complete."""
        self._buf += data
        packets = []
        pos, buf = 0, self._buf
        while len(buf) - pos >= 2:
            length = (buf[pos] << 8) | buf[pos + 1]
            if len(buf) - pos - 2 < length:
                break
            packets.append(bytes(buf[pos + 2: pos + 2 + length]))
            pos += 2 + length
        del buf[:pos]
        return packets

    def reset(self) -> None:
        """Forget a partial packet (a new connection starts on a packet boundary)."""
        self._buf.clear()
