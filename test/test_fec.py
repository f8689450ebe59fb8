"""XOR parity per frame (rtp/fec.py): the wire format, recovery, bad input, end to end."""

from __future__ import annotations

import random
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vr_stream_ros.bench.link import CONDITIONS, FEC_GROUP, run_link
from vr_stream_ros.rtp.fec import (
    FEC_PAYLOAD_TYPE,
    FecDecoder,
    FecEncoder,
    FecError,
    parity_packet,
    parse_fec,
)
from vr_stream_ros.rtp.nack import NackTracker
from vr_stream_ros.rtp.packet import RtpError, frame_extensions, pack_header, parse_packet
from vr_stream_ros.rtp.sdp import make_sdp

MEDIA_SSRC = 0xABCDEF01


def _frame(first_seq: int, count: int, seed: int = 1) -> list[bytes]:
    """``count`` packets of one frame: extension block, random payloads of random length,
    the marker on the last (sequence numbers from ``first_seq``, wrapping)."""
    rng = random.Random(seed)
    block = frame_extensions(123_456_789, 42, (first_seq, count))
    return [pack_header(26, i == count - 1, first_seq + i, 90_000, MEDIA_SSRC, block)
            + rng.randbytes(rng.randrange(1, 1400)) for i in range(count)]


def test_parity_header_follows_rfc_5109() -> None:
    packets = _frame(100, 20)
    fec = parse_packet(parity_packet(packets, FEC_PAYLOAD_TYPE, 0x77, 5))
    assert (fec.payload_type, fec.sequence, fec.ssrc, fec.timestamp) == \
        (FEC_PAYLOAD_TYPE, 5, 0x77, 90_000)
    e_l, _b1, sn_base = struct.unpack_from("!BBH", fec.payload)
    assert e_l & 0xC0 == 0x40 and sn_base == 100  # E = 0, L = 1: 20 packets need the long mask
    parsed = parse_fec(fec)
    assert parsed.protected == tuple(range(100, 120))
    assert parsed.size == max(len(p) for p in packets) - 12
    short = parse_fec(parse_packet(parity_packet(packets[:16], FEC_PAYLOAD_TYPE, 0x77, 6)))
    assert short.protected == tuple(range(100, 116))


@pytest.mark.parametrize("lost", [0, 7, 15, 16, 23])
def test_one_lost_packet_per_group_is_rebuilt_bit_exact_across_wrap(lost: int) -> None:
    packets = _frame(65530, 24, seed=lost)  # sequence numbers wrap inside the frame
    parity = FecEncoder(12, 0x77).protect(packets)
    assert len(parity) == 2
    dec = FecDecoder()
    for i, p in enumerate(packets):
        if i != lost:
            assert dec.media((65530 + i) & 0xFFFF, p) == []
    rebuilt = [q for p in parity for q in dec.parity(parse_packet(p), MEDIA_SSRC)]
    assert rebuilt == [packets[lost]] and dec.recovered == 1


def test_a_repair_lets_parity_rebuild_the_second_hole() -> None:
    packets = _frame(10, 12)
    (parity,) = FecEncoder(12, 0x77).protect(packets)
    dec = FecDecoder()
    for i in range(2, 12):
        dec.media(10 + i, packets[i])
    assert dec.parity(parse_packet(parity), MEDIA_SSRC) == []  # two missing: kept
    assert dec.media(10, packets[0]) == [packets[1]]  # e.g. the RTX of one of them


def test_the_tracker_counts_rebuilt_packets_as_network_loss_not_reordering() -> None:
    t = NackTracker()
    t.on_packet(1, 0)
    t.on_packet(3, 0)  # 2 missing
    t.on_packet(2, 1, fec=True)
    t.on_packet(4, 2, fec=True)  # rebuilt before anyone noticed it missing
    t.on_packet(2, 3)  # the original after all: a duplicate
    assert (t.fec_recovered, t.reordered, t.recovered, t.network_lost) == (2, 0, 0, 2)
    assert t.due(10**9) == [] and t.lost == 0


@pytest.mark.parametrize(("mutate", "what"), [
    (lambda p: p[:12 + 11], "at least"),
    (lambda p: p[:12] + bytes([p[12] | 0x80]) + p[13:], "E bit"),
    (lambda p: p[:12] + bytes([p[12] | 0x40]) + p[13:26], "48-bit mask"),
    (lambda p: p[:12 + 12] + b"\0\0" + p[12 + 14:], "empty protection mask"),
    (lambda p: p[:-1], "protection length"),
])
def test_malformed_parity_is_named(mutate, what: str) -> None:
    packet = parity_packet(_frame(1, 4), FEC_PAYLOAD_TYPE, 0x77, 1)
    with pytest.raises(FecError, match=what):
        parse_fec(parse_packet(mutate(packet)))


_PARITY = st.one_of(
    st.binary(max_size=80),
    st.builds(lambda head, body: pack_header(FEC_PAYLOAD_TYPE, False, 1, 2, 3) + head + body,
              st.binary(min_size=10, max_size=18), st.binary(max_size=64)),
)


_FUZZ_FRAME = _frame(0, 16)


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_PARITY, st.integers(0, 15))
def test_parity_fuzzed_raises_rtp_error_only_and_rebuilds_nothing_longer(
        packet: bytes, lost: int) -> None:
    """A junk parity packet beside a real frame: RtpError (counted and dropped by the
    receiver) or a packet no longer than its protection length, never anything else."""
    dec = FecDecoder()
    for i, p in enumerate(_FUZZ_FRAME):
        if i != lost:
            dec.media(i, p)
    try:
        rebuilt = dec.parity(parse_packet(packet), MEDIA_SSRC)
    except RtpError:
        return
    assert all(len(p) <= len(packet) for p in rebuilt)


def test_sdp_announces_ulpfec_on_its_own_payload_type() -> None:
    sdp = make_sdp("127.0.0.1", 5004, nack=True, fec=True)
    assert f"m=video 5004 RTP/AVPF 26 97 {FEC_PAYLOAD_TYPE}\r\n" in sdp
    assert f"a=rtpmap:{FEC_PAYLOAD_TYPE} ulpfec/90000\r\n" in sdp
    with pytest.raises(ValueError, match="SDP fec"):
        make_sdp("127.0.0.1", 5004, fec=True, fec_payload_type=26)
    with pytest.raises(ValueError, match="parameter 'fec'"):
        FecEncoder(49, 1)


def test_parity_rebuilds_packets_through_a_lossy_relay(tmp_path) -> None:
    """The bridge's sink with parity -> 3 % loss relay -> the reference receiver, 2 s:
    the figures that cannot depend on this host's load."""
    figures = run_link(str(tmp_path), "loss_3pct", CONDITIONS["loss_3pct"], "fec",
                       2.0).figures
    fec = figures["fec"]
    print(f"\nfec (1 per {FEC_GROUP}): {fec}, {figures['intact_pct']} % intact, "
          f"packets lost {figures['packets_lost']}")
    assert fec["enabled"] and fec["received"] > 0 and fec["malformed"] == 0
    assert 0 < fec["recovered"] <= figures["packets_lost"]
    assert figures["nack"]["nacks_sent"] == 0 and figures["rtx_bytes"] == 0
