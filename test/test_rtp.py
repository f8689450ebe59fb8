"""RTP fixed header (RFC 3550), one-byte extensions (RFC 8285), UQ32.32 times, RFC 4571, SDP."""

from __future__ import annotations

import random
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vr_stream_ros.rtp.packet import (
    ABS_CAPTURE_TIME_URI,
    EXT_ABS_CAPTURE_TIME,
    EXT_FRAME_SEQ,
    FRAME_EXTMAP,
    FRAME_SEQ_URI,
    Rfc4571Decoder,
    RtpError,
    frame_extensions,
    frame_rfc4571,
    ns_to_uq32_32,
    pack_extensions,
    pack_header,
    parse_extensions,
    parse_packet,
    read_frame_extensions,
    uq32_32_to_ns,
)
from vr_stream_ros.rtp.sdp import make_sdp

_MAX_NS = (1 << 32) * 10**9 - 1  # UQ32.32 holds 2**32 seconds


@given(st.integers(min_value=0, max_value=_MAX_NS))
def test_uq32_32_round_trip_within_a_nanosecond(ns: int) -> None:
    assert abs(uq32_32_to_ns(ns_to_uq32_32(ns)) - ns) <= 1


def test_uq32_32_known_values() -> None:
    assert ns_to_uq32_32(1_500_000_000) == (1 << 32) | (1 << 31)  # 1.5 s
    assert ns_to_uq32_32(0) == 0
    assert uq32_32_to_ns(0xFFFFFFFF_00000000) == 0xFFFFFFFF * 10**9
    assert ns_to_uq32_32((1 << 32) * 10**9 + 7) == ns_to_uq32_32(7)  # seconds wrap


@given(pt=st.integers(0, 127), marker=st.booleans(), seq=st.integers(0, 0xFFFF),
       ts=st.integers(0, 0xFFFFFFFF), ssrc=st.integers(0, 0xFFFFFFFF),
       elements=st.dictionaries(st.integers(1, 14), st.binary(min_size=1, max_size=16),
                                max_size=6),
       payload=st.binary(max_size=64))
def test_header_and_extensions_round_trip(pt, marker, seq, ts, ssrc, elements, payload) -> None:
    ext = pack_extensions(elements)
    assert len(ext) % 4 == 0
    rtp = parse_packet(pack_header(pt, marker, seq, ts, ssrc, ext) + payload)
    assert (rtp.payload_type, rtp.marker, rtp.sequence, rtp.timestamp, rtp.ssrc) == (
        pt, marker, seq, ts, ssrc)
    assert rtp.extensions == elements
    assert bytes(rtp.payload) == payload


def test_frame_extensions_round_trip_and_layout() -> None:
    ext = frame_extensions(5_000_000_123, 0xDEADBEEF)
    assert ext[:2] == b"\xbe\xde" and len(ext) == 20  # 4-byte header + 9 + 5 + 2 padding
    rtp = parse_packet(pack_header(26, False, 1, 2, 3, ext) + b"x")
    assert set(rtp.extensions) == {EXT_ABS_CAPTURE_TIME, EXT_FRAME_SEQ}
    assert read_frame_extensions(rtp.extensions) == (5_000_000_123, 0xDEADBEEF)
    assert read_frame_extensions({}) == (None, None)
    assert read_frame_extensions({1: b"\x00" * 3, 2: b"\x01"}) == (None, None)
    # abs-capture-time with the optional 8-byte clock offset: the time is still read.
    long_form = {1: struct.pack("!Q", ns_to_uq32_32(10**9)) + b"\x00" * 8}
    assert read_frame_extensions(long_form)[0] == 10**9


def test_parser_skips_padding_csrcs_and_stops_at_id_15() -> None:
    # Element id 1 (2 bytes), two padding bytes, id 2 (1 byte), then id 15 ends the block.
    block = bytes([0x11, 0xAA, 0xBB, 0x00, 0x00, 0x20, 0xCC, 0xF0, 0x31, 0x01, 0x02, 0x00])
    assert parse_extensions(0xBEDE, block) == {1: b"\xaa\xbb", 2: b"\xcc"}
    assert parse_extensions(0x1000, block) == {}  # two-byte form: not ours, ignored
    csrcs = struct.pack("!II", 11, 22)
    packet = struct.pack("!BBHII", 0x80 | 0x20 | 0x10 | 2, 26, 7, 8, 9) + csrcs + \
        struct.pack("!HH", 0xBEDE, 3) + block + b"body" + b"\x00\x00\x03"
    rtp = parse_packet(packet)
    assert bytes(rtp.payload) == b"body" and rtp.extensions[2] == b"\xcc"


@pytest.mark.parametrize(("packet", "what"), [
    (b"\x80\x1a\x00", "shorter than the 12-byte header"),
    (struct.pack("!BBHII", 0x40, 26, 0, 0, 0), "version 1"),
    (struct.pack("!BBHII", 0x8F, 26, 0, 0, 0), "CSRCs run past"),
    (struct.pack("!BBHII", 0xA0, 26, 0, 0, 0) + b"ab\x09", "padding of 9 bytes"),
    (struct.pack("!BBHII", 0x90, 26, 0, 0, 0) + b"\xbe\xde", "extension header runs past"),
    (struct.pack("!BBHII", 0x90, 26, 0, 0, 0) + b"\xbe\xde\x00\x02abcd", "runs past the packet"),
    (struct.pack("!BBHII", 0x90, 26, 0, 0, 0) + b"\xbe\xde\x00\x01\x13abc", "run past the block"),
])
def test_bad_packets_are_refused_with_the_reason(packet: bytes, what: str) -> None:
    with pytest.raises(RtpError, match=what):
        parse_packet(packet).extensions  # noqa: B018 (elements are parsed on demand)


@settings(max_examples=3000, deadline=None)
@given(st.one_of(
    st.binary(max_size=80),
    # A version-2 first byte (CSRC count, padding, extension bits random) before random bytes.
    st.tuples(st.integers(0x80, 0xBF), st.binary(max_size=80)).map(
        lambda t: bytes([t[0]]) + t[1]),
    # A fixed header with the extension bit and a one-byte-profile block of random elements.
    st.tuples(st.integers(0, 4), st.binary(max_size=24)).map(
        lambda t: struct.pack("!BBHIIHH", 0x90, 26, 0, 0, 0, 0xBEDE, t[0]) + t[1]),
))
def test_parse_packet_parses_or_raises_rtp_error_only(datagram: bytes) -> None:
    """Arbitrary bytes parse (header and extension elements), or raise RtpError naming the
    fault: any other exception (struct.error, IndexError...) escapes and fails this test."""
    try:
        rtp = parse_packet(datagram)
        elements = rtp.extensions
    except RtpError as exc:
        assert str(exc), "RtpError must say what was wrong"
        return
    assert 0 <= rtp.payload_type <= 127 and len(rtp.payload) <= len(datagram) - 12
    assert all(1 <= k <= 14 and 1 <= len(v) <= 16 for k, v in elements.items())


def test_pack_refuses_what_the_one_byte_form_cannot_carry() -> None:
    with pytest.raises(RtpError, match=r"ids 1\.\.14"):
        pack_extensions({15: b"x"})
    with pytest.raises(RtpError, match="17 bytes"):
        pack_extensions({1: bytes(17)})
    with pytest.raises(RtpError, match="payload type 128"):
        pack_header(128, False, 0, 0, 0)
    assert pack_extensions({}) == b""


def _stream(packets: list[bytes]) -> bytes:
    return b"".join(frame_rfc4571(p) for p in packets)


def test_rfc4571_decoder_byte_by_byte_and_in_odd_chunks() -> None:
    rng = random.Random(7)
    packets = [rng.randbytes(rng.choice((0, 1, 2, 255, 256, 1400, 65535))) for _ in range(60)]
    stream = _stream(packets)
    decoder, out = Rfc4571Decoder(), []
    for i in range(len(stream)):  # one byte at a time
        out += decoder.feed(stream[i: i + 1])
    assert out == packets and decoder.buffered == 0
    for chunk in (2, 3, 1399, 1401, 65537, len(stream)):
        decoder, out = Rfc4571Decoder(), []
        for i in range(0, len(stream), chunk):
            out += decoder.feed(memoryview(stream)[i: i + chunk])
        assert out == packets, f"chunk {chunk}"
    decoder, out, i = Rfc4571Decoder(), [], 0
    while i < len(stream):  # random chunk sizes
        step = rng.randint(1, 5000)
        out += decoder.feed(stream[i: i + step])
        i += step
    assert out == packets


def test_rfc4571_reset_drops_a_partial_packet() -> None:
    decoder = Rfc4571Decoder()
    assert decoder.feed(frame_rfc4571(b"abcdef")[:4]) == []
    assert decoder.buffered == 4
    decoder.reset()
    assert decoder.feed(frame_rfc4571(b"new")) == [b"new"]


def test_rfc4571_refuses_a_packet_over_64k() -> None:
    with pytest.raises(RtpError, match="65536 bytes too long"):
        frame_rfc4571(bytes(65536))


def test_sdp_describes_the_stream_with_crlf_lines() -> None:
    sdp = make_sdp("127.0.0.1", 5004, extmap=FRAME_EXTMAP)
    assert sdp.endswith("\r\n") and "\n" not in sdp.replace("\r\n", "")
    lines = sdp.split("\r\n")[:-1]
    assert lines[0] == "v=0" and lines[2] == "s=vr_stream_ros"
    assert "c=IN IP4 127.0.0.1" in lines and "m=video 5004 RTP/AVP 26" in lines
    assert "a=rtpmap:26 JPEG/90000" in lines
    assert f"a=extmap:1 {ABS_CAPTURE_TIME_URI}" in lines
    assert f"a=extmap:2 {FRAME_SEQ_URI}" in lines
    assert "c=IN IP4 239.1.2.3/16" in make_sdp("239.1.2.3", 5004, extmap=None)
    assert "a=extmap" not in make_sdp("127.0.0.1", 5004, extmap={})
    assert "a=extmap" not in make_sdp("127.0.0.1", 5004)  # none unless asked for


@pytest.mark.parametrize(("kwargs", "what"), [
    ({"dest_ip": "headset.local"}, "dest_ip"),
    ({"port": 0}, "port"),
    ({"payload_type": 128}, "payload_type"),
    ({"encoding": "JPEG 2000"}, "encoding"),
    ({"clock_rate": 0}, "clock_rate"),
    ({"session_name": "a\r\nb"}, "session_name"),
    ({"extmap": {15: "urn:x"}}, "extmap"),
])
def test_sdp_refuses_bad_arguments_by_name(kwargs: dict, what: str) -> None:
    args = {"dest_ip": "127.0.0.1", "port": 5004, **kwargs}
    with pytest.raises(ValueError, match=f"SDP {what}"):
        make_sdp(**args)
