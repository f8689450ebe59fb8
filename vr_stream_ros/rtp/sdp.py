"""SDP (RFC 8866) describing the stream, for FFmpeg, VLC or GStreamer's sdpdemux.

    ffplay -protocol_whitelist file,udp,rtp -i stream.sdp

The SDP is the receiver's view (``a=recvonly``). RTCP shares the RTP port
(``a=rtcp-mux``, RFC 5761). Over TCP (RFC 4571) the media line says ``TCP/RTP/AVP``,
and ``a=setup:passive`` / ``a=connection:new`` (RFC 4145) say that the receiver
listens on that port and the sender (the bridge) connects to it.

Stereo: both eyes travel as ONE RTP/JPEG stream, one JPEG per pair, packed top_bottom (or
side_by_side when twice the width fits): RFC 2435 codes width and height in units of 8
pixels in one byte, so at most 2040 px per side, and 2x1280x720 packed top_bottom is
1280x1440. One JPEG per pair keeps both eyes under one RTP timestamp and one marker bit,
so a receiver never shows a left eye with another frame's right eye, loss and
concealment hit the pair together, and every existing RTP/JPEG receiver (FFmpeg,
GStreamer) decodes it unchanged. Two streams (one per eye, shared timestamp, bundled
with RFC 5888 ``a=group``) would double the RTCP state, NACK histories and jitter
buffers, and a receiver would have to re-pair frames that lose packets independently.

No standard SDP attribute says how a picture packs two eyes: the proposals
(draft-capelastegui-mmusic-3dv-sdp's ``a=3dvFormat``, 2012,
https://datatracker.ietf.org/doc/draft-capelastegui-mmusic-3dv-sdp/, and
draft-greevenbosch-mmusic-sdp-3d-format's ``a=3dFormat``) expired without becoming RFCs,
so the layout is a private media attribute, ``a=x-frame-layout:<layout>`` (``mono`` is
left out), which RFC 8866 section 5.13 lets receivers that do not know it ignore.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Mapping

from vr_stream_ros.camera.layout import check_layout
from vr_stream_ros.rtp.packet import EXT_FRAME_PACKETS as FRAME_PACKETS_ID
from vr_stream_ros.rtp.packet import FRAME_PACKETS_URI

FRAME_LAYOUT_ATTRIBUTE = "a=x-frame-layout:"
"""Private SDP attribute naming a stereo stream's packing (module docstring)."""


def frame_layout_of(sdp: str) -> str:
    """The frame layout an SDP announces: ``a=x-frame-layout:<layout>``, else mono."""
    for line in sdp.splitlines():
        if line.startswith(FRAME_LAYOUT_ATTRIBUTE):
            return check_layout(line[len(FRAME_LAYOUT_ATTRIBUTE):].strip(),
                                "SDP a=x-frame-layout")
    return "mono"


def make_sdp(dest_ip: str, port: int, payload_type: int = 26, encoding: str = "JPEG",
             clock_rate: int = 90000, extmap: Mapping[int, str] | None = None,
             session_name: str = "vr_stream_ros", transport: str = "udp",
             nack: bool = False, rtx_payload_type: int = 97, rtx_time_ms: int = 200,
             frame_layout: str = "mono", fec: bool = False,
             fec_payload_type: int = 98) -> str:
    """An SDP for one RTP video stream sent to ``dest_ip:port`` (CRLF line ends).

    ``transport`` is 'udp' (RTP/AVP) or 'tcp' (TCP/RTP/AVP, RFC 4571 framing).

    ``extmap`` maps RTP header extension ids to URIs (``a=extmap`` lines; None: none).
    Pass :data:`~vr_stream_ros.rtp.packet.FRAME_EXTMAP` to announce the two extensions our
    sender puts on every packet; receivers that do not know an extension ignore it.

    ``nack`` (UDP) announces generic NACK feedback (``a=rtcp-fb:<pt> nack``, RFC 4585),
    the RTX payload type that carries repairs (``apt``, ``rtx-time``: RFC 4588) and the
    frame-packets extension (id 3). A receiver that does not ask never gets RTX.

    ``frame_layout`` (stereo): ``side_by_side`` or ``top_bottom`` adds
    ``a=x-frame-layout:<layout>`` (see the module docstring); ``mono`` adds nothing.

    ``fec`` (UDP) announces the per-frame XOR parity packets (rtp/fec.py) as
    ``ulpfec/90000`` (RFC 5109's format) on ``fec_payload_type``, on their own SSRC.
    """
    check_layout(frame_layout, "SDP frame_layout")
    try:
        address = ipaddress.IPv4Address(dest_ip)
    except ValueError:
        raise ValueError(f"SDP dest_ip: got {dest_ip!r}, expected an IPv4 address") from None
    if not 1 <= port <= 65535:
        raise ValueError(f"SDP port: got {port}, expected 1..65535")
    if not 0 <= payload_type <= 127:
        raise ValueError(f"SDP payload_type: got {payload_type}, expected 0..127")
    if not encoding or any(c in encoding for c in " /\r\n"):
        raise ValueError(f"SDP encoding: got {encoding!r}, expected a name such as 'JPEG'")
    if transport not in ("udp", "tcp"):
        raise ValueError(f"SDP transport: got {transport!r}, expected 'udp' or 'tcp'")
    if clock_rate <= 0:
        raise ValueError(f"SDP clock_rate: got {clock_rate}, expected a positive rate in Hz")
    if any(c in session_name for c in "\r\n") or not session_name:
        raise ValueError(f"SDP session_name: got {session_name!r}, expected one non-empty line")
    extmap = dict(extmap or {})
    for ext_id, uri in extmap.items():
        if not 1 <= ext_id <= 14 or not uri or any(c in uri for c in " \r\n"):
            raise ValueError(f"SDP extmap: id {ext_id} -> {uri!r}; expected ids 1..14 "
                             "(one-byte RTP header extensions) mapped to URIs")
    if nack and (transport != "udp" or not 0 <= rtx_payload_type <= 127 or
                 rtx_payload_type == payload_type):
        raise ValueError(f"SDP nack: RTX payload type {rtx_payload_type} over {transport}; "
                         "expected UDP and a payload type 0..127 other than the media's")
    if fec and (transport != "udp" or not 0 <= fec_payload_type <= 127 or
                fec_payload_type in (payload_type, rtx_payload_type if nack else -1)):
        raise ValueError(f"SDP fec: payload type {fec_payload_type} over {transport}; "
                         "expected UDP and a payload type 0..127 of its own")
    if transport == "tcp" and address.is_multicast:
        raise ValueError(f"SDP dest_ip: {dest_ip} is multicast; RTP over TCP needs a unicast "
                         "receiver")
    # Multicast needs a TTL on the connection line (RFC 8866 5.7).
    connection = f"{dest_ip}/16" if address.is_multicast else dest_ip
    proto = "TCP/RTP/AVP" if transport == "tcp" else ("RTP/AVPF" if nack else "RTP/AVP")
    formats = f"{payload_type} {rtx_payload_type}" if nack else str(payload_type)
    formats += f" {fec_payload_type}" if fec else ""
    if nack:
        extmap.setdefault(FRAME_PACKETS_ID, FRAME_PACKETS_URI)
    session_id = time.time_ns() // 1000
    lines = [
        "v=0",
        f"o=- {session_id} 1 IN IP4 {dest_ip}",
        f"s={session_name}",
        f"c=IN IP4 {connection}",
        "t=0 0",
        f"m=video {port} {proto} {formats}",
        f"a=rtpmap:{payload_type} {encoding}/{clock_rate}",
        "a=rtcp-mux",  # sender reports and receiver reports use the RTP port
    ]
    if nack:
        lines += [f"a=rtcp-fb:{payload_type} nack",
                  f"a=rtpmap:{rtx_payload_type} rtx/{clock_rate}",
                  f"a=fmtp:{rtx_payload_type} apt={payload_type};rtx-time={rtx_time_ms}"]
    if fec:
        lines.append(f"a=rtpmap:{fec_payload_type} ulpfec/{clock_rate}")
    if transport == "tcp":
        lines += ["a=setup:passive", "a=connection:new"]
    lines += [f"a=extmap:{ext_id} {uri}" for ext_id, uri in sorted(extmap.items())]
    if frame_layout != "mono":
        lines.append(f"{FRAME_LAYOUT_ATTRIBUTE}{frame_layout}")
    lines.append("a=recvonly")
    return "\r\n".join(lines) + "\r\n"
