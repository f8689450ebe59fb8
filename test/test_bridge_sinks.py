"""The bridge's sinks and video loop with real rings and real sockets (no ROS but the
LatencyStats check): torn frames, TCP flushing between frames, frame loss from the
headset's reports, the recording at shutdown, and H.264 at the ring's frame rate."""

from __future__ import annotations

import socket
import threading
import time
import uuid

import numpy as np
import pytest
from conftest import needs_ros, read_json, wait_for
from test_transport import _TcpReceiver

from vr_stream_ros.camera.pattern import PatternGenerator
from vr_stream_ros.codecs.jpeg import JpegEncoder
from vr_stream_ros.latency.profiler import LatencyProfiler
from vr_stream_ros.net.senders import TcpRtpSender, UdpRtpSender
from vr_stream_ros.ring.frame_ring import FrameRingReader, FrameRingWriter, FrameSpec
from vr_stream_ros.ring.newest import NewestFrames
from vr_stream_ros.rtp.jpeg import JpegDepacketizer
from vr_stream_ros.rtp.rtcp import (
    FrameStamps,
    ReportBlock,
    frame_stamps_app,
    middle32,
    parse_compound,
    receiver_reference_time,
    receiver_report,
)
from vr_stream_ros.sinks.base import Outcome
from vr_stream_ros.sinks.frame_loss import FrameLossCounter
from vr_stream_ros.sinks.rtp import FLUSH_RETRY_S, RtpJpegSink, TcpRtpJpegSink
from vr_stream_ros.sinks.stream_stats import StreamStats
from vr_stream_ros.sinks.video_loop import VideoLoop


@pytest.fixture
def ring():
    """A 2-slot 320x240 ring at 30 fps with its writer, a reader and a pattern."""
    name = f"vrtest_sink_{uuid.uuid4().hex[:8]}"
    writer = FrameRingWriter(name, FrameSpec(320, 240, 3, "rgb8", 30.0), slots=2)
    reader = FrameRingReader(name)
    pattern = PatternGenerator(320, 240)

    def publish() -> int:
        loan = writer.loan()
        now = time.monotonic_ns()
        pattern.render_into(loan.array, loan.seq, now)
        writer.publish(loan, now)
        return loan.seq

    yield writer, reader, publish
    reader.close()
    writer.close()


@pytest.fixture
def headset():
    """A UDP socket standing in for the headset."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(2.0)
    yield sock
    sock.close()


def _udp_loop(reader, headset_port: int) -> tuple[VideoLoop, RtpJpegSink]:
    stats = StreamStats(RtpJpegSink.stages)
    sink = RtpJpegSink(UdpRtpSender("127.0.0.1", headset_port), JpegEncoder(80), ssrc=0x1234,
                       mtu=1400, rtcp_interval_s=60.0, stats=stats)
    return VideoLoop(NewestFrames(reader), sink, stats), sink


def _drain(sock: socket.socket) -> list[bytes]:
    out = []
    sock.settimeout(0.3)
    try:
        while True:
            out.append(sock.recv(65536))
    except TimeoutError:
        return out


def test_ring_carries_the_cameras_frame_rate(ring) -> None:
    _writer, reader, _publish = ring
    assert reader.spec.fps == 30.0


def test_a_lapped_frame_is_counted_torn_and_not_sent(ring, headset) -> None:
    _writer, reader, publish = ring
    loop, sink = _udp_loop(reader, headset.getsockname()[1])
    publish()
    view = loop.newest.take(timeout=1.0)
    assert view is not None and view.seq == 0
    publish()
    publish()  # frame 2 goes into frame 0's slot: the writer lapped the reader
    assert loop.deliver(view, time.monotonic_ns()).outcome is Outcome.TORN
    assert _drain(headset) == [], "a torn frame must not reach the headset"
    view = loop.newest.take(timeout=1.0)
    assert view is not None and view.seq == 2
    assert loop.deliver(view, time.monotonic_ns()).outcome is Outcome.SENT
    frames = JpegDepacketizer()
    assert [f.frame_seq for p in _drain(headset) for f in frames.push(p, 0)] == [2]
    window = loop.take_window()
    assert (window.frames_torn, window.frames_sent, window.frames_skipped) == (1, 1, 1)
    sink.close()


@needs_ros
def test_frames_torn_reaches_latency_stats(ring, headset) -> None:
    from vr_stream_ros.ros.latency_stats import latency_stats
    _writer, reader, publish = ring
    loop, sink = _udp_loop(reader, headset.getsockname()[1])
    publish()
    view = loop.newest.take(timeout=1.0)
    publish()
    publish()
    loop.deliver(view, time.monotonic_ns())
    msg = latency_stats(loop.take_window())
    assert (msg.frames_torn, msg.frames_sent) == (1, 0)
    sink.close()


def test_frame_loss_counter_judges_only_frames_before_a_reported_one() -> None:
    loss = FrameLossCounter()
    for seq in range(10, 20):
        loss.frame_sent(seq)
    loss.frames_reported([12, 13])  # first report: 10 and 11 are not judged
    assert loss.lost == 0
    loss.frames_reported([15, 17])  # 14 and 16 never decoded
    assert loss.lost == 2
    loss.frames_reported([16])  # too late: already judged
    assert loss.lost == 2
    loss.frame_sent(0)  # camera restart: seq from 0, 18 and 19 are not judged
    loss.frame_sent(1)
    loss.frame_sent(2)
    loss.frames_reported([19])  # a stale report from before the restart
    loss.frames_reported([1, 2])
    assert loss.lost == 2


def test_headset_reports_give_packets_lost_and_frames_lost(ring, headset) -> None:
    _writer, reader, publish = ring
    loop, sink = _udp_loop(reader, headset.getsockname()[1])
    for _ in range(6):
        publish()
        view = loop.newest.take(timeout=1.0)
        assert loop.deliver(view, time.monotonic_ns()).outcome is Outcome.SENT
    _drain(headset)
    sink.idle(time.monotonic_ns())  # the sender report
    headset.settimeout(2.0)
    data, bridge = headset.recvfrom(65536)
    sr = parse_compound(data).sender_reports[0]
    now = time.monotonic_ns()
    decoded = [FrameStamps(seq, now, now, now) for seq in (0, 1, 3, 5)]  # 2, 4 never decoded
    block = ReportBlock(sink.ssrc, 0.1, 17, 500, 0, middle32(sr.ntp), 0)
    headset.sendto(receiver_report(0x9999, [block]) + receiver_reference_time(0x9999, now)
                   + frame_stamps_app(0x9999, decoded), bridge)

    def reported():
        sink.idle(time.monotonic_ns())
        return sink.headset(time.monotonic_ns()).fresh

    assert wait_for(reported, 5)
    status = sink.headset(time.monotonic_ns())
    assert (status.packets_lost, status.frames_lost) == (17, 2)
    assert loop.take_window().summaries["capture_to_decoded"].samples == 4
    sink.close()


def test_tcp_sink_pushes_a_frames_rest_on_between_frames(port) -> None:
    """The kernel takes part of a big frame; the idle work between frames must send the
    rest, not leave it waiting for the next frame."""
    name = f"vrtest_tcp_{uuid.uuid4().hex[:8]}"
    receiver = _TcpReceiver(port, rcvbuf=4096, reading=False)  # stalled at first
    sender = TcpRtpSender("127.0.0.1", port, sndbuf=4096)
    stats = StreamStats(RtpJpegSink.stages)
    sink = TcpRtpJpegSink(sender, JpegEncoder(95), ssrc=7, mtu=1400, rtcp_interval_s=60.0,
                          stats=stats)
    noise = np.random.default_rng(1).integers(0, 256, (720, 1280, 3), dtype=np.uint8)
    try:
        with FrameRingWriter(name, FrameSpec(1280, 720, 3)) as writer, \
                FrameRingReader(name) as reader:
            writer.write(noise, time.monotonic_ns())
            view = reader.read(0)
            # The first sends only start the connection; then the frame goes in part.
            assert wait_for(lambda: sink.send(view, time.monotonic_ns(), reader.is_intact)
                            .outcome is Outcome.SENT, 5)
            assert sender.pending_bytes > 0, "the frame should not fit a stalled receiver"
            assert sink.idle(time.monotonic_ns()) <= FLUSH_RETRY_S  # comes back soon
            receiver.reading.set()

            def flushed() -> bool:
                sink.idle(time.monotonic_ns())
                return sender.pending_bytes == 0

            assert wait_for(flushed, 10), f"{sender.pending_bytes} bytes still waiting"
            depacketizer = JpegDepacketizer()
            complete = []

            def whole_frame() -> bool:
                while receiver.packets:
                    complete.extend(depacketizer.push(receiver.packets.pop(0), 0))
                return bool(complete)

            assert wait_for(whole_frame, 10)
            assert complete[0].frame_seq == 0
    finally:
        sink.close()
        receiver.close()


def test_recording_is_exported_whole_while_a_viewer_still_reports(tmp_path) -> None:
    """A viewer thread (WebRTC's) may report while close() exports: no torn export, and
    what comes after is counted, not written."""
    stats = StreamStats(("browser_displayed",), LatencyProfiler())
    stop = threading.Event()
    errors: list[BaseException] = []

    def viewer() -> None:
        n = 0
        try:
            while not stop.is_set():
                stats.viewer_samples(n, {"browser_displayed": 1_000_000},
                                     {"browser_displayed": n})
                n += 1
        except BaseException as exc:  # reported below
            errors.append(exc)

    thread = threading.Thread(target=viewer)
    thread.start()
    try:
        time.sleep(0.1)  # the viewer thread is recording
        path = tmp_path / "rec.json"
        written = stats.export(str(path))
        assert wait_for(lambda: stats.marks_after_export > 0, 5)
    finally:
        stop.set()
        thread.join(5)
    assert errors == []
    assert written > 0
    frames = read_json(path)["frames"]
    assert len(frames) == written
    assert [f["frame"] for f in frames] == list(range(written))  # every mark, in order


def test_h264_rate_control_uses_the_given_frame_rate() -> None:
    pytest.importorskip("av")
    from vr_stream_ros.codecs.h264 import H264Encoder
    # 6 Mbit/s: 1.5 frame periods of bits are 300 kbit at 30 fps, 150 kbit at 60 fps.
    assert H264Encoder(320, 240, 30.0, 6_000_000).vbv_kbit == 300
    assert H264Encoder(320, 240, 60.0, 6_000_000).vbv_kbit == 150
    with pytest.raises(ValueError, match="frame rate"):
        H264Encoder(320, 240, 0.0, 6_000_000)


@needs_ros
@pytest.mark.slow
def test_webrtc_bridge_encodes_at_the_cameras_rate(procs, ring_name, port) -> None:
    pytest.importorskip("aiortc")
    procs.node("camera_node", f"ring_name:={ring_name}", "fps:=30", "width:=320",
               "height:=240")
    bridge = procs.node("headset_bridge_node", f"ring_name:={ring_name}",
                        "transport:=webrtc", f"webrtc_port:={port}", "webrtc_tls:=false",
                        "webrtc_bind:=127.0.0.1")
    assert wait_for(lambda: "-> H.264" in procs.output("headset_bridge_node"), 30), \
        procs.output("headset_bridge_node")
    assert "320x240 @ 30 fps -> H.264" in procs.output("headset_bridge_node")
    assert bridge.poll() is None
