"""Generic NACK (RFC 4585), RTX (RFC 4588), the receiver's tracker and the bridge's history."""

from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vr_stream_ros.bench.link import CONDITIONS, run_link
from vr_stream_ros.rtp.history import PacketHistory
from vr_stream_ros.rtp.nack import (
    REPAIR_MARGIN_NS,
    NackError,
    NackTracker,
    generic_nack,
    parse_nack_fci,
)
from vr_stream_ros.rtp.packet import FRAME_EXTMAP, frame_extensions, pack_header, parse_packet
from vr_stream_ros.rtp.rtcp import RtcpError, parse_compound, read_compound
from vr_stream_ros.rtp.rtx import restore_original, rtx_packet
from vr_stream_ros.rtp.sdp import make_sdp

MS = 1_000_000


@pytest.mark.parametrize("seqs", [[5], [5, 6, 21], [5, 22], [65535, 0, 1, 3], list(range(100))])
def test_nack_round_trips_through_the_rtcp_parser(seqs: list[int]) -> None:
    packet = generic_nack(1, 2, seqs)
    nacks = read_compound(packet).nacks
    assert nacks == [(2, sorted(nacks[0][1], key=lambda s: (s - seqs[0]) & 0xFFFF))]
    assert set(nacks[0][1]) == set(seqs)
    if len(seqs) == 100:  # PID + BLP packs up to 17 numbers in one word: 6 words here
        assert len(packet) == 12 + 4 * 6


def test_nack_wire_format_matches_rfc_4585() -> None:
    packet = generic_nack(0x11111111, 0x22222222, [1000, 1001, 1016])
    assert packet == struct.pack("!BBHIIHH", 0x81, 205, 3, 0x11111111, 0x22222222, 1000,
                                 0b1000_0000_0000_0001)


@pytest.mark.parametrize(("body", "what"), [
    (b"", "FCI of 0 bytes"), (b"\x00\x01\x00", "FCI of 3 bytes")])
def test_malformed_fci_is_named(body: bytes, what: str) -> None:
    with pytest.raises(NackError, match=what):
        parse_nack_fci(body)
    packet = struct.pack("!BBHII", 0x81, 205, 2 + len(body) // 4, 1, 2) + body
    if len(body) % 4 == 0:
        with pytest.raises(RtcpError, match="NACK"):
            read_compound(packet)


_NACKS = st.one_of(
    st.binary(max_size=80).map(
        lambda b: struct.pack("!BBH", 0x81, 205, len(b) // 4) + b[: len(b) // 4 * 4]),
    st.tuples(st.lists(st.integers(0, 0xFFFF), min_size=1, max_size=60), st.integers(0, 300),
              st.integers(0, 255)).map(
        lambda t: (lambda p: p[: t[1] % len(p)] + bytes([t[2]]) + p[t[1] % len(p) + 1:])(
            generic_nack(1, 2, t[0]))),
)


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_NACKS)
def test_nack_parser_fuzzed_raises_rtcp_error_only(packet: bytes) -> None:
    try:
        compound = read_compound(packet)
    except RtcpError as exc:
        assert str(exc) and parse_compound(packet).malformed == str(exc)
        return
    for _ssrc, seqs in compound.nacks:
        assert seqs and all(0 <= s <= 0xFFFF for s in seqs)


def _media(seq: int, marker: bool = False) -> bytes:
    return pack_header(26, marker, seq, 9000, 0xABC, frame_extensions(5 * MS, 7, (seq, 3))) + \
        bytes([seq % 256]) * 50


def test_rtx_carries_the_original_back_bit_exact() -> None:
    original = _media(4242, marker=True)
    rtx = rtx_packet(original, 97, 0x5555, 17)
    parsed = parse_packet(rtx)
    assert (parsed.payload_type, parsed.ssrc, parsed.sequence, parsed.marker) == \
        (97, 0x5555, 17, True)
    assert bytes(parsed.payload[:2]) == struct.pack("!H", 4242)
    assert restore_original(parsed, 26, 0xABC) == original


def test_tracker_waits_for_reordering_then_asks_and_counts_recovery() -> None:
    t = NackTracker(reorder_ms=2.0, rounds=2)
    t.on_packet(10, 0)
    t.on_packet(12, 0)  # 11 missing
    assert t.due(1 * MS) == []  # within the reorder tolerance
    t.on_packet(14, 1 * MS)  # 13 missing, then it arrives on its own: reordered, not lost
    t.on_packet(13, int(1.5 * MS))
    assert t.due(2 * MS) == [11]
    assert t.due(3 * MS) == []  # the repair has 20 ms before it is asked again
    t.on_packet(11, 10 * MS, retransmitted=True)
    t.due(200 * MS)
    assert (t.recovered, t.reordered, t.lost, t.network_lost, t.spurious) == (1, 1, 0, 1, 0)
    assert t.repair_wait_ns == 8 * MS + REPAIR_MARGIN_NS  # measured from the one repair


def test_tracker_finds_a_lost_last_packet_from_the_frame_span() -> None:
    t = NackTracker(reorder_ms=2.0, tail_ms=4.0)
    t.on_packet(100, 0, span=(100, 3))
    t.on_packet(101, 0, span=(100, 3))  # 102 (the marker) never comes
    assert t.next_due_ns() == 4 * MS
    assert t.due(3 * MS) == []  # the burst may only have paused
    assert t.due(4 * MS) == [102]


def test_tracker_gives_up_after_its_rounds_and_wraps_sequence_numbers() -> None:
    t = NackTracker(reorder_ms=0.0, rounds=1, give_up_ms=50)
    t.on_packet(65534, 0)
    t.on_packet(1, 0)  # 65535 and 0 missing across the wrap
    assert sorted(t.due(0)) == [0, 65535]
    assert t.due(100 * MS) == []
    assert (t.lost, t.expected) == (2, 4)


def test_history_resends_once_and_counts_every_refusal() -> None:
    h = PacketHistory(keep_ms=100, min_interval_ms=5, max_resend_per_s=1000)
    for seq in range(100, 110):
        h.add(seq, b"p%d" % seq, 0)
    assert h.request([101, 102], 1 * MS, deadline_ns=33 * MS) == [b"p101", b"p102"]
    assert h.request([101], 2 * MS, deadline_ns=33 * MS) == []  # crossed the first repair
    assert h.request([120, 50], 3 * MS, deadline_ns=33 * MS) == []  # never sent / outside
    assert h.request([103], 40 * MS, deadline_ns=33 * MS) == []  # frame past the deadline
    c = h.counters
    assert (c.resent, c.repeated, c.unknown, c.expired, c.too_late) == (2, 1, 1, 1, 1)
    h.add(200, b"new", 300 * MS)  # everything older than 100 ms leaves the history
    assert len(h) == 1


def test_a_nack_flood_is_rate_limited() -> None:
    h = PacketHistory(keep_ms=100, min_interval_ms=0, max_resend_per_s=1000)
    for seq in range(1000):
        h.add(seq, b"x", 0)
    sent = sum(len(h.request([seq], 0, deadline_ns=50 * MS)) for seq in range(1000))
    assert sent == 100  # the burst: a tenth of a second's budget
    assert h.counters.rate_limited == 900


def test_sdp_announces_nack_rtx_and_the_frame_packets_extension() -> None:
    sdp = make_sdp("127.0.0.1", 5004, extmap=FRAME_EXTMAP, nack=True)
    assert "m=video 5004 RTP/AVPF 26 97\r\n" in sdp
    for line in ("a=rtcp-fb:26 nack", "a=rtpmap:97 rtx/90000", "a=fmtp:97 apt=26;rtx-time=200",
                 "a=extmap:3 urn:vr-stream-ros:frame-packets"):
        assert line + "\r\n" in sdp
    with pytest.raises(ValueError, match="SDP nack"):
        make_sdp("127.0.0.1", 5004, nack=True, transport="tcp")


def test_nack_repairs_frames_through_a_lossy_relay(tmp_path) -> None:
    """The bridge's sink -> 3 % loss relay -> the reference receiver, each variant 2 s:
    the figures that cannot depend on this host's load."""
    cond = CONDITIONS["loss_3pct"]
    off = run_link(str(tmp_path), "loss_3pct", cond, "off", 2.0).figures
    on = run_link(str(tmp_path), "loss_3pct", cond, "nack", 2.0).figures
    print(f"\nintact off {off['intact_pct']} % / nack {on['intact_pct']} %; "
          f"{on['bridge_resends']} {on['nack']}")
    assert off["packets_lost"] > 0 and off["rtx_bytes"] == 0
    assert off["nack"]["nacks_sent"] == 0  # nobody asked: no RTX on the wire
    assert on["bridge_resends"]["resent"] > 0 and on["nack"]["recovered"] > 0
    assert on["packets_unrepaired"] < on["packets_lost"]
    assert on["intact_pct"] > off["intact_pct"]


def test_the_reorder_tolerance_grows_to_the_reordering_seen() -> None:
    t = NackTracker(reorder_ms=1.0)
    assert t.reorder_wait_ns == 1 * MS
    seq, now = 0, 0
    for _ in range(40):  # every other packet overtaken by 3 ms
        t.on_packet(seq + 1, now)
        t.on_packet(seq, now + 3 * MS)
        seq, now = seq + 2, now + 5 * MS
        t.due(now)
    assert t.reorder_wait_ns == 3 * MS + 500_000
    before = t.packets_asked
    t.on_packet(seq + 1, now)
    t.on_packet(seq, now + 3 * MS)  # within the measured tolerance: not asked for
    assert t.due(now + 2_900_000) == [] and t.packets_asked == before


def test_a_packet_given_up_that_then_arrives_is_late_not_lost() -> None:
    t = NackTracker(give_up_ms=100.0)
    t.on_packet(1, 0)
    t.on_packet(3, 0)  # 2 missing
    t.due(200 * MS)
    assert t.lost == 1
    t.on_packet(2, 210 * MS)  # a stalled path, not the network: it came
    assert (t.lost, t.late, t.network_lost) == (0, 1, 0)
    t.on_packet(2, 220 * MS)  # a duplicate of it changes nothing
    assert (t.lost, t.late) == (0, 1)
