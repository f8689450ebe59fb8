"""camera_node's image_raw, image_raw/compressed and camera_info as a robot stack gets them:
a real rclpy subscriber in this process, a real camera_node process, real DDS."""

from __future__ import annotations

import time

import numpy as np
import pytest
from conftest import needs_ros

pytestmark = [needs_ros, pytest.mark.slow]

WIDTH, HEIGHT = 320, 240


def _receive(seconds: float, want: int) -> dict[str, list]:
    """Subscribe like a robot stack (sensor-data QoS), plus one RELIABLE image_raw
    subscriber that should get nothing from a best-effort publisher."""
    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
    from sensor_msgs.msg import CameraInfo, CompressedImage, Image

    from vr_stream_ros.msg import FrameRef
    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node("robot_stack", context=context)
    got: dict[str, list] = {"image": [], "compressed": [], "info": [], "ref": [],
                            "reliable_image": []}
    for kind, topic, key in ((Image, "image_raw", "image"),
                             (CompressedImage, "image_raw/compressed", "compressed"),
                             (CameraInfo, "camera_info", "info"),
                             (FrameRef, "frame_ref", "ref")):
        node.create_subscription(kind, topic, got[key].append, qos_profile_sensor_data)
    node.create_subscription(Image, "image_raw", got["reliable_image"].append,
                             QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE))
    executor = rclpy.executors.SingleThreadedExecutor(context=context)
    executor.add_node(node)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and min(
            len(got[k]) for k in ("image", "compressed", "info")) < want:
        executor.spin_once(timeout_sec=0.1)
    node.destroy_node()
    rclpy.shutdown(context=context)
    return got


def test_standard_topics_carry_the_frames(procs, ring_name) -> None:
    import simplejpeg

    from vr_stream_ros.camera.pattern import read_stamp
    procs.node("camera_node", f"ring_name:={ring_name}", f"width:={WIDTH}",
               f"height:={HEIGHT}", "fps:=30", "frame_id:=test_cam")
    got = _receive(40.0, want=10)
    log = procs.output("camera_node")
    assert len(got["image"]) >= 10, log
    assert len(got["compressed"]) >= 10, log
    assert len(got["info"]) >= 10, log

    refs = {(r.header.stamp.sec, r.header.stamp.nanosec): r for r in got["ref"]}
    matched = 0
    for image in got["image"]:
        assert (image.width, image.height, image.encoding) == (WIDTH, HEIGHT, "rgb8")
        assert image.step == WIDTH * 3 and len(image.data) == WIDTH * HEIGHT * 3
        assert image.header.frame_id == "test_cam"
        pixels = np.frombuffer(bytes(image.data), np.uint8).reshape(HEIGHT, WIDTH, 3)
        stamp = read_stamp(pixels)
        assert stamp is not None, "the raw pixels must carry the pattern's stamp"
        ref = refs.get((image.header.stamp.sec, image.header.stamp.nanosec))
        if ref is not None:  # the FrameRef of the same frame (best effort: most arrive)
            assert (stamp.frame, stamp.capture_ns) == (ref.seq, ref.capture_mono_ns)
            matched += 1
    assert matched >= 5, f"only {matched} images matched their FrameRef"

    for compressed in got["compressed"][:5]:
        assert compressed.format == "jpeg"
        decoded = simplejpeg.decode_jpeg(bytes(compressed.data), "RGB")
        assert decoded.shape == (HEIGHT, WIDTH, 3)
        assert read_stamp(decoded) is not None
    for info in got["info"]:
        assert (info.width, info.height) == (WIDTH, HEIGHT)
        assert info.header.frame_id == "test_cam"

    # Best effort, and the start-up line says so: a RELIABLE subscriber is not matched.
    assert got["reliable_image"] == []
    assert "best effort" in log and "RELIABLE subscriber gets nothing" in log, log
