"""RFC 4588 retransmission packets (SSRC-multiplexed RTX).

Why RTX rather than re-sending the original packet on its own SSRC: a receiver's
statistics (RFC 3550 loss, jitter) stay about the network, not about repairs; the
repaired packet cannot be confused with a duplicate; and a receiver that never asks
(GStreamer, FFmpeg from the SDP) never sees an RTX packet at all. The cost is two
bytes per resent packet (the original sequence number, OSN).

An RTX packet keeps the original's timestamp, marker bit and header extensions, and
has its own payload type (``a=fmtp:<rtx> apt=<original>``), SSRC and sequence numbers.
"""

from __future__ import annotations

import struct

from vr_stream_ros.rtp.packet import RtpError, RtpPacket, pack_header, parse_packet

RTX_PAYLOAD_TYPE = 97
_EXT_HEADER = struct.Struct("!HH")
_OSN = struct.Struct("!H")


def _extension_block(packet: RtpPacket) -> bytes:
    if packet.extension_data is None:
        return b""
    data = bytes(packet.extension_data)
    return _EXT_HEADER.pack(packet.extension_profile, len(data) // 4) + data


def rtx_packet(original: bytes, rtx_payload_type: int, rtx_ssrc: int, rtx_seq: int) -> bytes:
    """The RTX packet carrying ``original`` (an RTP packet as sent)."""
    rtp = parse_packet(original)
    return pack_header(rtx_payload_type, rtp.marker, rtx_seq, rtp.timestamp, rtx_ssrc,
                       _extension_block(rtp)) + _OSN.pack(rtp.sequence) + bytes(rtp.payload)


def restore_original(rtx: RtpPacket, payload_type: int, media_ssrc: int) -> bytes:
    """The original packet an RTX packet carries; RtpError if it has no OSN."""
    if len(rtx.payload) < 2:
        raise RtpError(f"RTX packet seq {rtx.sequence}: payload of {len(rtx.payload)} bytes, "
                       "expected the 2-byte original sequence number first")
    osn = _OSN.unpack_from(rtx.payload)[0]
    return pack_header(payload_type, rtx.marker, osn, rtx.timestamp, media_ssrc,
                       _extension_block(rtx)) + bytes(rtx.payload[2:])
