"""The SDP the bridge writes for receivers: RTP over UDP with rtcp-mux, RTP over TCP."""

from __future__ import annotations

import pytest

from vr_stream_ros.rtp.packet import FRAME_EXTMAP
from vr_stream_ros.rtp.sdp import make_sdp


def _lines(sdp: str) -> list[str]:
    assert sdp.endswith("\r\n")
    return sdp.split("\r\n")[:-1]


def test_udp_sdp_says_rtcp_shares_the_rtp_port() -> None:
    lines = _lines(make_sdp("192.168.1.100", 5004, extmap=FRAME_EXTMAP))
    assert "m=video 5004 RTP/AVP 26" in lines
    assert "a=rtcp-mux" in lines  # RFC 5761: the bridge's SRs and the RRs use port 5004
    assert not any(line.startswith(("a=setup", "a=connection")) for line in lines)


def test_tcp_sdp_is_rfc_4571_with_the_receiver_listening() -> None:
    lines = _lines(make_sdp("192.168.1.100", 5004, extmap=FRAME_EXTMAP, transport="tcp"))
    assert "c=IN IP4 192.168.1.100" in lines
    assert "m=video 5004 TCP/RTP/AVP 26" in lines  # RFC 4571
    assert "a=setup:passive" in lines  # RFC 4145: the receiver accepts, the bridge connects
    assert "a=connection:new" in lines
    assert "a=rtcp-mux" in lines
    assert "a=rtpmap:26 JPEG/90000" in lines and lines[-1] == "a=recvonly"
    # Media-level attributes come after the m= line.
    m = lines.index("m=video 5004 TCP/RTP/AVP 26")
    assert m < lines.index("a=setup:passive") and m < lines.index("a=rtcp-mux")


@pytest.mark.parametrize(("kwargs", "what"), [
    ({"transport": "sctp"}, "transport"),
    ({"transport": "tcp", "dest_ip": "239.1.2.3"}, "dest_ip"),
])
def test_bad_transport_is_named(kwargs: dict, what: str) -> None:
    args = {"dest_ip": "127.0.0.1", "port": 5004, **kwargs}
    with pytest.raises(ValueError, match=f"SDP {what}"):
        make_sdp(**args)
