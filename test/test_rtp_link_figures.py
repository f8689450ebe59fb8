"""Link figures from the depacketizer: per-frame jitter, repairs kept out of the loss and
jitter counts, and frames held for a repair coming out in order."""

from __future__ import annotations

import random

import numpy as np
import simplejpeg

from vr_stream_ros.rtp.jpeg import JpegDepacketizer, JpegPacketizer

MS = 1_000_000
PERIOD_NS = 16_666_667


def _jpeg() -> bytes:
    rng = np.random.default_rng(3)
    image = (rng.integers(0, 255, (192, 256, 3)) // 64 * 64).astype(np.uint8)
    return simplejpeg.encode_jpeg(image, 80, "RGB", "420")


def _frames(count: int, mtu: int = 600) -> list[list[bytes]]:
    packetizer, jpeg = JpegPacketizer(ssrc=7, mtu=mtu), _jpeg()
    return [packetizer.packetize(jpeg, i * 1500, i * PERIOD_NS, i) for i in range(count)]


def test_jitter_is_per_frame_and_reads_the_link_jitter() -> None:
    """Frames whose one-way transit varies uniformly by +-2 ms, each frame's packets in a
    0.1 ms burst: RFC 3550's estimator over frames converges to E|D| = 4/3 ms."""
    rng = random.Random(1)
    frames = _frames(1500)
    assert len(frames[0]) > 5
    d = JpegDepacketizer()
    for i, packets in enumerate(frames):
        arrival = i * PERIOD_NS + 5 * MS + int(rng.uniform(-2, 2) * MS)
        for k, packet in enumerate(packets):
            d.push(packet, arrival + k * 100_000)
    assert d.frames_complete == 1500
    assert 1.1 < d.jitter / 90 < 1.6, d.jitter / 90  # per packet it read ~10x lower


def test_a_repair_fills_its_frame_but_is_not_network_loss_or_jitter() -> None:
    frames = _frames(3)
    d = JpegDepacketizer()
    out = []
    for i, packets in enumerate(frames):
        for k, packet in enumerate(packets):
            if (i, k) != (1, 2):
                out += d.push(packet, i * PERIOD_NS)
    jitter = d.jitter
    out += d.push(frames[1][2], 2 * PERIOD_NS + 5 * MS, retransmitted=True)
    # Without a hold, frame 1 was given up when frame 2 completed: the repair came late.
    assert [f.frame_seq for f in out] == [0, 2]
    assert d.packets_lost == 1 and d.packets_recovered == 1 and d.jitter == jitter


def test_held_frames_wait_for_a_repair_and_come_out_in_order() -> None:
    frames = _frames(3)
    d = JpegDepacketizer(hold_ms=30)
    out = []
    for i, packets in enumerate(frames):
        for k, packet in enumerate(packets):
            if (i, k) != (1, 0):
                out += d.push(packet, i * PERIOD_NS)
    assert [f.frame_seq for f in out] == [0]  # frame 2 waits behind frame 1's hole
    assert d.next_release_ns() == PERIOD_NS + 30 * MS
    out += d.push(frames[1][0], 2 * PERIOD_NS + 8 * MS, retransmitted=True)
    assert [f.frame_seq for f in out] == [0, 1, 2]
    assert d.frames_incomplete == 0


def test_a_hold_that_expires_gives_the_frame_up_and_releases_the_rest() -> None:
    frames = _frames(3)
    d = JpegDepacketizer(hold_ms=30)
    out = []
    for i, packets in enumerate(frames):
        for k, packet in enumerate(packets):
            if (i, k) != (1, 3):
                out += d.push(packet, i * PERIOD_NS)
    assert d.release(PERIOD_NS + 29 * MS) == []
    out += d.release(PERIOD_NS + 30 * MS)
    assert [f.frame_seq for f in out] == [0, 2] and d.frames_incomplete == 1
