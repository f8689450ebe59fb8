"""RTCP feedback: round trips of our packets, the clock estimate, and a fuzz of the parser."""

from __future__ import annotations

import json
import socket
import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vr_stream_ros.net.senders import UdpRtpSender
from vr_stream_ros.rtp.feedback import HeadsetFeedback
from vr_stream_ros.rtp.packet import ns_to_uq32_32
from vr_stream_ros.rtp.rtcp import (
    FrameStamps,
    ReportBlock,
    estimate_clock,
    frame_stamps_app,
    is_rtcp,
    middle32,
    parse_compound,
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
          sender_report(SSRC, 5, 6, 7, 8)]


@settings(max_examples=10_000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(
    st.binary(max_size=120),
    st.tuples(st.sampled_from(_VALID), st.integers(0, 400), st.integers(0, 255)),
    st.tuples(st.sampled_from(_VALID), st.integers(0, 400)),
), min_size=10, max_size=20))
def test_report_parser_never_raises(items) -> None:
    """At least 100k random, bit-flipped and truncated packets (10-20 per example)."""
    fb = HeadsetFeedback(SSRC)
    fb.sender_report_sent(1_000_000_000)
    for item in items:
        if isinstance(item, tuple) and len(item) == 3:
            packet, pos, value = item
            mutated = bytearray(packet)
            mutated[pos % len(mutated)] = value
            item = bytes(mutated)
        elif isinstance(item, tuple):
            item = item[0][: item[1]]
        parse_compound(item)
        fb.on_packet(item, 2_000_000_000)
    assert fb.reports + fb.malformed == len(items)


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
    from vr_stream_ros.rtp.rtcp import DetectionsMeta, detections_app, parse_compound
    meta = DetectionsMeta(41, 44, [(10.0, 20.0, 30.0, 40.0, "person", 0.9)])
    packet = detections_app(0x1234, meta)
    assert len(packet) % 4 == 0
    parsed = parse_compound(packet)
    assert parsed.malformed == "" and parsed.detections == meta
    broken = bytearray(packet)
    broken[12:14] = b"{x"
    assert "VRDT" in parse_compound(bytes(broken)).malformed
    assert json.loads(packet[12:].decode())["frame"] == 41
