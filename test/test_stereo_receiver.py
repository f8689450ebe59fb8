"""The reference receiver's stereo figures from real RTP/JPEG over a real UDP socket:
the layout found from the stamps, eye skew from the pixels, a pair whose eyes show
different frames counted as mismatched, an eye without a stamp counted as unreadable."""

from __future__ import annotations

import socket
import time

import numpy as np

from vr_stream_ros.camera.layout import eye_views
from vr_stream_ros.camera.pattern import PatternGenerator
from vr_stream_ros.codecs.jpeg import JpegEncoder
from vr_stream_ros.rtp.jpeg import JpegPacketizer
from vr_stream_ros.rtp.packet import rtp_timestamp
from vr_stream_ros.tools.receiver import StreamReceiver

W, H = 320, 240


def _send(receiver: StreamReceiver, frames: list[np.ndarray]) -> dict:
    """Send ``frames`` as RTP/JPEG to ``receiver``; its summary once all are handled."""
    encoder, packetizer = JpegEncoder(90, "420", "rgb8"), JpegPacketizer(ssrc=7, mtu=1400)
    port = receiver.sock.getsockname()[1]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for n, image in enumerate(frames):
            capture_ns = time.monotonic_ns()
            for packet in packetizer.packetize(encoder.encode(image), rtp_timestamp(capture_ns)
                                               + n, capture_ns, n):
                sock.sendto(packet, ("127.0.0.1", port))
            deadline = time.monotonic() + 5
            while receiver.stats.frames_received <= n and time.monotonic() < deadline:
                receiver.poll(0.05)
    return receiver.summary()


def _pair(left: tuple[int, int] | None, right: tuple[int, int] | None) -> np.ndarray:
    """A top_bottom frame; each eye rendered with (frame, capture_ns), or unstamped."""
    frame = np.empty((2 * H, W, 3), np.uint8)
    pattern = PatternGenerator(W, H)
    for eye, stamp in (("left", left), ("right", right)):
        view = eye_views(frame, "top_bottom")[eye]
        if stamp is None:
            view[:] = 128
        else:
            pattern.render_into(view, stamp[0], stamp[1], eye)
    return frame


def test_receiver_counts_skew_mismatched_pairs_and_unreadable_eyes() -> None:
    receiver = StreamReceiver(0, same_clock=True)
    try:
        s = _send(receiver, [_pair((0, 10_000_000), (0, 10_050_000)),  # right 50 us late
                             _pair((1, 20_000_000), (5, 19_980_000)),  # eyes of two frames
                             _pair((2, 30_000_000), None)])            # right eye unreadable
    finally:
        receiver.close()
    stereo = s["stereo"]
    assert s["frames_decoded"] == 3 and stereo["layout"] == "top_bottom"
    assert (stereo["pairs"], stereo["pairs_mismatched"], stereo["eye_unreadable"]) == (2, 1, 1)
    assert stereo["eye_skew_ms"]["max"] == 0.05 and stereo["eye_skew_signed_max_ms"] == 0.05
    assert s["stamps"]["frames"] == [0, 1, 2]  # frame numbers are the left eye's


def test_mono_stream_has_no_stereo_figures() -> None:
    receiver = StreamReceiver(0, same_clock=True)
    try:
        s = _send(receiver, [PatternGenerator(W, H).render(0, 1)])
    finally:
        receiver.close()
    assert s["stereo"] is None and s["stamps"]["frames"] == [0]
