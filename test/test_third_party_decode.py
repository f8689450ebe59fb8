"""The stream is standard RTP/JPEG: Debian's GStreamer and FFmpeg decode ours, we decode theirs.

Forward: 120 frames of 1280x720 at 30 fps from our packetizer (plain UDP socket) into
``gst-launch-1.0 udpsrc ! rtpjpegdepay ! jpegdec`` and into ``ffmpeg -i stream.sdp``
(the SDP from make_sdp); both write raw RGB, whose pixel stamps must name the frames
we sent, once each and in order; as one JPEG, with restart markers, and as two bands
encoded at once and spliced (jpeg_threads). Reverse: GStreamer's ``rtpjpegpay`` and
FFmpeg's RTP muxer send our pattern, and JpegDepacketizer must rebuild every frame.
Stereo: the synthetic pair's 2x1280x720 packed top_bottom (1280x1440, one JPEG per pair,
whole or as two bands) decoded by FFmpeg from our SDP (with its a=x-frame-layout), both
eyes' stamps read back.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time

import numpy as np
import pytest
import simplejpeg
from conftest import free_port, wait_for
from debian_tools import ensure_debian_packages

from vr_stream_ros.camera import CameraConfig, create_backend
from vr_stream_ros.camera.pattern import PatternGenerator, read_eye_stamps, read_stamp
from vr_stream_ros.codecs.jpeg import JpegEncoder
from vr_stream_ros.rtp.jpeg import JpegDepacketizer, JpegPacketizer
from vr_stream_ros.rtp.packet import FRAME_EXTMAP
from vr_stream_ros.rtp.sdp import make_sdp

W, H, FPS, FRAMES = 1280, 720, 30.0, 120
GST_PACKAGES = ["gstreamer1.0-tools", "gstreamer1.0-plugins-good", "gstreamer1.0-plugins-base",
                "gstreamer1.0-libav"]
# gst-launch-1.0 alone may come without the plugins: check the ones the tests use.
GST_PROBE = ["sh", "-c", "for e in rtpjpegdepay jpegdec videoconvert rawvideoparse; do "
             "gst-inspect-1.0 --exists $e || exit 1; done"]
RTP_JPEG_CAPS = "application/x-rtp,media=video,clock-rate=90000,encoding-name=JPEG,payload=26"


def _udp_listening(port: int) -> bool:
    hex_port = f":{port:04X}"
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        with open(table) as f:
            if any(line.split()[1].endswith(hex_port) for line in f.readlines()[1:]):
                return True
    return False


class _Sender:
    """Our packetizer on a plain UDP socket, sending the stamped pattern."""

    def __init__(self, port: int, restart_interval: int = 0, stereo: bool = False,
                 threads: int = 1) -> None:
        self.port = port
        self.pattern = PatternGenerator(W, H)
        self.pair = None  # stereo: the synthetic pair, packed top_bottom
        if stereo:
            config = CameraConfig(width=W, height=H, fps=240.0, stereo=True)
            self.pair, self.packed = create_backend(config), np.empty(config.shape, np.uint8)
            self.pair.open()
        self.encoder = JpegEncoder(80, "420", "rgb8", restart_interval, threads)
        self.packetizer = JpegPacketizer(ssrc=0x5EED, mtu=1400)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.next_frame = 0

    def send_frame(self) -> int:
        n, self.next_frame = self.next_frame, self.next_frame + 1
        capture_ns = time.monotonic_ns()
        if self.pair is not None:
            capture_ns = self.pair.capture_into(self.packed, n)
            jpeg = self.encoder.encode(self.packed)
        else:
            jpeg = self.encoder.encode(self.pattern.render(n, capture_ns))
        for packet in self.packetizer.packetize(jpeg, (capture_ns * 9 // 100_000) & 0xFFFFFFFF,
                                                capture_ns, n):
            self.sock.sendto(packet, ("127.0.0.1", self.port))
        return n

    def send_stream(self, fps: float = FPS) -> list[int]:
        """FRAMES frames paced at ``fps``; returns their numbers."""
        start = time.monotonic()
        sent = []
        for i in range(FRAMES):
            sent.append(self.send_frame())
            time.sleep(max(0.0, start + (i + 1) / fps - time.monotonic()))
        return sent


def _decoded_stamps(raw_path: str, stereo: bool = False) -> list[int | None]:
    height = 2 * H if stereo else H
    data = np.fromfile(raw_path, dtype=np.uint8)
    frame_bytes = W * height * 3
    frames = data[: len(data) // frame_bytes * frame_bytes].reshape(-1, height, W, 3)
    if stereo:  # a frame counts when both eyes show it
        eyes = [read_eye_stamps(f, "top_bottom") for f in frames]
        return [e["left"].frame if e["left"] and e["right"] and e["left"].frame ==
                e["right"].frame else None for e in eyes]
    return [(s.frame if (s := read_stamp(f)) else None) for f in frames]


def _stop_decoder(decoder: subprocess.Popen, sender: _Sender) -> bytes:
    """SIGINT, then keep sending frames until it exits.

    GStreamer (-e) turns SIGINT into EOS at once. FFmpeg notices the signal only when
    a read returns a packet, and its RTP demuxer swallows anything short of a whole
    frame (a second SIGINT would abort its final write), so it gets whole frames.
    """
    decoder.send_signal(signal.SIGINT)
    deadline = time.monotonic() + 20
    while decoder.poll() is None and time.monotonic() < deadline:
        sender.send_frame()
        with contextlib.suppress(subprocess.TimeoutExpired):
            decoder.wait(timeout=0.2)
    return decoder.communicate(timeout=5)[1]


def _run_decoder(argv: list[str], port: int, raw_path: str,
                 restart_interval: int = 0, stereo: bool = False,
                 fps: float = FPS, threads: int = 1) -> tuple[list[int], list]:
    """Start a decoder, stream to it, stop it; (frames sent, stamps of frames decoded).

    Frames sent while stopping it may be decoded too: they are left out of the stamps.
    """
    decoder = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               start_new_session=True)
    sender = _Sender(port, restart_interval, stereo, threads)
    try:
        assert wait_for(lambda: _udp_listening(port), 20), "decoder never bound its port"
        time.sleep(0.3)  # bound is not yet reading: FFmpeg probes the SDP first
        sent = sender.send_stream(fps)
        time.sleep(1.0)
        err = _stop_decoder(decoder, sender)
    finally:
        sender.sock.close()
        sender.encoder.close()
        if decoder.poll() is None:
            os.killpg(decoder.pid, signal.SIGKILL)
            decoder.wait()
    assert os.path.exists(raw_path), err.decode(errors="replace")[-2000:]
    stamps = _decoded_stamps(raw_path, stereo)
    return sent, [s for s in stamps if s is None or s < FRAMES]


def _check(name: str, sent: list[int], stamps: list) -> None:
    readable = [s for s in stamps if s is not None]
    print(f"{name}: decoded {len(stamps)} of {len(sent)} frames sent, "
          f"{len(readable)} with readable stamps")
    assert len(sent) == FRAMES
    assert len(readable) >= 0.95 * len(sent), f"{name}: {len(readable)}/{len(sent)}"
    assert readable == sorted(set(readable)), f"{name}: frames repeated or out of order"
    assert set(readable) <= set(sent)
    assert len(stamps) - len(readable) <= 0.05 * len(sent), f"{name}: unreadable frames"


# plain: one JPEG (simplejpeg); rst40: restart markers every 40 MCUs, packets cut at them
# (RFC 2435 types 64/65 with the restart marker header); bands2: two bands encoded at once
# and spliced with one restart marker (type 65, each band's interval in F/L fragments).
ENCODINGS = pytest.mark.parametrize(("restart_interval", "threads"),
                                    [(0, 1), (40, 1), (0, 2)], ids=["plain", "rst40", "bands2"])


@pytest.mark.slow
@ENCODINGS
def test_gstreamer_decodes_our_stream(tmp_path, restart_interval: int, threads: int) -> None:
    gst = ensure_debian_packages("gst-launch-1.0", GST_PACKAGES, GST_PROBE)
    port, raw = free_port(), str(tmp_path / "gst.raw")
    argv = [gst, "-e", "-q", "udpsrc", f"port={port}", "address=127.0.0.1",
            f"caps={RTP_JPEG_CAPS}", "buffer-size=8388608", "!", "rtpjpegdepay", "!", "jpegdec",
            "!", "videoconvert", "!", "video/x-raw,format=RGB", "!", "filesink",
            f"location={raw}"]
    sent, stamps = _run_decoder(argv, port, raw, restart_interval, threads=threads)
    _check("GStreamer", sent, stamps)


@pytest.mark.slow
@ENCODINGS
def test_ffmpeg_decodes_our_stream_from_our_sdp(tmp_path, restart_interval: int,
                                                threads: int) -> None:
    ffmpeg = ensure_debian_packages("ffmpeg", ["ffmpeg"])
    port, raw = free_port(), str(tmp_path / "ffmpeg.raw")
    sdp = tmp_path / "stream.sdp"
    sdp.write_text(make_sdp("127.0.0.1", port, extmap=FRAME_EXTMAP))  # our two a=extmap
    argv = [ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", "-protocol_whitelist",
            "file,udp,rtp", "-buffer_size", "8388608", "-i", str(sdp), "-fps_mode", "passthrough",
            "-f", "rawvideo", "-pix_fmt", "rgb24", "-y", raw]
    sent, stamps = _run_decoder(argv, port, raw, restart_interval, threads=threads)
    _check("FFmpeg", sent, stamps)


@pytest.mark.slow
@pytest.mark.parametrize("threads", [1, 2], ids=["whole", "bands2"])
def test_ffmpeg_decodes_our_stereo_stream_from_our_sdp(tmp_path, threads: int) -> None:
    ffmpeg = ensure_debian_packages("ffmpeg", ["ffmpeg"])
    port, raw = free_port(), str(tmp_path / "stereo.raw")
    sdp = tmp_path / "stereo.sdp"
    sdp.write_text(make_sdp("127.0.0.1", port, extmap=FRAME_EXTMAP, frame_layout="top_bottom"))
    argv = [ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", "-protocol_whitelist",
            "file,udp,rtp", "-buffer_size", "8388608", "-i", str(sdp), "-fps_mode", "passthrough",
            "-f", "rawvideo", "-pix_fmt", "rgb24", "-y", raw]
    # 20 fps: this checks that FFmpeg decodes the format; throughput is make bench-stereo's
    # (at 30 fps a loaded CI machine let FFmpeg fall behind and drop a few frames).
    sent, stamps = _run_decoder(argv, port, raw, stereo=True, fps=20.0, threads=threads)
    _check("FFmpeg stereo 1280x1440", sent, stamps)


REVERSE_W, REVERSE_H, REVERSE_FRAMES = 640, 480, 60


def _sender_argv(tool: str, raw: str, port: int) -> list[str]:
    if tool == "gstreamer":
        gst = ensure_debian_packages("gst-launch-1.0", GST_PACKAGES, GST_PROBE)
        return [gst, "-q", "filesrc", f"location={raw}", "!", "rawvideoparse",
                f"width={REVERSE_W}", f"height={REVERSE_H}", "format=rgb", "framerate=30/1",
                "!", "videoconvert", "!", "video/x-raw,format=I420", "!", "jpegenc",
                "quality=85", "!", "rtpjpegpay", "!", "udpsink", "host=127.0.0.1",
                f"port={port}"]
    ffmpeg = ensure_debian_packages("ffmpeg", ["ffmpeg"])
    # FFmpeg's MJPEG encoder optimises Huffman tables unless told: RFC 2435 forbids that.
    return [ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", "-re", "-f", "rawvideo",
            "-pix_fmt", "rgb24", "-s", f"{REVERSE_W}x{REVERSE_H}", "-r", "30", "-i", raw,
            "-c:v", "mjpeg", "-huffman", "default", "-pix_fmt", "yuvj420p", "-q:v", "3",
            "-f", "rtp", f"rtp://127.0.0.1:{port}"]


@pytest.mark.slow
@pytest.mark.parametrize("tool", ["gstreamer", "ffmpeg"])
def test_we_decode_their_rtp_jpeg(tmp_path, tool: str) -> None:
    raw = str(tmp_path / "pattern.rgb")
    pattern = PatternGenerator(REVERSE_W, REVERSE_H)
    with open(raw, "wb") as f:
        for n in range(REVERSE_FRAMES):
            f.write(pattern.render(n, n).tobytes())
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(0.2)
        sender = subprocess.Popen(_sender_argv(tool, raw, sock.getsockname()[1]),
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                  start_new_session=True)
        depacketizer, frames = JpegDepacketizer(), []
        deadline = time.monotonic() + 30
        try:
            while time.monotonic() < deadline:
                try:
                    frames += depacketizer.push(sock.recv(65536), time.monotonic_ns())
                except TimeoutError:
                    if sender.poll() is not None:
                        break
        finally:
            if sender.poll() is None:
                os.killpg(sender.pid, signal.SIGKILL)
            err = sender.communicate(timeout=10)[1].decode(errors="replace")
    assert sender.returncode == 0, err[-2000:]
    stamps = []
    for frame in frames:
        image = simplejpeg.decode_jpeg(frame.jpeg, colorspace="RGB")
        assert image.shape == (REVERSE_H, REVERSE_W, 3)
        stamp = read_stamp(image)
        stamps.append(stamp.frame if stamp else None)
    d = depacketizer
    print(f"{tool} -> JpegDepacketizer: {len(frames)}/{REVERSE_FRAMES} frames, "
          f"{d.packets} packets, {d.malformed} malformed, {d.frames_incomplete} incomplete")
    assert d.malformed == 0
    assert len(frames) >= 0.95 * REVERSE_FRAMES
    assert None not in stamps, f"unreadable pixel stamps: {stamps}"
    assert stamps == sorted(set(stamps)) and set(stamps) <= set(range(REVERSE_FRAMES)), stamps
