"""The reference receiver in a real process, fed 720p RTP/JPEG by a plain socket sender."""

from __future__ import annotations

import re
import signal
import socket
import time
from collections.abc import Iterator

import pytest
import simplejpeg
from conftest import Processes, read_json, wait_for

from vr_stream_ros.camera.pattern import PatternGenerator
from vr_stream_ros.rtp.jpeg import JpegPacketizer
from vr_stream_ros.rtp.packet import frame_rfc4571

W, H, FPS = 1280, 720, 30.0
SECOND_LINE = re.compile(r"^\[receiver\] +\d+\.\d fps \| recv \d+ lost \d+ \| decoded \d+ \| "
                         r"e2e p50 [\d.]+ p95 [\d.]+ p99 [\d.]+ ms \| [\d.]+ Mbit/s$", re.M)


def _frames(first: int, count: int, packetizer: JpegPacketizer | None = None
            ) -> Iterator[list[bytes]]:
    """Packets of frames ``first``..``first+count-1``, rendered and encoded when asked for,
    paced at FPS; the pattern carries each frame's number and capture time."""
    pattern = PatternGenerator(W, H)
    packetizer = packetizer or JpegPacketizer(ssrc=0xC0FFEE)
    start = time.monotonic()
    for n in range(first, first + count):
        capture_ns = time.monotonic_ns()
        jpeg = simplejpeg.encode_jpeg(pattern.render(n, capture_ns), 80, "RGB", "420")
        yield packetizer.packetize(jpeg, (capture_ns * 9 // 100_000) & 0xFFFFFFFF, capture_ns, n)
        time.sleep(max(0.0, start + (n - first + 1) / FPS - time.monotonic()))


def _udp_bound(port: int) -> bool:
    with open("/proc/net/udp") as f:
        return any(line.split()[1].endswith(f":{port:04X}") for line in f.readlines()[1:])


def _connect(port: int) -> socket.socket | None:
    try:
        return socket.create_connection(("127.0.0.1", port), timeout=2)
    except OSError:
        return None


def _stop(procs: Processes, proc, sig: int) -> None:
    proc.send_signal(sig)
    assert proc.wait(timeout=15) == 0, "receiver did not exit 0 on its signal"


def _assert_all_in_order(summary: dict, first: int, last: int, missing: int = 0) -> None:
    stamps = summary["stamps"]
    expected = list(range(first, last + 1))
    if missing:
        expected.remove(missing)
    assert stamps["frames"] == expected, summary
    assert (stamps["first"], stamps["last"], stamps["count"]) == (first, last, len(expected))
    assert stamps["in_order"] == len(expected)
    assert stamps["out_of_order"] == 0 and stamps["unreadable"] == 0
    assert summary["frames_decoded"] == summary["frames_received"] == len(expected)
    assert summary["decode_errors"] == 0 and summary["malformed_packets"] == 0


def test_udp_720p_all_frames_decoded_in_order_with_latency(tmp_path, port) -> None:
    procs, summary = Processes(tmp_path), tmp_path / "summary.json"
    try:
        receiver = procs.receiver("--port", str(port), "--bind", "127.0.0.1",
                                  "--summary-json", str(summary))
        assert wait_for(lambda: _udp_bound(port), 15), procs.output("receiver")
        frames = 75
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            for packets in _frames(0, frames):
                for p in packets:
                    sock.sendto(p, ("127.0.0.1", port))
        time.sleep(1.2)  # decode the tail, print another line
        _stop(procs, receiver, signal.SIGTERM)
        out = procs.output("receiver")
    finally:
        procs.stop_all()
    s = read_json(summary)
    _assert_all_in_order(s, 0, frames - 1)
    assert s["frames_lost"] == 0 and s["packets_lost"] == 0
    assert s["same_clock"] is True and s["latency_ms"]["p50"] > 0  # loopback: same clock
    for stage in ("capture_to_first_packet", "first_to_last_packet", "last_packet_to_decoded"):
        assert s["stages_ms"][stage] is not None, stage
    assert SECOND_LINE.search(out), out
    assert "[receiver] summary" in out and "75 decoded" in out
    print(f"\nUDP: {s['frames_decoded']} frames, e2e {s['latency_ms']}")


def test_tcp_sender_reconnecting_mid_frame(tmp_path, port) -> None:
    procs, summary = Processes(tmp_path), tmp_path / "summary.json"
    try:
        receiver = procs.receiver("--port", str(port), "--bind", "127.0.0.1", "--tcp", "--quiet",
                                  "--summary-json", str(summary))
        conn = wait_for(lambda: _connect(port), 15)
        assert conn, procs.output("receiver")
        packetizer = JpegPacketizer(ssrc=0xC0FFEE)  # one sender, two connections
        for packets in _frames(0, 30, packetizer):
            conn.sendall(b"".join(frame_rfc4571(p) for p in packets))
        # Frame 30: the connection breaks half-way through it (mid RFC 4571 record).
        cut = b"".join(frame_rfc4571(p) for p in next(_frames(30, 1, packetizer)))
        conn.sendall(cut[: len(cut) // 2 + 7])
        conn.close()
        conn = wait_for(lambda: _connect(port), 15)
        assert conn, procs.output("receiver")
        for packets in _frames(31, 30, packetizer):
            conn.sendall(b"".join(frame_rfc4571(p) for p in packets))
        time.sleep(1.0)
        conn.close()
        _stop(procs, receiver, signal.SIGINT)
    finally:
        procs.stop_all()
    s = read_json(summary)
    _assert_all_in_order(s, 0, 60, missing=30)
    assert s["frames_lost"] == 1, s
    assert 0 < s["packets_lost"] < 20, s  # the second half of frame 30
    assert s["transport"] == "tcp" and s["latency_ms"] is not None


def test_duration_ends_an_idle_receiver_with_an_empty_summary(tmp_path, port) -> None:
    procs, summary = Processes(tmp_path), tmp_path / "summary.json"
    try:
        start = time.monotonic()
        receiver = procs.receiver("--port", str(port), "--bind", "127.0.0.1", "--duration", "1",
                                  "--summary-json", str(summary))
        assert receiver.wait(timeout=20) == 0, procs.output("receiver")
        elapsed = time.monotonic() - start
    finally:
        procs.stop_all()
    s = read_json(summary)
    assert s["frames_decoded"] == 0 and s["stamps"]["count"] == 0
    assert s["stamps"]["first"] is None and s["latency_ms"] is None
    assert s["duration_s"] >= 1.0
    print(f"\nidle receiver with --duration 1 exited after {elapsed:.2f} s")


def test_latency_is_withheld_when_the_clock_is_not_shared(tmp_path, port) -> None:
    procs, summary = Processes(tmp_path), tmp_path / "summary.json"
    try:
        receiver = procs.receiver("--port", str(port), "--bind", "127.0.0.1", "--duration", "30",
                                  "--no-assume-same-clock", "--summary-json", str(summary))
        assert wait_for(lambda: _udp_bound(port), 15), procs.output("receiver")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            for packets in _frames(0, 10):
                for p in packets:
                    sock.sendto(p, ("127.0.0.1", port))
        time.sleep(1.2)
        _stop(procs, receiver, signal.SIGINT)
        out = procs.output("receiver")
    finally:
        procs.stop_all()
    s = read_json(summary)
    _assert_all_in_order(s, 0, 9)
    assert s["same_clock"] is False and s["latency_ms"] is None
    assert "e2e n/a" in out and "latency          not reported" in out


def test_frames_arriving_out_of_order_are_counted_so(tmp_path, port) -> None:
    procs, summary = Processes(tmp_path), tmp_path / "summary.json"
    try:
        receiver = procs.receiver("--port", str(port), "--bind", "127.0.0.1", "--quiet",
                                  "--summary-json", str(summary))
        assert wait_for(lambda: _udp_bound(port), 15), procs.output("receiver")
        frames = list(_frames(0, 8))
        frames[4], frames[5] = frames[5], frames[4]  # frame 5 overtakes frame 4
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            for packets in frames:
                for p in packets:
                    sock.sendto(p, ("127.0.0.1", port))
                time.sleep(1 / FPS)
        time.sleep(1.0)
        _stop(procs, receiver, signal.SIGTERM)
    finally:
        procs.stop_all()
    s = read_json(summary)
    stamps = s["stamps"]
    assert stamps["frames"] == list(range(8)), s  # sorted, whatever the arrival order
    assert (stamps["in_order"], stamps["out_of_order"], stamps["unreadable"]) == (7, 1, 0)
    assert s["frames_lost"] == 0 and s["frames_decoded"] == 8


@pytest.mark.parametrize("argv", [["--port", "0"], ["--port", "70000"]])
def test_bad_port_is_refused(tmp_path, argv) -> None:
    procs = Processes(tmp_path)
    try:
        proc = procs.receiver(*argv)
        assert proc.wait(timeout=20) == 2
    finally:
        procs.stop_all()
    assert f"parameter '--port': got {argv[1]}, expected an integer in 1..65535" in \
        procs.output("receiver")
