"""XOR parity per frame (RFC 5109 ULPFEC packet format, level 0), and its recovery.

The bridge splits each frame's RTP packets into groups of at most ``group`` packets
(near-equal sizes, at most 48: the long mask) and sends one parity packet per group
right after the frame. A receiver that misses exactly one packet of a group rebuilds it
from the others and the parity at once, without a round trip: what NACK cannot do when
the round trip exceeds a frame period. With NACK on as well, a repair that fills one
of two holes lets the parity rebuild the other.

Wire format: RFC 5109 section 7 (10-byte FEC header: P/X/CC/M/PT/TS/length recovery
and SN base; one level-0 header: protection length, a 16- or 48-bit mask (L bit)), the
XOR of each protected packet's bytes after its 12-byte fixed header (extensions and
payload), zero-padded. Signalled in the SDP as ``ulpfec/90000`` on its own payload type.
What differs from RFC 5109's usual carriage: the parity packets go on their own SSRC
(as RFC 4588 RTX does here, and as RFC 8627 FlexFEC does), not in the media's sequence
numbers, so a receiver's loss figures and a receiver that ignores FEC (GStreamer,
FFmpeg) see the media stream unchanged; RFC 8627's own header (flexible masks, several
SSRCs) would be more than one stream's per-frame parity needs.
"""

from __future__ import annotations

import struct
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

from vr_stream_ros.rtp.packet import RTP_HEADER_SIZE, RtpError, RtpPacket, pack_header

FEC_PAYLOAD_TYPE = 98
MAX_GROUP = 48  # the long (L=1) mask
_FEC_HEADER = struct.Struct("!BBHIH")  # E/L/P/X/CC, M/PT, SN base, TS rec., length rec.
_LEVEL_SHORT = struct.Struct("!HH")  # protection length, 16-bit mask
_LEVEL_LONG = struct.Struct("!HHI")  # protection length, 48-bit mask


class FecError(RtpError):
    """A malformed FEC packet, or one that cannot rebuild what it claims to protect."""


def _bits(packets: Sequence[bytes | memoryview]) -> tuple[int, int, int, int, int, int]:
    """XOR over ``packets`` of (byte 0, byte 1, timestamp, length after the fixed header,
    the bytes after it as one big-endian integer, zero-padded to the longest), and that
    longest length."""
    size = max(len(p) - RTP_HEADER_SIZE for p in packets)
    b0 = b1 = ts = length = acc = 0
    for p in packets:
        body = len(p) - RTP_HEADER_SIZE
        b0 ^= p[0]
        b1 ^= p[1]
        ts ^= int.from_bytes(p[4:8], "big")
        length ^= body
        acc ^= int.from_bytes(p[RTP_HEADER_SIZE:], "big") << (8 * (size - body))
    return b0, b1, ts, length, acc, size


def parity_packet(packets: Sequence[bytes], payload_type: int, ssrc: int, seq: int) -> bytes:
    """The parity packet protecting ``packets`` (1..48 consecutive sequence numbers)."""
    if not 1 <= len(packets) <= MAX_GROUP:
        raise FecError(f"FEC group of {len(packets)} packets, expected 1..{MAX_GROUP}")
    b0, b1, ts, length, acc, size = _bits(packets)
    base = struct.unpack_from("!H", packets[0], 2)[0]
    long_mask = len(packets) > 16
    width = 48 if long_mask else 16
    mask = ((1 << len(packets)) - 1) << (width - len(packets))
    header = _FEC_HEADER.pack((0x40 if long_mask else 0) | (b0 & 0x3F), b1, base, ts,
                              length & 0xFFFF)
    level = _LEVEL_LONG.pack(size, mask >> 32, mask & 0xFFFFFFFF) if long_mask else \
        _LEVEL_SHORT.pack(size, mask)
    frame_ts = struct.unpack_from("!I", packets[0], 4)[0]
    return pack_header(payload_type, False, seq, frame_ts, ssrc) + header + level + \
        acc.to_bytes(size, "big")


class FecEncoder:
    """The bridge's side: parity packets for each frame, on their own SSRC and numbers."""

    def __init__(self, group: int, ssrc: int, payload_type: int = FEC_PAYLOAD_TYPE) -> None:
        if not 1 <= group <= MAX_GROUP:
            raise ValueError(f"parameter 'fec': got {group}, expected 0 (off) or "
                             f"1..{MAX_GROUP} packets per parity packet")
        self.group, self.ssrc, self.payload_type = group, ssrc, payload_type
        self.sequence = 0
        self.packets = self.bytes = 0

    def protect(self, packets: Sequence[bytes]) -> list[bytes]:
        """One frame's packets -> its parity packets (groups of near-equal size)."""
        count = -(-len(packets) // self.group)
        out = []
        for i in range(count):
            lo, hi = i * len(packets) // count, (i + 1) * len(packets) // count
            out.append(parity_packet(packets[lo:hi], self.payload_type, self.ssrc,
                                     self.sequence))
            self.sequence = (self.sequence + 1) & 0xFFFF
        self.packets += len(out)
        self.bytes += sum(map(len, out))
        return out


@dataclass(frozen=True)
class FecPacket:
    """A parsed parity packet: what it protects and the recovery fields."""

    protected: tuple[int, ...]  # 16-bit sequence numbers
    b0: int  # P/X/CC recovery (low 6 bits)
    b1: int  # M/PT recovery
    ts: int
    length: int
    size: int  # protection length
    payload: bytes


def parse_fec(rtp: RtpPacket) -> FecPacket:
    """A parity packet's fields; FecError naming what is wrong."""
    data = rtp.payload
    if len(data) < _FEC_HEADER.size + _LEVEL_SHORT.size:
        raise FecError(f"FEC packet seq {rtp.sequence}: {len(data)} bytes, expected at least "
                       f"{_FEC_HEADER.size + _LEVEL_SHORT.size} (FEC and level headers)")
    e_l, b1, base, ts, length = _FEC_HEADER.unpack_from(data)
    if e_l & 0x80:
        raise FecError(f"FEC packet seq {rtp.sequence}: E bit set (reserved for extensions)")
    if e_l & 0x40:
        if len(data) < _FEC_HEADER.size + _LEVEL_LONG.size:
            raise FecError(f"FEC packet seq {rtp.sequence}: L bit set but no 48-bit mask")
        size, hi, lo = _LEVEL_LONG.unpack_from(data, _FEC_HEADER.size)
        mask, width, at = hi << 32 | lo, 48, _FEC_HEADER.size + _LEVEL_LONG.size
    else:
        size, mask = _LEVEL_SHORT.unpack_from(data, _FEC_HEADER.size)
        width, at = 16, _FEC_HEADER.size + _LEVEL_SHORT.size
    if not mask:
        raise FecError(f"FEC packet seq {rtp.sequence}: empty protection mask")
    if len(data) - at != size or size == 0:
        raise FecError(f"FEC packet seq {rtp.sequence}: protection length {size}, but "
                       f"{len(data) - at} bytes follow the headers")
    protected = tuple((base + i) & 0xFFFF for i in range(width)
                      if mask >> (width - 1 - i) & 1)
    return FecPacket(protected, e_l & 0x3F, b1, ts, length, size, bytes(data[at:]))


class FecDecoder:
    """The receiver's side: keeps recent media packets and parity packets, and rebuilds a
    packet whenever a parity packet's group misses exactly one."""

    KEEP_MEDIA = 2048
    KEEP_PARITY = 16  # a quarter second at 60 fps: repairs come sooner or never

    def __init__(self) -> None:
        self._media: OrderedDict[int, bytes] = OrderedDict()
        self._parity: list[FecPacket] = []
        self.received = self.recovered = self.malformed = self.unused = 0

    def media(self, seq: int, packet: bytes) -> list[bytes]:
        """A media packet arrived (or was repaired); packets it lets parity rebuild."""
        self._remember(seq, packet)
        seq &= 0xFFFF
        if not any(seq in f.protected for f in self._parity):
            return []
        return self._recover(packet)

    def parity(self, rtp: RtpPacket, media_ssrc: int) -> list[bytes]:
        """A parity packet arrived; the packets it rebuilds (FecError: counted by the
        caller as malformed)."""
        fec = parse_fec(rtp)
        self.received += 1
        self._parity.append(fec)
        if len(self._parity) > self.KEEP_PARITY:
            del self._parity[0]
            self.unused += 1
        return self._recover(struct.pack("!8xI", media_ssrc))

    def _remember(self, seq: int, packet: bytes) -> None:
        self._media[seq & 0xFFFF] = packet
        self._media.move_to_end(seq & 0xFFFF)
        while len(self._media) > self.KEEP_MEDIA:
            self._media.popitem(last=False)

    def _recover(self, sample: bytes) -> list[bytes]:
        out: list[bytes] = []
        progress = True
        while progress:
            progress = False
            for fec in list(self._parity):
                missing = [s for s in fec.protected if s not in self._media]
                if len(missing) > 1:
                    continue
                self._parity.remove(fec)
                if missing:
                    packet = self._rebuild(fec, missing[0], sample)
                    if packet is not None:
                        self._remember(missing[0], packet)
                        out.append(packet)
                        self.recovered += 1
                        progress = True
        return out

    def _rebuild(self, fec: FecPacket, seq: int, sample: bytes) -> bytes | None:
        others = [self._media[s] for s in fec.protected if s != seq]
        ssrc = sample[8:12]
        if others:
            b0, b1, ts, length, acc, size = _bits(others)
            ssrc = others[0][8:12]
        else:
            b0 = b1 = ts = length = acc = size = 0
        length ^= fec.length
        if size > fec.size or length > fec.size:
            self.malformed += 1  # the group does not match this parity packet
            return None
        body = (acc << (8 * (fec.size - size)) if size else 0) ^ \
            int.from_bytes(fec.payload, "big")
        head = bytes((0x80 | ((b0 ^ fec.b0) & 0x3F), b1 ^ fec.b1)) + \
            struct.pack("!HI", seq, ts ^ fec.ts) + ssrc
        return head + body.to_bytes(fec.size, "big")[:length]
