"""Restart intervals cut at packet boundaries (RFC 2435 3.1.7) and stripe concealment."""

from __future__ import annotations

import numpy as np
import pytest
import simplejpeg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vr_stream_ros.camera.pattern import PatternGenerator
from vr_stream_ros.codecs.jpeg import JpegEncoder
from vr_stream_ros.rtp.conceal import RST, interval_count, split_intervals
from vr_stream_ros.rtp.jpeg import JpegDepacketizer, JpegPacketizer, parse_jpeg_packet

W, H, ROW = 1280, 720, 80  # 80 MCUs: one interval per 16-pixel row


def _stream(frames: int, interval: int = ROW, mtu: int = 1400
            ) -> tuple[list[np.ndarray], list[list[bytes]]]:
    """(each frame decoded whole, each frame's packets)."""
    pattern, encoder = PatternGenerator(W, H), JpegEncoder(80, "420", "rgb8", interval)
    packetizer = JpegPacketizer(ssrc=3, mtu=mtu)
    whole, packets = [], []
    for i in range(frames):
        jpeg = encoder.encode(pattern.render(i, i * 16_666_667))
        whole.append(simplejpeg.decode_jpeg(jpeg, "RGB"))
        packets.append(packetizer.packetize(jpeg, i * 1500, i, i))
    return whole, packets


def test_packets_start_on_interval_boundaries_and_name_their_first_interval() -> None:
    _whole, packets = _stream(1, interval=40)
    n = interval_count(1, W, H, 40)
    seen = 0
    for packet in packets[0]:
        f = parse_jpeg_packet(packet)
        assert f.restart_interval == 40 and f.jpeg_type == 65
        assert f.restart_word >> 14 == 3  # F = L = 1: whole intervals only at this size
        assert f.restart_word & 0x3FFF == seen
        pieces = [p for p in split_intervals(f.data) if p]
        assert all(RST.fullmatch(p[-2:]) for p in pieces[:-1])
        seen += len(pieces)
    assert seen == n == 90


def test_a_big_interval_goes_in_fragments_marked_first_and_last() -> None:
    _whole, packets = _stream(1, interval=ROW * 4, mtu=600)  # ~3 kB intervals, 600-byte packets
    words = [parse_jpeg_packet(p).restart_word for p in packets[0]]
    assert words[0] >> 14 == 2  # F only: the first of several fragments
    assert any(w >> 14 == 0 for w in words)  # a middle fragment
    assert any(w >> 14 == 1 for w in words)  # L only: the last
    d = JpegDepacketizer()
    assert len([f for p in packets[0] for f in d.push(p, 0)]) == 1


def test_a_lost_packet_costs_its_stripes_shown_from_the_previous_frame() -> None:
    whole, packets = _stream(3)
    lost = packets[1][5]
    first = parse_jpeg_packet(lost).restart_word & 0x3FFF
    rows = len(RST.findall(bytes(parse_jpeg_packet(lost).data)))
    d = JpegDepacketizer(conceal=True)
    out = [f for i, frame in enumerate(packets) for p in frame if p is not lost
           for f in d.push(p, i)]
    assert [f.frame_seq for f in out] == [0, 1, 2]
    assert out[1].stale == pytest.approx(rows / 45)
    shown = simplejpeg.decode_jpeg(out[1].jpeg, "RGB")
    # libjpeg's fancy 4:2:0 upsampling blends chroma across a stripe's edge: one pixel row
    # each side belongs to both frames, so the comparison leaves those out.
    top, bottom = 16 * first, 16 * (first + rows)
    inner = slice(top + 1, bottom - 1)
    assert np.array_equal(shown[inner], whole[0][inner])  # the previous frame there
    rest = np.ones(H, bool)
    rest[top - 1: bottom + 1] = False
    assert np.array_equal(shown[rest], whole[1][rest])  # this frame everywhere else
    assert not np.array_equal(whole[0][inner], whole[1][inner])  # the test can tell
    assert d.concealer.frames_concealed == 1 and d.frames_incomplete == 1


def test_without_a_previous_frame_nothing_is_concealed() -> None:
    _whole, packets = _stream(2)
    d = JpegDepacketizer(conceal=True)
    out = [f for i, frame in enumerate(packets) for k, p in enumerate(frame)
           if (i, k) != (0, 2) for f in d.push(p, i)]
    assert [f.frame_seq for f in out] == [1]


_WHOLE, _PACKETS = None, None


def _fixture() -> list[list[bytes]]:
    global _WHOLE, _PACKETS
    if _PACKETS is None:
        _WHOLE, _PACKETS = _stream(4, interval=40)
    return _PACKETS


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 60), st.integers(0, 40),
                          st.integers(0, 255)), max_size=12))
def test_lost_and_damaged_packets_never_break_the_stream(damage) -> None:
    """Drop packets, or flip a byte of one (restart header included): every frame that
    comes out decodes, and malformed ones are counted, never raised."""
    packets = [list(f) for f in _fixture()]
    for frame, index, pos, value in damage:
        if index >= len(packets[frame]):
            continue
        p = packets[frame][index]
        if value % 3 == 0:
            packets[frame][index] = b""  # lost
        else:  # RTP (12) + extensions (20) + main header (8) + restart header (4)
            at = 32 + pos % 12
            packets[frame][index] = p[:at] + bytes([value]) + p[at + 1:]
    d = JpegDepacketizer(conceal=True)
    for i, frame in enumerate(packets):
        for p in frame:
            if not p:
                continue
            for out in d.push(p, i):
                try:
                    simplejpeg.decode_jpeg(out.jpeg, "RGB")
                except ValueError:
                    # A flipped byte in an accepted header (size, Q) can make a JPEG
                    # libjpeg rejects: that is a decode error the receiver counts.
                    assert any(v % 3 for *_x, v in damage)
