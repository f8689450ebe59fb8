"""The link adapter: down on loss or queueing delay growth, with hold-down, up when clean."""

from __future__ import annotations

import struct

import pytest

from vr_stream_ros.codecs.jpeg import JpegEncoder
from vr_stream_ros.rtp.adapt import Level, LinkAdapter, ladder

S = 1_000_000_000
MS = 1_000_000


def test_ladder_lowers_quality_then_frame_rate() -> None:
    assert ladder(80, 30) == [Level(80, 1), Level(65, 1), Level(50, 1), Level(35, 1),
                              Level(30, 1), Level(30, 2), Level(30, 3)]
    with pytest.raises(ValueError, match="adapt_min_quality"):
        LinkAdapter(80, min_quality=0)


def test_steps_down_once_per_hold_down_and_climbs_back_after_a_clean_spell() -> None:
    log: list[str] = []
    a = LinkAdapter(80, hold_down_s=0.4, climb_after_s=2.0, log=log.append)
    a.on_report(0, 0.0, 10 * MS)  # the baseline round trip
    assert a.on_report(1 * S, 0.20, 10 * MS) and a.level == Level(65, 1)
    assert not a.on_report(1 * S + 200 * MS, 0.20, 10 * MS)  # its effect has not shown yet
    assert a.on_report(1 * S + 400 * MS, 0.20, 10 * MS) and a.level == Level(50, 1)
    assert not a.on_report(3 * S, 0.0, 10 * MS)  # clean for 1.6 s only
    assert a.on_report(3 * S + 400 * MS, 0.0, 10 * MS) and a.level == Level(65, 1)
    assert a.changes == 3 and len(log) == 3 and "quality 65" in log[-1]


def test_a_climb_that_fails_doubles_the_wait_before_the_next() -> None:
    a = LinkAdapter(80, hold_down_s=0.4, climb_after_s=2.0)
    a.on_report(1 * S, 0.3, None)
    assert a.level.quality == 65
    assert a.on_report(3 * S, 0.0, None) and a.index == 0  # climbed after 2 s clean
    assert a.on_report(3 * S + 500 * MS, 0.3, None) and a.index == 1  # and it did not hold
    assert not a.on_report(5 * S + 600 * MS, 0.0, None)  # now 4 s, not 2
    assert a.on_report(7 * S + 500 * MS, 0.0, None) and a.index == 0


def test_queueing_delay_growth_is_congestion_before_any_loss() -> None:
    a = LinkAdapter(80, delay_growth_ms=15)
    a.on_report(0, 0.0, 10 * MS)
    assert not a.on_report(1 * S, 0.0, 40 * MS)  # one report behind a burst: not a queue
    assert not a.on_report(2 * S, 0.0, 20 * MS)  # +10 ms: within the allowance
    for i in range(4):  # +20 ms in every report of the window: a standing queue
        a.on_report(3 * S + i * S, 0.0, 30 * MS)
    assert a.level.quality == 65


def test_random_loss_below_the_threshold_does_not_degrade() -> None:
    a = LinkAdapter(80, degrade_loss=0.05)
    for i in range(20):
        assert not a.on_report(i * S // 4, 0.03, 10 * MS)
    assert a.index == 0


def test_the_encoder_follows_the_quality() -> None:
    import numpy as np
    frame = np.full((64, 64, 3), 128, np.uint8)
    frame[::2] = 30
    for restart in (0, 4):
        enc = JpegEncoder(90, "420", "rgb8", restart)
        big = len(enc.encode(frame))
        enc.set_quality(20)
        assert len(enc.encode(frame)) < big and enc.quality == 20


def test_the_last_level_halves_the_resolution_and_the_sink_paces_below_the_top() -> None:
    """The sink at the half-size level: the frame leaves as 640x360 RTP/JPEG (decoded by
    the receiver's depacketizer) and its UDP sender paces; back at the top it does not."""
    import socket

    import numpy as np

    from vr_stream_ros.camera.pattern import PatternGenerator
    from vr_stream_ros.net.senders import UdpRtpSender
    from vr_stream_ros.ring.frame_ring import FrameView
    from vr_stream_ros.rtp.jpeg import JpegDepacketizer
    from vr_stream_ros.sinks.rtp import RtpJpegSink
    from vr_stream_ros.sinks.stream_stats import StreamStats

    assert ladder(80, 30, halve=True)[-2:] == [Level(30, 3), Level(30, 3, 2)]
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    rx.settimeout(5)
    adapter = LinkAdapter(80, halve=True)
    sender = UdpRtpSender("127.0.0.1", rx.getsockname()[1])
    sink = RtpJpegSink(sender, JpegEncoder(80), ssrc=1, mtu=1400, rtcp_interval_s=1.0,
                       stats=StreamStats(RtpJpegSink.stages), adapter=adapter)
    frame = np.empty((720, 1280, 3), np.uint8)
    PatternGenerator(1280, 720).render_into(frame, 3, 1)
    try:
        depacketizer = JpegDepacketizer()
        for index, seq in ((len(adapter.levels) - 1, 3), (0, 4)):
            adapter.index = index
            capture = seq * 16_666_667  # each frame its own RTP timestamp
            sink.send(FrameView(frame, seq, 0, capture, capture), 0, lambda _v: True)
            frames = []
            while not frames:
                frames = depacketizer.push(rx.recv(2048), 0)
            width, height = (640, 360) if index else (1280, 720)
            assert frames[0].jpeg.find(struct.pack("!HH", height, width)) > 0  # SOF0 size
            assert (sender._pacer is not None) == bool(index)
    finally:
        sink.close()
        rx.close()
