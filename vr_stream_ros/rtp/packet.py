"""RTP (RFC 3550) headers, one-byte header extensions (RFC 8285) and RFC 4571 framing.

Two header extensions ride on every packet of a frame (so a receiver that misses the
first packet still learns both, and each packet can be judged on its own):

- id 1, abs-capture-time (``http://www.webrtc.org/experiments/rtp-hdrext/abs-capture-time``):
  the frame's capture time, 8 bytes, a UQ32.32 fixed-point number of seconds.
  The extension is defined in the clock the sender uses for the NTP times of its RTCP
  sender reports. **Our convention:** that clock is the sender's CLOCK_MONOTONIC
  (``time.monotonic_ns``), not wall-clock NTP time, and the bridge's RTCP sender
  reports use the same clock. A receiver on the same host can subtract it from its
  own ``time.monotonic_ns()`` directly; one on another host must first learn the
  offset (RTCP round trips, see rtcp.py). Seconds wrap modulo 2**32 (136 years).
- id 2, ``urn:vr-stream-ros:frame-seq``: 4 bytes, big-endian, the camera's frame
  sequence number (the ring's ``seq``), so receiver statistics name camera frames.
- id 3, ``urn:vr-stream-ros:frame-packets`` (only with NACK on): 4 bytes, the RTP
  sequence number of the frame's first packet and the frame's packet count (16 bits
  each), so a receiver that gets any packet of a frame knows all of its sequence
  numbers and can ask for a lost *last* packet before the next frame shows the gap.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

RTP_VERSION = 2
RTP_HEADER_SIZE = 12
EXT_ABS_CAPTURE_TIME = 1
EXT_FRAME_SEQ = 2
EXT_FRAME_PACKETS = 3
FRAME_PACKETS_URI = "urn:vr-stream-ros:frame-packets"
ABS_CAPTURE_TIME_URI = "http://www.webrtc.org/experiments/rtp-hdrext/abs-capture-time"
FRAME_SEQ_URI = "urn:vr-stream-ros:frame-seq"
FRAME_EXTMAP: dict[int, str] = {
    EXT_ABS_CAPTURE_TIME: ABS_CAPTURE_TIME_URI,
    EXT_FRAME_SEQ: FRAME_SEQ_URI,
}
"""The extension ids our sender uses and their URIs (for ``a=extmap`` in the SDP)."""

ONE_BYTE_PROFILE = 0xBEDE
_FIXED = struct.Struct("!BBHII")
_EXT_HEADER = struct.Struct("!HH")
_U32 = struct.Struct("!I")
_U64 = struct.Struct("!Q")
_SPAN = struct.Struct("!HH")
_NS_PER_S = 1_000_000_000


class RtpError(ValueError):
    """A packet that is not valid RTP (the message says which part)."""


def ns_to_uq32_32(ns: int) -> int:
    """Nanoseconds to a 64-bit UQ32.32 fixed-point number of seconds (truncated)."""
    seconds, rest = divmod(ns, _NS_PER_S)
    return ((seconds & 0xFFFFFFFF) << 32) | ((rest << 32) // _NS_PER_S)


def rtp_timestamp(capture_ns: int) -> int:
    """The 90 kHz RTP timestamp (RFC 3550, video clock) of a capture time, mod 2**32."""
    return (capture_ns * 9 // 100_000) & 0xFFFFFFFF


def uq32_32_to_ns(value: int) -> int:
    """A 64-bit UQ32.32 number of seconds to nanoseconds (rounded to the nearest)."""
    fraction_ns = ((value & 0xFFFFFFFF) * _NS_PER_S + (1 << 31)) >> 32
    return (value >> 32) * _NS_PER_S + fraction_ns


def pack_extensions(elements: dict[int, bytes]) -> bytes:
    """RFC 8285 one-byte-header extension block (profile 0xBEDE), padded to 32 bits.

    Returns the 4-byte extension header and the elements, ready to follow the fixed
    header (with the X bit set); ``b""`` for no elements.
    """
    if not elements:
        return b""
    body = bytearray()
    for ext_id, data in elements.items():
        if not 1 <= ext_id <= 14:
            raise RtpError(f"extension id {ext_id}: the one-byte form allows ids 1..14")
        if not 1 <= len(data) <= 16:
            raise RtpError(f"extension id {ext_id}: {len(data)} bytes, the one-byte form "
                           "carries 1..16")
        body.append((ext_id << 4) | (len(data) - 1))
        body += data
    body += bytes(-len(body) % 4)
    return _EXT_HEADER.pack(ONE_BYTE_PROFILE, len(body) // 4) + bytes(body)


def parse_extensions(profile: int, data: bytes | memoryview) -> dict[int, bytes]:
    """Elements of a one-byte-header extension block (RFC 8285 4.2).

    ``data`` is the block after its 4-byte header. Other profiles (two-byte form,
    proprietary) give ``{}``: they are legal RTP, just not ours.
    """
    if profile != ONE_BYTE_PROFILE:
        return {}
    out: dict[int, bytes] = {}
    i, n = 0, len(data)
    while i < n:
        b = data[i]
        ext_id = b >> 4
        if ext_id == 0:  # padding byte
            i += 1
            continue
        if ext_id == 15:  # reserved: stop parsing the block (RFC 8285 4.2)
            break
        length = (b & 0x0F) + 1
        if i + 1 + length > n:
            raise RtpError(f"RTP extension id {ext_id}: {length} bytes run past the block")
        out[ext_id] = bytes(data[i + 1: i + 1 + length])
        i += 1 + length
    return out


@dataclass(slots=True)
class RtpPacket:
    """A parsed RTP packet; ``payload`` is a view into the datagram (no copy).

    The header extension block is kept raw and parsed on demand (``extensions``): a
    receiver that already knows a frame's extensions skips the work.
    """

    payload_type: int
    marker: bool
    sequence: int
    timestamp: int
    ssrc: int
    payload: memoryview
    extension_profile: int = 0
    extension_data: memoryview | None = None

    @property
    def extensions(self) -> dict[int, bytes]:
        """Header extension elements by id (RtpError if the block is malformed)."""
        if self.extension_data is None:
            return {}
        return parse_extensions(self.extension_profile, self.extension_data)


def parse_packet(data: bytes | memoryview) -> RtpPacket:
    """Parse one RTP datagram; raises RtpError naming what is wrong.

    Extension elements are parsed when ``RtpPacket.extensions`` is read.
    """
    view = memoryview(data)
    end = len(view)
    if end < RTP_HEADER_SIZE:
        raise RtpError(f"RTP packet of {end} bytes: shorter than the 12-byte header")
    b0, b1, seq, ts, ssrc = _FIXED.unpack_from(view, 0)
    if b0 >> 6 != RTP_VERSION:
        raise RtpError(f"RTP packet: version {b0 >> 6}, expected 2")
    offset = RTP_HEADER_SIZE + 4 * (b0 & 0x0F)  # skip the CSRC list
    if offset > end:
        raise RtpError(f"RTP packet: {b0 & 0x0F} CSRCs run past the packet")
    if b0 & 0x20:  # padding: the last byte says how much
        pad = view[-1]
        if pad == 0 or pad > end - offset:
            raise RtpError(f"RTP packet: padding of {pad} bytes does not fit")
        end -= pad
    if not b0 & 0x10:
        return RtpPacket(b1 & 0x7F, bool(b1 & 0x80), seq, ts, ssrc, view[offset:end])
    if offset + 4 > end:
        raise RtpError("RTP packet: extension header runs past the packet")
    profile, words = _EXT_HEADER.unpack_from(view, offset)
    ext_end = offset + 4 + 4 * words
    if ext_end > end:
        raise RtpError(f"RTP packet: extension of {4 * words} bytes runs past the packet")
    return RtpPacket(b1 & 0x7F, bool(b1 & 0x80), seq, ts, ssrc, view[ext_end:end], profile,
                     view[offset + 4: ext_end])


def pack_header(payload_type: int, marker: bool, sequence: int, timestamp: int, ssrc: int,
                extension_block: bytes = b"") -> bytes:
    """Fixed RTP header (no CSRCs), followed by an already packed extension block if any."""
    if not 0 <= payload_type <= 127:
        raise RtpError(f"RTP payload type {payload_type}: expected 0..127")
    b0 = (RTP_VERSION << 6) | (0x10 if extension_block else 0)
    b1 = (0x80 if marker else 0) | payload_type
    return _FIXED.pack(b0, b1, sequence & 0xFFFF, timestamp & 0xFFFFFFFF,
                       ssrc & 0xFFFFFFFF) + extension_block


def frame_extensions(capture_ns: int, frame_seq: int,
                     span: tuple[int, int] | None = None) -> bytes:
    """The extension block our sender puts on every packet of a frame (20 bytes; 28 with
    ``span``, the frame's first sequence number and packet count)."""
    elements = {
        EXT_ABS_CAPTURE_TIME: _U64.pack(ns_to_uq32_32(capture_ns)),
        EXT_FRAME_SEQ: _U32.pack(frame_seq & 0xFFFFFFFF),
    }
    if span is not None:
        elements[EXT_FRAME_PACKETS] = _SPAN.pack(span[0] & 0xFFFF, span[1])
    return pack_extensions(elements)


def read_frame_span(extensions: dict[int, bytes]) -> tuple[int, int] | None:
    """(first sequence number, packet count) of the packet's frame; None if absent or
    malformed (a count of 0 is malformed)."""
    span = extensions.get(EXT_FRAME_PACKETS)
    if span is None or len(span) != 4:
        return None
    first, count = _SPAN.unpack(span)
    return (first, count) if count else None


def read_frame_extensions(extensions: dict[int, bytes]) -> tuple[int | None, int | None]:
    """(capture_ns, frame_seq) from a packet's extensions; None where absent or malformed.

    abs-capture-time may be 8 bytes or 16 (with an estimated clock offset, which we
    ignore); frame-seq must be 4 bytes.
    """
    capture = extensions.get(EXT_ABS_CAPTURE_TIME)
    seq = extensions.get(EXT_FRAME_SEQ)
    capture_ns = None
    if capture is not None and len(capture) in (8, 16):
        capture_ns = uq32_32_to_ns(_U64.unpack_from(capture)[0])
    frame_seq = _U32.unpack(seq)[0] if seq is not None and len(seq) == 4 else None
    return capture_ns, frame_seq


def frame_rfc4571(packet: bytes | memoryview) -> bytes:
    """One packet with its RFC 4571 two-byte big-endian length prefix."""
    if len(packet) > 0xFFFF:
        raise RtpError(f"packet of {len(packet)} bytes too long for RFC 4571 framing "
                       "(at most 65535)")
    return b"".join((len(packet).to_bytes(2, "big"), packet))


class Rfc4571Decoder:
    """Splits a TCP byte stream into packets (RFC 4571 two-byte big-endian lengths).

    Feed it whatever ``recv`` returned, in any chunking; it returns each packet once
    complete and keeps a partial one for the next call.
    """

    def __init__(self) -> None:
        self._buf = bytearray()

    @property
    def buffered(self) -> int:
        """Bytes held back: the start of a packet not yet complete."""
        return len(self._buf)

    def feed(self, data: bytes | memoryview) -> list[bytes]:
        """Add received bytes; return every packet now complete (oldest first)."""
        buf = self._buf
        buf += data
        packets: list[bytes] = []
        pos, size = 0, len(buf)
        with memoryview(buf) as view:
            while size - pos >= 2:
                length = (buf[pos] << 8) | buf[pos + 1]
                if size - pos - 2 < length:
                    break
                packets.append(bytes(view[pos + 2: pos + 2 + length]))
                pos += 2 + length
        if pos:
            del buf[:pos]
        return packets

    def reset(self) -> None:
        """Forget a partial packet (a new connection starts on a packet boundary)."""
        self._buf.clear()
