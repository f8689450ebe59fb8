"""RFC 2435 RTP/JPEG: packetize, reassemble, rebuild the JPEG, decode, read the stamp."""

from __future__ import annotations

import random
import re
import struct

import cv2
import numpy as np
import pytest
import simplejpeg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vr_stream_ros.camera.pattern import PatternGenerator, read_stamp
from vr_stream_ros.rtp.jpeg import (
    JpegDepacketizer,
    JpegFormatError,
    JpegPacketizer,
    MalformedPacket,
    jpeg_headers,
    parse_jpeg,
    parse_jpeg_packet,
    standard_qtables,
)
from vr_stream_ros.rtp.packet import pack_header, parse_packet

W, H = 1280, 720


def _frame_jpeg(frame: int = 42, subsampling: str = "420", w: int = W, h: int = H) -> bytes:
    image = PatternGenerator(w, h).render(frame, 1_000_000_000 + frame)
    return simplejpeg.encode_jpeg(image, 80, "RGB", subsampling)


def _stamp_of(jpeg: bytes) -> int | None:
    stamp = read_stamp(simplejpeg.decode_jpeg(jpeg, colorspace="RGB"))
    return stamp.frame if stamp else None


@pytest.mark.parametrize("subsampling", ["420", "422"])
def test_packetize_shuffle_depacketize_decode(subsampling: str) -> None:
    jpeg = _frame_jpeg(42, subsampling)
    packets = JpegPacketizer(ssrc=7, mtu=1400).packetize(jpeg, 90_000, 5_000_000_123, 42)
    assert len(packets) > 10 and max(len(p) for p in packets) <= 1400
    parsed = [parse_packet(p) for p in packets]
    assert [p.marker for p in parsed] == [False] * (len(packets) - 1) + [True]
    assert [p.sequence for p in parsed] == list(range(len(packets)))
    assert all(p.extensions.keys() == {1, 2} for p in parsed)  # on every packet
    assert parsed[0].payload[4] == (1 if subsampling == "420" else 0)  # RFC 2435 type
    assert parsed[0].payload[5] == 255  # Q: tables in-band
    random.Random(1).shuffle(packets)
    depacketizer = JpegDepacketizer()
    frames = [f for p in packets for f in depacketizer.push(p, 1000)]
    assert len(frames) == 1 and depacketizer.frames_incomplete == 0
    frame = frames[0]
    assert (frame.capture_ns, frame.frame_seq, frame.rtp_timestamp) == (5_000_000_123, 42, 90_000)
    assert frame.packets == len(packets)
    assert frame.jpeg.startswith(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00")
    assert _stamp_of(frame.jpeg) == 42
    # Rebuilt from RTP/JPEG headers alone, the image is the sender's bit for bit.
    assert np.array_equal(simplejpeg.decode_jpeg(frame.jpeg), simplejpeg.decode_jpeg(jpeg))


def test_stream_of_frames_in_order_with_one_packet_dropped() -> None:
    packetizer, depacketizer = JpegPacketizer(ssrc=7), JpegDepacketizer()
    got = []
    for n in range(6):
        packets = packetizer.packetize(_frame_jpeg(n), 3000 * n, n, n)
        if n == 2:
            del packets[len(packets) // 2]
        for p in packets:
            got += depacketizer.push(p, n)
    assert [f.frame_seq for f in got] == [0, 1, 3, 4, 5]
    assert [_stamp_of(f.jpeg) for f in got] == [0, 1, 3, 4, 5]
    assert depacketizer.frames_complete == 5
    assert depacketizer.frames_incomplete == 1
    assert depacketizer.packets_lost == 1
    assert depacketizer.pending == 0


def test_lost_marker_packet_is_counted_when_the_next_frame_completes() -> None:
    packetizer, depacketizer = JpegPacketizer(ssrc=7), JpegDepacketizer()
    first = packetizer.packetize(_frame_jpeg(1), 1000, 1, 1)[:-1]
    second = packetizer.packetize(_frame_jpeg(2), 4000, 2, 2)
    assert [f for p in first for f in depacketizer.push(p, 0)] == []
    assert depacketizer.frames_incomplete == 0
    frames = [f for p in second for f in depacketizer.push(p, 0)]
    assert [f.frame_seq for f in frames] == [2] and depacketizer.frames_incomplete == 1
    # A straggler of the given-up frame is ignored, not resurrected.
    assert depacketizer.push(packetizer.packetize(_frame_jpeg(1), 1000, 1, 1)[-1], 0) == []
    assert depacketizer.flush() == 0


@pytest.mark.parametrize("mtu", [256, 576, 1200, 1400, 9000])
def test_every_datagram_fits_the_mtu_and_frames_survive(mtu: int) -> None:
    jpeg = _frame_jpeg(9)
    packets = JpegPacketizer(ssrc=1, mtu=mtu).packetize(jpeg, 0, 0, 9)
    assert max(len(p) for p in packets) <= mtu
    assert sum(len(p) == mtu for p in packets) >= len(packets) - 1  # full except the last
    depacketizer = JpegDepacketizer()
    frames = [f for p in packets for f in depacketizer.push(p, 0)]
    assert len(frames) == 1 and _stamp_of(frames[0].jpeg) == 9


def test_sequence_numbers_run_on_and_wrap_across_frames() -> None:
    packetizer = JpegPacketizer(ssrc=1)
    packetizer.sequence = 0xFFFE
    depacketizer = JpegDepacketizer()
    seqs = []
    for n in range(3):
        packets = packetizer.packetize(_frame_jpeg(n, w=320, h=240), n * 3000, n, n)
        seqs += [parse_packet(p).sequence for p in packets]
        assert len([f for p in packets for f in depacketizer.push(p, 0)]) == 1
    assert seqs == [(0xFFFE + i) & 0xFFFF for i in range(len(seqs))]
    assert depacketizer.cycles == 1 and depacketizer.packets_lost == 0


def test_unsupported_jpeg_is_refused_with_reason() -> None:
    image = PatternGenerator(640, 480).render(0, 0)
    pack = JpegPacketizer(1).packetize
    with pytest.raises(JpegFormatError, match=r"4:4:4 cannot be sent.*supports 4:2:0"):
        pack(simplejpeg.encode_jpeg(image, 80, "RGB", "444"), 0, 0, 0)
    with pytest.raises(JpegFormatError, match="3 components"):
        pack(simplejpeg.encode_jpeg(np.ascontiguousarray(image[:, :, :1]), 80, "GRAY"), 0, 0, 0)
    with pytest.raises(JpegFormatError, match="multiples of 8"):
        pack(simplejpeg.encode_jpeg(np.zeros((100, 130, 3), np.uint8), 80, "RGB", "420"), 0, 0, 0)
    with pytest.raises(JpegFormatError, match=r"multiples of 8 in 8\.\.2040"):
        pack(simplejpeg.encode_jpeg(np.zeros((16, 2048, 3), np.uint8), 80, "RGB", "420"), 0, 0, 0)
    _ok, progressive = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])
    with pytest.raises(JpegFormatError, match="baseline"):
        pack(progressive.tobytes(), 0, 0, 0)
    _ok, optimised = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_OPTIMIZE, 1])
    with pytest.raises(JpegFormatError, match=r"Huffman table .* not the standard"):
        pack(optimised.tobytes(), 0, 0, 0)
    with pytest.raises(JpegFormatError, match="not a JPEG"):
        pack(b"hello", 0, 0, 0)
    header_only = _frame_jpeg(0, w=320, h=240)
    with pytest.raises(JpegFormatError, match="runs past the end"):
        pack(header_only[:300], 0, 0, 0)
    with pytest.raises(JpegFormatError, match="before its SOS"):
        pack(header_only[: header_only.index(b"\xff\xda")], 0, 0, 0)
    with pytest.raises(ValueError, match="parameter 'mtu'"):
        JpegPacketizer(1, mtu=100)


def test_restart_markers_travel_as_type_65() -> None:
    image = PatternGenerator(640, 480).render(5, 0)
    _ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 80,
                                           cv2.IMWRITE_JPEG_RST_INTERVAL, 4])
    parsed = parse_jpeg(buf.tobytes())
    assert parsed.restart_interval == 4 and parsed.jpeg_type == 65
    packets = JpegPacketizer(1).packetize(buf.tobytes(), 0, 0, 5)
    depacketizer = JpegDepacketizer()
    frames = [f for p in packets for f in depacketizer.push(p, 0)]
    assert len(frames) == 1 and b"\xff\xdd\x00\x04\x00\x04" in frames[0].jpeg
    assert _stamp_of(frames[0].jpeg) == 5


def test_standard_tables_match_libjpeg_turbo() -> None:
    """Our RFC 2435 Appendix A/B tables are exactly what libjpeg-turbo writes."""
    for quality in (1, 10, 49, 50, 51, 80, 99):
        jpeg = simplejpeg.encode_jpeg(np.zeros((16, 16, 3), np.uint8), quality, "RGB", "420")
        assert standard_qtables(quality) == parse_jpeg(jpeg).qtables, quality
        headers = jpeg_headers(1, 16, 16, standard_qtables(quality))
        dht = jpeg[jpeg.index(b"\xff\xc4"): jpeg.index(b"\xff\xda")]
        assert dht in headers
    assert standard_qtables(127) == standard_qtables(99)  # RFC: Q clamps to 1..99


def _with_q(packets: list[bytes], q: int, keep_tables: bool) -> list[bytes]:
    """Rewrite a frame's packets to Q ``q``, keeping or dropping the in-band tables."""
    out = []
    for i, p in enumerate(packets):
        rtp = parse_packet(p)
        head = p[: len(p) - len(rtp.payload)]
        main = bytearray(rtp.payload[:8])
        main[5] = q
        rest = bytes(rtp.payload[8:])
        if i == 0 and q < 128:  # no table header at all
            rest = rest[132:]
        elif i == 0 and not keep_tables:  # a table header of length 0
            rest = b"\x00\x00\x00\x00" + rest[132:]
        out.append(head + bytes(main) + rest)
    return out


def test_q_below_128_uses_scaled_standard_tables() -> None:
    image = PatternGenerator(320, 240).render(11, 0)
    jpeg = simplejpeg.encode_jpeg(image, 50, "RGB", "420")  # libjpeg q50 == RFC Q 50
    packets = _with_q(JpegPacketizer(1).packetize(jpeg, 0, 0, 11), 50, keep_tables=False)
    depacketizer = JpegDepacketizer()
    frames = [f for p in packets for f in depacketizer.push(p, 0)]
    assert len(frames) == 1
    assert np.array_equal(simplejpeg.decode_jpeg(frames[0].jpeg), simplejpeg.decode_jpeg(jpeg))


def test_q_128_to_254_tables_are_cached_when_a_sender_omits_them() -> None:
    packetizer, depacketizer = JpegPacketizer(1), JpegDepacketizer()
    jpegs = [_frame_jpeg(n, w=320, h=240) for n in range(3)]
    first = _with_q(packetizer.packetize(jpegs[0], 0, 0, 0), 200, keep_tables=True)
    later = _with_q(packetizer.packetize(jpegs[1], 3000, 0, 1), 200, keep_tables=False)
    unknown = _with_q(packetizer.packetize(jpegs[2], 6000, 0, 2), 201, keep_tables=False)
    got = [f for p in first + later + unknown for f in depacketizer.push(p, 0)]
    assert [_stamp_of(f.jpeg) for f in got] == [0, 1]
    assert depacketizer.frames_incomplete == 1  # Q 201: tables never sent


def test_duplicates_and_a_restarted_sender_are_not_counted_as_loss() -> None:
    depacketizer = JpegDepacketizer()
    first = JpegPacketizer(ssrc=1).packetize(_frame_jpeg(1, w=320, h=240), 0, 0, 1)
    restarted = JpegPacketizer(ssrc=1)
    restarted.sequence = 30000
    second = restarted.packetize(_frame_jpeg(2, w=320, h=240), 3000, 0, 2)
    third = JpegPacketizer(ssrc=2).packetize(_frame_jpeg(3, w=320, h=240), 6000, 0, 3)
    got = [f for p in first + first[:2] + second + third for f in depacketizer.push(p, 0)]
    assert [f.frame_seq for f in got] == [1, 2, 3]
    assert depacketizer.packets_lost == 0 and depacketizer.frames_incomplete == 0


def test_a_bytearray_packet_is_copied_not_aliased() -> None:
    packets = JpegPacketizer(1).packetize(_frame_jpeg(4, w=320, h=240), 0, 0, 4)
    depacketizer, frames = JpegDepacketizer(), []
    buffer = bytearray(2048)
    for p in packets:  # like recv_into one reused buffer
        buffer[: len(p)] = p
        frames += depacketizer.push(memoryview(buffer)[: len(p)], 0)
        buffer[:] = bytes(len(buffer))
    assert len(frames) == 1 and _stamp_of(frames[0].jpeg) == 4


_VALID = JpegPacketizer(ssrc=9, mtu=600).packetize(_frame_jpeg(3, w=320, h=240), 77, 1, 3)
_VALID_RESTART = JpegPacketizer(ssrc=9, mtu=600).packetize(
    cv2.imencode(".jpg", PatternGenerator(320, 240).render(4, 0),
                 [cv2.IMWRITE_JPEG_RST_INTERVAL, 2])[1].tobytes(), 80, 1, 4)


def _rtp_jpeg_header(tail: bytes) -> bytes:
    """An RTP header of our payload type followed by ``tail`` (RFC 2435 header and data)."""
    return pack_header(26, True, 1, 1, 1) + tail


# Random bytes; valid packets with one byte changed, cut short, or both; a valid RTP
# header before random RFC 2435 headers (types 64/65 and Q >= 128 with short payloads).
_DATAGRAMS = st.one_of(
    st.binary(max_size=64),
    st.tuples(st.sampled_from(_VALID + _VALID_RESTART), st.integers(0, 700),
              st.integers(0, 255), st.integers(0, 700)).map(
        lambda t: (bytes(t[0][:t[1] % len(t[0])]) + bytes([t[2]]) + t[0][t[1] % len(t[0]) + 1:])
        [: t[3]]),
    st.tuples(st.sampled_from(_VALID + _VALID_RESTART), st.integers(0, 700)).map(
        lambda t: t[0][: t[1]]),
    st.binary(max_size=300).map(_rtp_jpeg_header),
    st.tuples(st.sampled_from([0, 1, 64, 65]), st.integers(1, 255), st.binary(max_size=140))
    .map(lambda t: _rtp_jpeg_header(bytes([0, 0, 0, 0, t[0], t[1], 40, 30]) + t[2])),
)


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_DATAGRAMS)
def test_packet_parser_parses_or_raises_malformed_packet_only(datagram: bytes) -> None:
    """Arbitrary bytes parse, or raise MalformedPacket naming the fault: any other
    exception (KeyError, struct.error, IndexError...) escapes and fails this test."""
    try:
        fragment = parse_jpeg_packet(datagram)
    except MalformedPacket as exc:
        assert str(exc), "MalformedPacket must say what was wrong"
        return
    assert fragment.jpeg_type & 63 in (0, 1) and fragment.q > 0
    assert fragment.width > 0 and fragment.height > 0
    assert fragment.qtables is None or len(fragment.qtables) == 128


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_DATAGRAMS, min_size=1, max_size=30))
def test_depacketizer_never_raises_on_random_or_mutated_packets(items) -> None:
    """push catches MalformedPacket only: a bug in reassembly raises here."""
    depacketizer = JpegDepacketizer()
    for item in items:
        for frame in depacketizer.push(item, 0):
            assert isinstance(frame.jpeg, bytes)
    d = depacketizer
    assert d.packets + d.malformed == len(items)


@pytest.mark.parametrize(("datagram", "what"), [
    (b"\x00" * 5, "shorter than the 12-byte header"),
    (struct.pack("!BBHII", 0x80, 96, 1, 1, 1) + b"x" * 20, "payload type 96, expected 26"),
    (_rtp_jpeg_header(b"\x00" * 4), "payload of 4 bytes, shorter than the 8-byte"),
    (_rtp_jpeg_header(bytes([0, 0, 0, 0, 7, 255, 40, 30])), "type 7, Q 255"),
    (_rtp_jpeg_header(bytes([0, 0, 0, 0, 65, 90, 40, 30, 0, 4])), "4-byte restart marker"),
    (_rtp_jpeg_header(bytes([0, 0, 0, 0, 1, 255, 40, 30, 0, 0])), "quantisation table header"),
    (_rtp_jpeg_header(bytes([0, 0, 0, 0, 1, 255, 40, 30, 0, 0, 0, 128]) + bytes(60)),
     "128 bytes; expected 8-bit tables of 64 bytes within the payload"),
    (_rtp_jpeg_header(bytes([0, 0, 0, 0, 1, 255, 40, 30, 0, 1, 0, 64]) + bytes(64)),
     "precision 1"),
])
def test_malformed_packet_names_what_was_expected(datagram: bytes, what: str) -> None:
    with pytest.raises(MalformedPacket, match=re.escape(what)):
        parse_jpeg_packet(datagram)
    depacketizer = JpegDepacketizer()
    assert depacketizer.push(datagram, 0) == [] and depacketizer.malformed == 1


def test_depacketizer_lets_programming_errors_through() -> None:
    """Only MalformedPacket is counted: a wrong argument type is the caller's bug."""
    with pytest.raises(TypeError):
        JpegDepacketizer().push("not a buffer", 0)  # type: ignore[arg-type]


def test_a_frame_of_endless_overlapping_fragments_is_given_up() -> None:
    """Junk with one timestamp that never completes cannot grow a frame without bound."""
    depacketizer = JpegDepacketizer()
    payload = bytes([0, 0, 0, 0, 1, 255, 160, 90]) + b"\x00\x00\x00\x00" + bytes(1300)
    for i in range(20_000):  # ~26 MB at offsets 0, 1, 2, ...: overlapping, never contiguous
        main = bytearray(payload[:8])
        main[1:4] = (i + 1).to_bytes(3, "big")
        depacketizer.push(pack_header(26, False, i & 0xFFFF, 5, 1) + bytes(main) + payload[12:],
                          0)
        if depacketizer.frames_incomplete:
            break
    assert depacketizer.frames_incomplete == 1 and depacketizer.pending == 0
    assert i < 15_000 and depacketizer.malformed == 0
