"""JpegEncoder(threads > 1): horizontal bands encoded in parallel and spliced with restart
markers into one baseline JPEG. Decoded by libjpeg-turbo (simplejpeg) and OpenCV, its
luma is each band's encoded alone, bit for bit; it travels as RTP/JPEG type 65."""

from __future__ import annotations

import itertools
import re
import subprocess
import sys
import threading

import cv2
import numpy as np
import pytest
import simplejpeg

from vr_stream_ros.camera.layout import eye_views
from vr_stream_ros.camera.pattern import PatternGenerator, read_eye_stamps
from vr_stream_ros.codecs.jpeg import JpegEncoder, splice_bands
from vr_stream_ros.rtp.jpeg import (
    JpegDepacketizer,
    JpegPacketizer,
    parse_jpeg,
    parse_jpeg_packet,
)

RST = re.compile(rb"\xff[\xd0-\xd7]")


def _frame(width: int, height: int, seed: int = 0) -> np.ndarray:
    """The stamped pattern with noise: every band has detail to code."""
    frame = PatternGenerator(width, height).render(7, 123_456)
    noise = np.random.default_rng(seed).integers(-40, 40, frame.shape)
    return np.clip(frame.astype(np.int16) + noise, 0, 255).astype(np.uint8)


def _luma(jpeg: bytes) -> np.ndarray:
    return simplejpeg.decode_jpeg(jpeg, "GRAY")[..., 0]


def _headers(jpeg: bytes) -> bytes:
    return jpeg[: jpeg.index(b"\xff\xda")]


@pytest.mark.parametrize(("subsampling", "threads", "width", "height", "mcu_h"), [
    ("420", 2, 1280, 1440, 16),  # the stereo top_bottom pair: two 720-row bands
    ("420", 3, 1280, 720, 16),  # 45 MCU rows: 15 each
    ("420", 4, 1280, 1440, 16),  # 90 MCU rows: 23, 23, 23 and a shorter last band of 21
    ("422", 4, 640, 488, 8),  # 61 MCU rows of 8 px: 16, 16, 16, 13
    ("420", 2, 1000, 96, 16),  # a width of 62.5 MCUs: the padding column in every band
])
def test_spliced_luma_equals_each_band_encoded_alone(subsampling: str, threads: int,
                                                     width: int, height: int,
                                                     mcu_h: int) -> None:
    frame = _frame(width, height)
    encoder = JpegEncoder(80, subsampling, "rgb8", threads=threads)
    try:
        plan = encoder.bands(height, width)
        assert plan is not None
        ranges, interval = plan
        rows = -(-height // mcu_h // threads)
        assert interval == rows * -(-width // 16)
        assert ranges[0] == (0, rows * mcu_h) and ranges[-1][1] == height
        assert all(b == c for (_, b), (c, _) in itertools.pairwise(ranges))
        jpeg = encoder.encode(frame)
    finally:
        encoder.close()
    assert simplejpeg.decode_jpeg_header(jpeg)[:2] == (height, width)
    assert b"\xff\xdd\x00\x04" + interval.to_bytes(2, "big") in _headers(jpeg)
    scan = jpeg[len(_headers(jpeg)):]
    assert [m.group() for m in RST.finditer(scan)] == \
        [bytes((0xFF, 0xD0 + m)) for m in range(len(ranges) - 1)]
    luma = _luma(jpeg)
    for top, bottom in ranges:
        alone = simplejpeg.encode_jpeg(frame[top:bottom], 80, "RGB", subsampling)
        assert np.array_equal(luma[top:bottom], _luma(alone)), (top, bottom)
    # A second decoder: OpenCV's own libjpeg(-turbo) build, in colour and in luma.
    colour = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert colour.shape == (height, width, 3)
    ours = simplejpeg.decode_jpeg(jpeg, "BGR")
    assert np.abs(colour.astype(int) - ours).max() <= 2
    gray = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_GRAYSCALE)
    assert np.abs(gray.astype(int) - luma).max() <= 1


def test_more_than_eight_bands_cycle_rst0_to_rst7() -> None:
    frame = _frame(320, 160)
    bands = [simplejpeg.encode_jpeg(frame[top:top + 16], 75, "RGB", "420")
             for top in range(0, 160, 16)]
    jpeg = splice_bands(bands, 160, 20)
    scan = jpeg[len(_headers(jpeg)):]
    assert [m.group()[1] - 0xD0 for m in RST.finditer(scan)] == [m % 8 for m in range(9)]
    luma = _luma(jpeg)
    for n, band in enumerate(bands):
        assert np.array_equal(luma[16 * n:16 * n + 16], _luma(band))


def test_bands_with_other_tables_are_refused() -> None:
    frame = _frame(320, 128)
    bands = [simplejpeg.encode_jpeg(frame[:64], 80, "RGB", "420"),
             simplejpeg.encode_jpeg(frame[64:], 50, "RGB", "420")]
    with pytest.raises(ValueError, match="band 1: headers differ"):
        splice_bands(bands, 128, 80)


@pytest.mark.parametrize(("kwargs", "height", "why"), [
    ({"threads": 2, "restart_interval": 40}, 1440, "restart_interval: OpenCV's path"),
    ({"threads": 2}, 1448, "not a whole number of 16-px MCU rows"),
    ({"threads": 4}, 48, "3 MCU rows for 4 bands"),
    ({"threads": 1}, 1440, "one thread"),
])
def test_fall_back_to_one_encode(kwargs: dict, height: int, why: str) -> None:
    frame = _frame(1280, height)
    encoder = JpegEncoder(80, "420", "rgb8", **kwargs)
    assert encoder.bands(height, 1280) is None, why
    jpeg = encoder.encode(frame)
    if "restart_interval" in kwargs:
        assert jpeg == JpegEncoder(80, "420", "rgb8", 40).encode(frame)
        assert parse_jpeg(jpeg).restart_interval == 40
    else:  # today's single simplejpeg call, byte for byte
        assert jpeg == simplejpeg.encode_jpeg(frame, 80, "RGB", "420")
        assert b"\xff\xdd" not in _headers(jpeg)
    assert encoder._pool is None  # no thread started for nothing


def test_threads_out_of_range_are_refused() -> None:
    for threads in (0, 5):
        with pytest.raises(ValueError, match="parameter 'jpeg_threads'"):
            JpegEncoder(threads=threads)


def test_a_stereo_pair_travels_as_rtp_jpeg_type_65_with_both_eyes_stamps() -> None:
    """The packed 1280x1440 pair: one 3600-MCU interval per eye, each over many packets
    (F/L fragments, RFC 2435 3.1.7), rebuilt by the depacketizer, both stamps readable."""
    w, h = 1280, 720
    pattern, frame = PatternGenerator(w, h), np.empty((2 * h, w, 3), np.uint8)
    encoder = JpegEncoder(80, "420", "rgb8", threads=2)
    packetizer, depacketizer = JpegPacketizer(ssrc=9, mtu=1400), JpegDepacketizer()
    try:
        for n in range(3):
            for eye, view in eye_views(frame, "top_bottom").items():
                pattern.render_into(view, n, 1000 + n, eye)
            packets = packetizer.packetize(encoder.encode(frame), n * 1500, 1000 + n, n)
            words = [parse_jpeg_packet(p).restart_word for p in packets]
            assert {parse_jpeg_packet(p).restart_interval for p in packets} == {3600}
            assert [w >> 14 for w in words].count(2) == 2  # each band starts a fragment run
            assert [w & 0x3FFF for w in words] == sorted(w & 0x3FFF for w in words)
            frames = [f for p in packets for f in depacketizer.push(p, 0)]
            assert len(frames) == 1
            image = simplejpeg.decode_jpeg(frames[0].jpeg, "RGB")
            stamps = read_eye_stamps(image, "top_bottom")
            assert stamps["left"].frame == stamps["right"].frame == n, stamps
    finally:
        encoder.close()


def test_close_ends_the_band_threads_and_they_never_hold_the_process() -> None:
    encoder = JpegEncoder(threads=3)
    encoder.encode(_frame(640, 480))
    assert sum(t.name.startswith("jpeg_band") for t in threading.enumerate()) >= 1
    encoder.close()
    assert not any(t.name.startswith("jpeg_band") for t in threading.enumerate())
    encoder.encode(_frame(640, 480))  # a frame after close starts them again
    encoder.close()
    # Never closed: the interpreter still exits at once.
    code = ("import numpy as np; from vr_stream_ros.codecs.jpeg import JpegEncoder; "
            "e = JpegEncoder(threads=4); e.encode(np.zeros((480, 640, 3), np.uint8)); "
            "print('encoded')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "encoded", done.stderr
