"""RTP, RFC 8285 extensions, RFC 4571 framing and RFC 2435 RTP/JPEG round trips."""

from __future__ import annotations

import random
import struct

import numpy as np
import pytest
import simplejpeg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vr_stream_ros.rtp import (
    Rfc4571Decoder,
    frame_rfc4571,
    ns_to_uq32_32,
    pack_extensions,
    pack_header,
    parse_packet,
    read_frame_extensions,
    uq32_32_to_ns,
)
from vr_stream_ros.rtp_jpeg import JpegDepacketizer, JpegFormatError, JpegPacketizer
from vr_stream_ros.synthetic_pattern import PatternGenerator, read_stamp


def _frame_jpeg(frame: int = 42, subsampling: str = "420", w: int = 1280, h: int = 720):
    image = PatternGenerator(w, h).render(frame, 1_000_000_000 + frame)
    return simplejpeg.encode_jpeg(image, 80, "RGB", subsampling)


@given(st.integers(min_value=0, max_value=(1 << 32) * 10**9 - 1))
def test_uq32_32_round_trip_within_a_nanosecond(ns: int) -> None:
    assert abs(uq32_32_to_ns(ns_to_uq32_32(ns)) - ns) <= 1


def test_header_and_extensions_round_trip() -> None:
    ext = pack_extensions({1: b"\x01" * 8, 2: b"\x00\x00\x01\x02"})
    packet = pack_header(26, True, 65535, 0xDEADBEEF, 0x1234, ext) + b"payload"
    rtp = parse_packet(packet)
    assert (rtp.payload_type, rtp.marker, rtp.sequence, rtp.timestamp, rtp.ssrc) == (
        26, True, 65535, 0xDEADBEEF, 0x1234)
    assert rtp.extensions == {1: b"\x01" * 8, 2: b"\x00\x00\x01\x02"}
    assert bytes(rtp.payload) == b"payload"


def test_rfc4571_decoder_handles_any_chunking() -> None:
    packets = [bytes([i]) * (i * 37 % 1500 + 1) for i in range(40)]
    stream = b"".join(frame_rfc4571(p) for p in packets)
    for chunk in (1, 3, 1000, len(stream)):
        decoder, out = Rfc4571Decoder(), []
        for i in range(0, len(stream), chunk):
            out += decoder.feed(stream[i: i + chunk])
        assert out == packets


@pytest.mark.parametrize("subsampling", ["420", "422"])
def test_packetize_shuffle_depacketize_decode(subsampling: str) -> None:
    jpeg = _frame_jpeg(42, subsampling)
    packets = JpegPacketizer(ssrc=7, mtu=1400).packetize(jpeg, 90_000, 5_000_000_123, 42)
    assert len(packets) > 10 and max(len(p) for p in packets) <= 1400
    assert [parse_packet(p).marker for p in packets] == [False] * (len(packets) - 1) + [True]
    random.Random(1).shuffle(packets)
    depacketizer = JpegDepacketizer()
    frames = [f for p in packets for f in depacketizer.push(p, 0)]
    assert len(frames) == 1 and depacketizer.frames_incomplete == 0
    frame = frames[0]
    assert frame.capture_ns == 5_000_000_123 and frame.frame_seq == 42
    stamp = read_stamp(simplejpeg.decode_jpeg(frame.jpeg, colorspace="RGB"))
    assert stamp is not None and stamp.frame == 42


def test_lost_packet_makes_frame_incomplete_and_next_frame_still_decodes() -> None:
    packetizer, depacketizer = JpegPacketizer(ssrc=7), JpegDepacketizer()
    first = packetizer.packetize(_frame_jpeg(1), 1000, 1, 1)
    second = packetizer.packetize(_frame_jpeg(2), 4000, 2, 2)
    del first[3]
    frames = [f for p in first + second for f in depacketizer.push(p, 0)]
    assert [f.frame_seq for f in frames] == [2]
    assert depacketizer.frames_incomplete == 1
    assert depacketizer.packets_lost == 1


def test_unsupported_jpeg_is_refused_with_reason() -> None:
    image = PatternGenerator(640, 480).render(0, 0)
    with pytest.raises(JpegFormatError, match="4:2:0 or 4:2:2"):
        JpegPacketizer(1).packetize(simplejpeg.encode_jpeg(image, 80, "RGB", "444"), 0, 0, 0)
    with pytest.raises(JpegFormatError, match="multiples of 8"):
        odd = simplejpeg.encode_jpeg(np.zeros((100, 130, 3), np.uint8), 80, "RGB", "420")
        JpegPacketizer(1).packetize(odd, 0, 0, 0)
    with pytest.raises(JpegFormatError, match="not a JPEG"):
        JpegPacketizer(1).packetize(b"hello", 0, 0, 0)


_VALID = JpegPacketizer(ssrc=9, mtu=600).packetize(_frame_jpeg(3, w=320, h=240), 77, 1, 3)


@settings(max_examples=10_000, deadline=None,  # ~100k packets: 10 per example on average
          suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(
    st.binary(max_size=64),
    st.tuples(st.sampled_from(_VALID), st.integers(0, 700), st.integers(0, 255)),
), min_size=1, max_size=20))
def test_depacketizer_never_raises_on_random_or_mutated_packets(items) -> None:
    depacketizer = JpegDepacketizer()
    for item in items:
        if isinstance(item, tuple):  # a valid packet with one byte changed
            packet, pos, value = item
            packet = bytearray(packet)
            packet[pos % len(packet)] = value
            item = bytes(packet)
        for frame in depacketizer.push(item, 0):
            assert isinstance(frame.jpeg, bytes)


def test_depacketizer_counts_non_rtp_as_malformed() -> None:
    depacketizer = JpegDepacketizer()
    assert depacketizer.push(b"\x00" * 5, 0) == []
    assert depacketizer.push(struct.pack("!BBHII", 0x80, 96, 1, 1, 1) + b"x" * 20, 0) == []
    assert depacketizer.malformed == 2


def test_frame_extensions_absent_give_none() -> None:
    assert read_frame_extensions({}) == (None, None)
