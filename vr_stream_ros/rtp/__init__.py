"""RTP: packets and header extensions, RTP/JPEG (RFC 2435), RTCP, headset feedback, SDP."""
