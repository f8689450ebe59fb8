"""The stream is standard: GStreamer and FFmpeg (Debian's) decode it frame-exact."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import numpy as np
import pytest
import simplejpeg
from conftest import free_port, wait_for
from debian_tools import ensure_debian_packages

from vr_stream_ros.rtp import (
    ABS_CAPTURE_TIME_URI,
    EXT_ABS_CAPTURE_TIME,
    EXT_FRAME_SEQ,
    FRAME_SEQ_URI,
)
from vr_stream_ros.rtp_jpeg import JpegPacketizer
from vr_stream_ros.sdp import make_sdp
from vr_stream_ros.synthetic_pattern import PatternGenerator, read_stamp
from vr_stream_ros.transport import UdpRtpSender

W, H, FPS, FRAMES = 1280, 720, 30.0, 120


def _udp_listening(port: int) -> bool:
    hex_port = f":{port:04X}"
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        with open(table) as f:
            if any(line.split()[1].endswith(hex_port) for line in f.readlines()[1:]):
                return True
    return False


def _send_stream(port: int) -> list[int]:
    pattern = PatternGenerator(W, H)
    packetizer = JpegPacketizer(ssrc=0x5EED, mtu=1400)
    sender = UdpRtpSender("127.0.0.1", port)
    sent = []
    start = time.monotonic()
    for n in range(FRAMES):
        capture_ns = time.monotonic_ns()
        jpeg = simplejpeg.encode_jpeg(pattern.render(n, capture_ns), 80, "RGB", "420")
        result = sender.send_frame(packetizer.packetize(
            jpeg, (capture_ns * 9 // 100_000) & 0xFFFFFFFF, capture_ns, n))
        if not result.dropped:
            sent.append(n)
        time.sleep(max(0.0, start + (n + 1) / FPS - time.monotonic()))
    sender.close()
    return sent


def _decoded_stamps(raw_path: str) -> list[int | None]:
    data = np.fromfile(raw_path, dtype=np.uint8)
    frame_bytes = W * H * 3
    frames = data[: len(data) // frame_bytes * frame_bytes].reshape(-1, H, W, 3)
    return [(s.frame if (s := read_stamp(f)) else None) for f in frames]


def _run_decoder(argv: list[str], port: int, raw_path: str) -> tuple[list[int], list]:
    decoder = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               start_new_session=True)
    try:
        assert wait_for(lambda: _udp_listening(port), 20), "decoder never bound its port"
        time.sleep(0.3)
        sent = _send_stream(port)
        time.sleep(1.0)
        decoder.send_signal(signal.SIGINT)
        _, err = decoder.communicate(timeout=20)
    finally:
        if decoder.poll() is None:
            os.killpg(decoder.pid, signal.SIGKILL)
            decoder.wait()
    assert os.path.exists(raw_path), err.decode(errors="replace")[-2000:]
    return sent, _decoded_stamps(raw_path)


def _check(name: str, sent: list[int], stamps: list) -> None:
    readable = [s for s in stamps if s is not None]
    print(f"{name}: decoded {len(stamps)} of {len(sent)} frames sent, "
          f"{len(readable)} with readable stamps")
    assert len(sent) == FRAMES
    assert len(readable) >= 0.95 * len(sent), f"{name}: {len(readable)}/{len(sent)}"
    assert readable == sorted(set(readable)), f"{name}: frames repeated or out of order"
    assert set(readable) <= set(sent)
    assert len(stamps) - len(readable) <= 0.05 * len(sent), f"{name}: unreadable frames"


@pytest.mark.slow
def test_gstreamer_decodes_the_stream(tmp_path) -> None:
    gst = ensure_debian_packages(
        "gst-launch-1.0", ["gstreamer1.0-tools", "gstreamer1.0-plugins-good",
                           "gstreamer1.0-plugins-base"])
    port, raw = free_port(), str(tmp_path / "gst.raw")
    caps = "application/x-rtp,media=video,clock-rate=90000,encoding-name=JPEG,payload=26"
    argv = [gst, "-e", "-q", "udpsrc", f"port={port}", "address=127.0.0.1", f"caps={caps}",
            "buffer-size=8388608", "!", "rtpjpegdepay", "!", "jpegdec", "!", "videoconvert", "!",
            "video/x-raw,format=RGB", "!", "filesink", f"location={raw}"]
    sent, stamps = _run_decoder(argv, port, raw)
    _check("GStreamer", sent, stamps)


@pytest.mark.slow
def test_ffmpeg_decodes_the_stream_from_our_sdp(tmp_path) -> None:
    ffmpeg = ensure_debian_packages("ffmpeg", ["ffmpeg"])
    port, raw = free_port(), str(tmp_path / "ffmpeg.raw")
    sdp = tmp_path / "stream.sdp"
    sdp.write_text(make_sdp("127.0.0.1", port, extmap={
        EXT_ABS_CAPTURE_TIME: ABS_CAPTURE_TIME_URI, EXT_FRAME_SEQ: FRAME_SEQ_URI}))
    argv = [ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", "-protocol_whitelist",
            "file,udp,rtp", "-buffer_size", "8388608", "-i", str(sdp), "-f", "rawvideo",
            "-pix_fmt", "rgb24", "-y", raw]
    sent, stamps = _run_decoder(argv, port, raw)
    _check("FFmpeg", sent, stamps)
