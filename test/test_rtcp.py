"""RTCP feedback: round trips of our packets, the clock estimate, and a fuzz of the parser."""

from __future__ import annotations

import json
import re
import socket
import struct
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vr_stream_ros.net.senders import UdpRtpSender
from vr_stream_ros.rtp.feedback import HeadsetFeedback
from vr_stream_ros.rtp.packet import ns_to_uq32_32
from vr_stream_ros.rtp.rtcp import (
    DetectionsMeta,
    FrameStamps,
    ReportBlock,
    RtcpError,
    detections_app,
    estimate_clock,
    frame_stamps_app,
    is_rtcp,
    middle32,
    parse_compound,
    read_compound,
    receiver_reference_time,
    receiver_report,
    sender_report,
)

SSRC = 0xABCD


def _report(sr_sent: int, held_ns: int, receiver_now: int, frames=()) -> bytes:
    block = ReportBlock(SSRC, 0.25, 7, 1234, 90, middle32(ns_to_uq32_32(sr_sent)),
                        held_ns * 65536 // 1_000_000_000)
    return (receiver_report(1, [block]) + receiver_reference_time(1, receiver_now)
            + frame_stamps_app(1, list(frames)))


def test_compound_round_trip() -> None:
    stamps = [FrameStamps(5, 10_000, 20_000, 30_000)]
    parsed = parse_compound(_report(1_000_000_000, 2_000_000, 5_000_000_000, stamps))
    assert not parsed.malformed
    (block,) = parsed.report_blocks
    assert (block.ssrc, block.cumulative_lost, block.highest_seq, block.jitter) == (
        SSRC, 7, 1234, 90)
    assert abs(block.fraction_lost - 0.25) < 0.01
    assert abs(parsed.receiver_time_ns - 5_000_000_000) <= 1
    assert [(f.frame_seq, f.decoded_ns) for f in parsed.frames] == [(5, 30_000)]
    sr = parse_compound(sender_report(SSRC, 42_000_000, 9, 3, 4)).sender_reports[0]
    assert sr.ssrc == SSRC and sr.packets == 3
    assert is_rtcp(sender_report(SSRC, 1, 2, 3, 4)) and not is_rtcp(b"\x80\x1a\x00\x01")


def test_clock_estimate_recovers_offset_and_rtt() -> None:
    # sender sends SR at t=1 s; one-way 1 ms each way; receiver clock +250 ms; holds 5 ms.
    offset, one_way, held = 250_000_000, 1_000_000, 5_000_000
    t1 = 1_000_000_000
    t3_receiver = t1 + one_way + held + offset
    t4 = t1 + 2 * one_way + held
    est = estimate_clock(t1, held * 65536 // 1_000_000_000, t3_receiver, t4)
    assert abs(est.offset_ns - offset) < 20_000  # DLSR has 15 us resolution
    assert abs(est.rtt_ns - 2 * one_way) < 20_000


def test_feedback_converts_headset_stamps_to_our_clock() -> None:
    fb = HeadsetFeedback(SSRC)
    offset = 250_000_000
    fb.sender_report_sent(1_000_000_000)
    fb.frame_sent(9, capture_ns=990_000_000, sent_ns=995_000_000)
    stamps = [FrameStamps(9, 996_000_000 + offset, 997_000_000 + offset, 999_000_000 + offset)]
    frames = fb.on_packet(_report(1_000_000_000, 0, 1_000_000_000 + offset, stamps),
                          arrived_ns=1_000_000_000)
    assert abs(fb.clock.offset_ns - offset) < 20_000
    (frame,) = frames
    assert abs((frame.decoded_ns - frame.capture_ns) - 9_000_000) < 20_000
    assert fb.cumulative_lost == 7 and abs(fb.jitter_ms - 1.0) < 1e-9


_VALID = [_report(1_000_000_000, 3_000_000, 2_000_000_000, [FrameStamps(1, 2, 3, 4)] * 3),
          sender_report(SSRC, 5, 6, 7, 8),
          detections_app(SSRC, DetectionsMeta(4, 6, [(1.0, 2.0, 3.0, 4.0, "cup", 0.5)] * 2))]
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda children: st.lists(children, max_size=7) | st.dictionaries(
        st.sampled_from(["frame", "sent_with", "boxes", "x"]), children, max_size=4),
    max_leaves=20)


def _vrdt(value: object) -> bytes:
    """An APP VRDT packet carrying ``value`` as JSON (any shape, padded to 4 bytes)."""
    text = json.dumps(value).encode()
    body = struct.pack("!I4s", SSRC, b"VRDT") + text + b" " * (-len(text) % 4)
    return struct.pack("!BBH", 0x80, 204, len(body) // 4) + body


# Random bytes; valid compounds with one byte changed or cut short.
_MUTATED = st.one_of(
    st.binary(max_size=120),
    st.tuples(st.sampled_from(_VALID), st.integers(0, 400), st.integers(0, 255)).map(
        lambda t: t[0][: t[1] % len(t[0])] + bytes([t[2]]) + t[0][t[1] % len(t[0]) + 1:]),
    st.tuples(st.sampled_from(_VALID), st.integers(0, 400)).map(lambda t: t[0][: t[1]]),
)
_PACKETS = _MUTATED | _JSON.map(_vrdt)  # and VRDT packets with JSON of any shape


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_PACKETS)
def test_read_compound_parses_or_raises_rtcp_error_only(packet: bytes) -> None:
    """Arbitrary bytes parse, or raise RtcpError naming the fault: any other exception
    (struct.error, KeyError, TypeError...) escapes and fails this test."""
    try:
        compound = read_compound(packet)
    except RtcpError as exc:
        assert str(exc), "RtcpError must say what was wrong"
        assert parse_compound(packet).malformed == str(exc)
        return
    assert compound.malformed == "" and parse_compound(packet) == compound


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_MUTATED, min_size=10, max_size=20))
def test_report_parser_never_raises(items) -> None:
    """10k-20k bit-flipped and truncated packets (10-20 per example), hypothesis shrinking
    any failure; test_fuzz_rtp drives the same parser with FUZZ_N generated compounds
    (100k under `make fuzz`)."""
    fb = HeadsetFeedback(SSRC)
    fb.sender_report_sent(1_000_000_000)
    for item in items:
        fb.on_packet(item, 2_000_000_000)
    assert fb.reports + fb.malformed == len(items)


@pytest.mark.parametrize(("packet", "what"), [
    (b"\x80\xc8", "shorter than a header"),
    (struct.pack("!BBHI", 0x80, 200, 1, SSRC), "RTCP SR: body of 4 bytes, shorter than its 24"),
    (_vrdt([1, 2]), '"frame": int'),
    (_vrdt({"frame": 1, "sent_with": 2, "boxes": [[1, 2, 3, 4, "cup"]]}), "box [1, 2, 3, 4, "),
    (_vrdt({"frame": 1, "sent_with": 2, "boxes": [[1, 2, 3, 10**400, "cup", 1]]}), "box"),
    (_vrdt({"frame": "1", "sent_with": 2, "boxes": []}), '"frame": int'),
])
def test_rtcp_error_names_what_was_expected(packet: bytes, what: str) -> None:
    with pytest.raises(RtcpError, match=re.escape(what)):
        read_compound(packet)


def test_bridge_socket_accepts_reports_only_from_the_headset() -> None:
    headset = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    headset.bind(("127.0.0.1", 0))
    stranger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender = UdpRtpSender("127.0.0.1", headset.getsockname()[1])
    sender.send_frame([b"\x80\x1a\x00\x01" + b"\x00" * 20])
    _, bridge_address = headset.recvfrom(100)
    stranger.sendto(sender_report(1, 1, 1, 1, 1), bridge_address)
    headset.sendto(b"from-headset", bridge_address)
    time.sleep(0.1)
    assert sender.poll_feedback() == [b"from-headset"]
    for s in (headset, stranger):
        s.close()
    sender.close()


def test_detections_app_round_trip():
    meta = DetectionsMeta(41, 44, [(10.0, 20.0, 30.0, 40.0, "person", 0.9)])
    packet = detections_app(0x1234, meta)
    assert len(packet) % 4 == 0
    parsed = parse_compound(packet)
    assert parsed.malformed == "" and parsed.detections == meta
    broken = bytearray(packet)
    broken[12:14] = b"{x"
    assert "VRDT" in parse_compound(bytes(broken)).malformed
    assert json.loads(packet[12:].decode())["frame"] == 41
