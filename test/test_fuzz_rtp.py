"""Hostile RTP/RTCP: into the bridge from the headset address (RTCP: SR, RR, XR blocks of
every type, APP VRFS/VRDT/others, NACK) and into the reference receiver (RTP/JPEG, RTX,
RTCP). In process for the count (FUZZ_N, default below; ``make fuzz``: 100k each), then a
few hundred through the real sockets: the bridge's connected UDP sender and a receiver
process. No exception escapes, no input takes long, memory stays bounded, and the
counters say what was dropped."""

from __future__ import annotations

import itertools
import json
import random
import socket
import struct
import subprocess
import sys
import time

import numpy as np
import simplejpeg
from conftest import free_port
from fuzz_inputs import drive, fuzz_n, mutate, rtcp_compound

from vr_stream_ros.net.senders import UdpRtpSender
from vr_stream_ros.rtp.feedback import HeadsetFeedback
from vr_stream_ros.rtp.jpeg import JpegPacketizer
from vr_stream_ros.rtp.nack import MAX_MISSING, NackTracker
from vr_stream_ros.rtp.rtcp import parse_compound, receiver_reference_time, sender_report
from vr_stream_ros.rtp.rtx import RTX_PAYLOAD_TYPE, rtx_packet
from vr_stream_ros.tools.receiver import StreamReceiver

SSRC = 0x5EED
N_BRIDGE = fuzz_n(30_000)
N_RECEIVER = fuzz_n(4_000)
SOCKET_N = 400
MAX_GROWTH = 8 << 20  # RSS: allocator noise, not a leak (a leak grows with the count)


def _jpeg_packets(seed: int) -> list[bytes]:
    """RTP/JPEG packets of a few real 64x48 frames (with restart markers in some)."""
    rng = np.random.default_rng(seed)
    packetizer = JpegPacketizer(SSRC, mtu=300, frame_span=True)
    packets = []
    for frame in range(4):
        image = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
        jpeg = simplejpeg.encode_jpeg(image, quality=70, colorsubsampling="420")
        packets += packetizer.packetize(jpeg, 3000 * frame, 1_000_000 * frame, frame)
    return packets


def _receiver_inputs(rng: random.Random, n: int):
    """``n`` datagrams: RTP/JPEG packets mutated, reordered, re-stamped, whole frames;
    RTX of them; RTCP; random bytes."""
    return itertools.islice(_receiver_stream(rng), n)


def _receiver_stream(rng: random.Random):
    valid = _jpeg_packets(rng.randrange(1000))
    yield sender_report(SSRC, 1, 1, 1, 1)  # so RTX has a media SSRC
    i = 0
    while True:
        kind = rng.randrange(11)
        packet = rng.choice(valid)
        i += 1
        if kind == 10:  # a whole frame in order, now and then a packet changed or left out
            seq, ts = rng.getrandbits(16), rng.getrandbits(32)
            for j, p in enumerate(valid[:len(valid) // 4]):
                header = bytearray(p)
                struct.pack_into("!HI", header, 2, (seq + j) & 0xFFFF, ts)
                if rng.random() < 0.9:
                    yield bytes(header) if rng.random() < 0.9 else mutate(rng, bytes(header))
        elif kind < 4:
            yield mutate(rng, packet)
        elif kind < 6:  # a new sequence number and timestamp: new frames, gaps, jumps
            header = bytearray(packet)
            struct.pack_into("!HI", header, 2, rng.getrandbits(16), rng.getrandbits(32))
            yield bytes(header)
        elif kind == 6:
            yield mutate(rng, rtx_packet(packet, RTX_PAYLOAD_TYPE, SSRC + 1, i & 0xFFFF))
        elif kind < 9:
            yield rtcp_compound(rng)
        else:
            yield rng.randbytes(rng.randrange(0, 1500))


def test_bridge_feedback_takes_hostile_rtcp_without_raising_and_counts_it() -> None:
    rng = random.Random(16)
    fb = HeadsetFeedback(SSRC)
    for seq in range(600):
        fb.frame_sent(seq, seq * 1000, seq * 1000 + 10)
    fb.sender_report_sent(1_000_000_000)
    nacks = 0

    def handle(packet: bytes) -> None:
        nonlocal nacks
        fb.on_packet(packet, 2_000_000_000)
        nacks += len(fb.nacks)
        fb.nacks = []  # as the sink serves them after each read

    run = drive(handle, (rtcp_compound(rng, SSRC) for _ in range(N_BRIDGE)))
    assert run.inputs == N_BRIDGE == fb.reports + fb.malformed
    assert fb.malformed > N_BRIDGE // 10, "the generator must reach the malformed paths"
    assert fb.reports > N_BRIDGE // 10, "... and the well-formed ones"
    assert nacks > 0, "... and NACKs for our stream"
    assert run.growth_bytes < MAX_GROWTH, run
    print(f"bridge RTCP: {run.inputs} inputs in {run.seconds:.1f} s, {fb.malformed} "
          f"malformed, {fb.reports} parsed, {nacks} NACKs, slowest {run.slowest_s * 1e3:.1f} "
          f"ms, growth {run.growth_bytes} B")


def _decode(receiver: StreamReceiver, frames: list) -> None:
    """What ``poll`` does with the frames a datagram (or the hold's release) completed."""
    for frame in frames:
        receiver._handle(frame)


def test_receiver_takes_hostile_rtp_and_rtcp_without_raising_and_counts_it() -> None:
    rng = random.Random(17)
    receiver = StreamReceiver(free_port(socket.SOCK_DGRAM), nack=True, conceal=True)
    try:
        peer = ("127.0.0.1", 9)

        count = 0

        def handle(packet: bytes) -> None:
            nonlocal count
            _decode(receiver, receiver._packet(packet, peer))
            count += 1
            if count % 16 == 0:  # as poll() does after each batch of datagrams
                receiver.tracker.due(receiver.clock_ns())
                _decode(receiver, receiver.depacketizer.release(receiver.clock_ns()))

        run = drive(handle, _receiver_inputs(rng, N_RECEIVER))
        d = receiver.depacketizer
        assert run.inputs == N_RECEIVER
        assert d.malformed > 0 and receiver.rtcp_malformed > 0 and receiver.rtx_malformed > 0
        assert receiver.stats.frames_decoded > 0, "whole frames reach the decoder too"
        assert d.pending <= d.MAX_PENDING_HELD
        assert len(receiver.tracker._missing) <= MAX_MISSING
        assert run.growth_bytes < MAX_GROWTH, run
        summary = receiver.summary()
        json.dumps(summary)  # what --summary-json writes stays writable
        print(f"receiver: {run.inputs} inputs in {run.seconds:.1f} s, malformed RTP "
              f"{d.malformed}, RTCP {receiver.rtcp_malformed}, RTX {receiver.rtx_malformed}, "
              f"frames decoded {summary['frames_decoded']}, decode errors "
              f"{summary['decode_errors']}, slowest {run.slowest_s * 1e3:.1f} ms, growth "
              f"{run.growth_bytes} B")
    finally:
        receiver.close()


def test_nack_tracker_gaps_stay_bounded_when_sequence_numbers_jump() -> None:
    """Regression: each jump of ~3000 added 3000 gaps until ``due`` gave them up 100 ms
    later, so a burst of jumping packets grew the table (and every poll's scan) without
    bound."""
    tracker = NackTracker()
    for i in range(20):
        tracker.on_packet((i * 2999) & 0xFFFF, 1_000_000)
    assert len(tracker._missing) == MAX_MISSING
    assert tracker.lost == 19 * 2998 - MAX_MISSING, "the forgotten gaps count as lost"


def test_receiver_survives_a_frame_too_small_for_the_stamp() -> None:
    """Regression: a 64x48 frame made read_stamp raise ValueError out of the receiver
    (the process died); it is now decoded and counted as unreadable."""
    receiver = StreamReceiver(free_port(socket.SOCK_DGRAM))
    try:
        for packet in _jpeg_packets(1)[:len(_jpeg_packets(1)) // 4]:  # the first frame
            _decode(receiver, receiver._packet(packet, None))
        assert receiver.stats.frames_decoded == 1 and receiver.stats.unreadable == 1
    finally:
        receiver.close()


def test_vrdt_json_nested_too_deep_is_malformed_not_a_crash() -> None:
    """Regression: an APP VRDT of '[[[[...' raised RecursionError out of parse_compound
    (which never raises): the bridge's feedback and the receiver would have died."""
    body = struct.pack("!I4s", 1, b"VRDT") + b"[" * 2000 + b"]" * 2000
    packet = struct.pack("!BBH", 0x80, 204, len(body) // 4) + body
    assert "not UTF-8 JSON" in parse_compound(packet).malformed


def test_bridge_socket_takes_hostile_rtcp_from_the_headset_address() -> None:
    """Through the bridge's own connected UDP socket: every datagram from the headset
    arrives and is counted; the stranger's are not read at all."""
    rng = random.Random(18)
    headset = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    headset.bind(("127.0.0.1", 0))
    stranger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender = UdpRtpSender("127.0.0.1", headset.getsockname()[1])
    fb = HeadsetFeedback(SSRC)
    try:
        sender.send_frame([b"\x80\x1a\x00\x01" + b"\x00" * 20])
        _, bridge = headset.recvfrom(100)
        read = 0
        for i in range(SOCKET_N):
            stranger.sendto(receiver_reference_time(1, 1), bridge)
            headset.sendto(rtcp_compound(rng, SSRC), bridge)
            if i % 50 == 49:
                time.sleep(0.01)  # let the socket buffer drain as the sink does
                for packet in sender.poll_feedback():
                    fb.on_packet(packet)
                    read += 1
        deadline = time.monotonic() + 5
        while read < SOCKET_N and time.monotonic() < deadline:
            for packet in sender.poll_feedback():
                fb.on_packet(packet)
                read += 1
            time.sleep(0.01)
        assert read == SOCKET_N == fb.reports + fb.malformed, (read, fb.reports, fb.malformed)
        assert fb.malformed > 0
    finally:
        for s in (headset, stranger):
            s.close()
        sender.close()


def test_receiver_process_takes_hostile_datagrams_and_says_what_it_dropped(tmp_path) -> None:
    rng = random.Random(19)
    port = free_port(socket.SOCK_DGRAM)
    summary = tmp_path / "receiver.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "vr_stream_ros.tools.receiver", "--port", str(port), "--bind",
         "127.0.0.1", "--quiet", "--nack", "--summary-json", str(summary)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert "listening on" in proc.stdout.readline()
        out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sent = list(_receiver_inputs(rng, SOCKET_N))
        for i, packet in enumerate(sent):
            out.sendto(packet, ("127.0.0.1", port))
            if i % 20 == 19:
                time.sleep(0.002)  # not a buffer overflow test
        time.sleep(2.0)  # read and handled (each within MAX_INPUT_S in process)
        proc.terminate()  # the receiver writes its summary on SIGTERM
        output = proc.communicate(timeout=20)[0]
    finally:
        proc.kill()
    assert proc.returncode == 0, output
    assert "Traceback" not in output
    s = json.loads(summary.read_text())
    assert s["malformed_packets"] > 0 and s["malformed_rtcp"] > 0, s
    assert s["nack"]["rtx_malformed"] > 0, s
    assert s["bytes"] == sum(len(p) for p in sent), "every datagram was read"
