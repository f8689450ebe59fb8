"""Bad parameters stop a node at start-up with one line naming the parameter."""

from __future__ import annotations

import pytest
from conftest import needs_ros, wait_for

from vr_stream_ros.ring.frame_ring import FrameRingWriter, FrameSpec

pytestmark = needs_ros

CASES = [
    ("camera_node", ["width:=-5"], "'width'"),
    ("camera_node", ["camera:=kinect"], "'camera'"),
    ("camera_node", ["fps:=500.0"], "'fps'"),
    ("camera_node", ["pixel_format:=yuv9"], "'pixel_format'"),
    ("camera_node", ["camera:=v4l2", "device:=/dev/video77"], "/dev/video77"),
    ("camera_node", ["camera:=file", "file_path:=/nonexistent/clip.mp4"], "/nonexistent/clip.mp4"),
    ("camera_node", ["camera:=picamera2"], "picamera2"),
    ("headset_bridge_node", ["headset_ip:=300.1.1.1"], "'headset_ip'"),
    ("headset_bridge_node", ["headset_port:=70000"], "'headset_port'"),
    ("headset_bridge_node", ["transport:=sctp"], "'transport'"),
    ("headset_bridge_node", ["ring_wait_s:=0.5"], "ring"),
    ("headset_bridge_node", ["transport:=webrtc", "webrtc_port:=0"], "'webrtc_port'"),
    ("headset_bridge_node", ["transport:=webrtc", "bitrate_mbps:=0.1"], "'bitrate_mbps'"),
    ("headset_bridge_node", ["transport:=webrtc", "max_viewers:=0"], "'max_viewers'"),
    ("headset_bridge_node", ["transport:=webrtc", "vr_quad:=sideways"], "'vr_quad'"),
]


@pytest.mark.parametrize(("node", "params", "named"), CASES,
                         ids=[f"{n}-{p[-1]}" for n, p, _ in CASES])
def test_bad_parameter_stops_node_with_clear_line(procs, ring_name, node, params, named) -> None:
    proc = procs.node(node, f"ring_name:={ring_name}", *params)
    code = proc.wait(timeout=30)
    out = procs.output(node)
    fatal = [line for line in out.splitlines() if "FATAL" in line]
    assert code == 2, out
    assert len(fatal) == 1, out
    assert named in fatal[0], fatal[0]
    assert "Traceback" not in out
    assert "Exception(" not in fatal[0], "the value, not an exception's repr"


@pytest.mark.parametrize(("width", "got"), [("-5", "-5"), ("5000", "5000")])
def test_size_out_of_range_is_quoted_plainly(procs, ring_name, width, got) -> None:
    proc = procs.node("camera_node", f"ring_name:={ring_name}", f"width:={width}")
    assert proc.wait(timeout=30) == 2
    assert f"parameter 'width': got {got}, expected an integer in 16..4096" in \
        procs.output("camera_node")


def test_headset_host_name_is_resolved(procs, ring_name, tmp_path) -> None:
    procs.node("camera_node", f"ring_name:={ring_name}")
    bridge = procs.node("headset_bridge_node", f"ring_name:={ring_name}",
                        "headset_ip:=localhost", f"sdp_path:={tmp_path / 's.sdp'}")
    assert wait_for(lambda: "RTP/UDP localhost" in procs.output("headset_bridge_node"), 20), \
        procs.output("headset_bridge_node")
    assert "c=IN IP4 127.0.0.1" in (tmp_path / "s.sdp").read_text()
    assert bridge.poll() is None


def test_bridge_refuses_a_ring_rtp_jpeg_cannot_carry(procs, ring_name) -> None:
    # camera_node alone takes 644 (for a detector); the bridge cannot send it.
    writer = FrameRingWriter(ring_name, FrameSpec(644, 720))
    try:
        bridge = procs.node("headset_bridge_node", f"ring_name:={ring_name}")
        assert bridge.wait(timeout=30) == 2
    finally:
        writer.close()
    fatal = [x for x in procs.output("headset_bridge_node").splitlines() if "FATAL" in x]
    assert len(fatal) == 1 and "644x720" in fatal[0] and "multiples of 8" in fatal[0]
