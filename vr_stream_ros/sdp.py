"""SDP (RFC 8866) describing the stream, for FFmpeg, VLC or GStreamer's sdpdemux."""

from __future__ import annotations

import ipaddress
import time


def make_sdp(dest_ip: str, port: int, payload_type: int = 26, encoding: str = "JPEG",
             clock_rate: int = 90000, extmap: dict[int, str] | None = None,
             session_name: str = "vr_stream_ros") -> str:
    """An SDP for one RTP video stream sent to ``dest_ip:port`` (CRLF line ends)."""
    ipaddress.IPv4Address(dest_ip)  # ValueError for anything else
    if not 1 <= port <= 65535:
        raise ValueError(f"SDP port: got {port}, expected 1..65535")
    session_id = time.time_ns() // 1000
    lines = [
        "v=0",
        f"o=- {session_id} 1 IN IP4 {dest_ip}",
        f"s={session_name}",
        f"c=IN IP4 {dest_ip}",
        "t=0 0",
        f"m=video {port} RTP/AVP {payload_type}",
        f"a=rtpmap:{payload_type} {encoding}/{clock_rate}",
    ]
    for ext_id, uri in sorted((extmap or {}).items()):
        lines.append(f"a=extmap:{ext_id} {uri}")
    lines.append("a=recvonly")
    return "\r\n".join(lines) + "\r\n"
