"""camera_node's calibration as the robot stack uses it: camera_info_url read at start,
set_camera_info (what cameracalibrator calls) writing the file, a bad file stopping the
node with one line. Real camera_node processes, a real rclpy client, real DDS."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import yaml
from conftest import needs_ros

from vr_stream_ros.camera import calibration
from vr_stream_ros.graph.topics import MONO, NODE_TOPICS

pytestmark = [needs_ros]

WIDTH, HEIGHT = 320, 240
K = [300.5, 0.0, 160.25, 0.0, 301.5, 120.75, 0.0, 0.0, 1.0]
D = [-0.25, 0.0625, 0.001, -0.002, 0.0]
P = [290.0, 0.0, 161.0, 0.0, 0.0, 291.0, 121.0, 0.0, 0.0, 0.0, 1.0, 0.0]
R = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]


class Client:
    """A robot-stack node in the test process: camera_info subscriptions, service calls."""

    def __init__(self, rclpy, context) -> None:
        from rclpy.executors import SingleThreadedExecutor
        self.rclpy = rclpy
        self.node = rclpy.create_node("calibration_client", context=context)
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)

    def camera_info(self, topic: str, timeout: float, want=lambda info: True):
        """The first message on ``topic`` for which ``want`` holds (None if none came)."""
        from sensor_msgs.msg import CameraInfo
        got: list = []
        sub = self.node.create_subscription(CameraInfo, topic, got.append, 1)
        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                self.executor.spin_once(timeout_sec=0.1)
                for info in got:
                    if want(info):
                        return info
                got.clear()
            return None
        finally:
            self.node.destroy_subscription(sub)

    def set_camera_info(self, service: str, info, timeout: float):
        """Call SetCameraInfo on ``service``; the response."""
        from sensor_msgs.srv import SetCameraInfo
        client = self.node.create_client(SetCameraInfo, service)
        try:
            assert client.wait_for_service(timeout_sec=timeout), f"no service {service}"
            future = client.call_async(SetCameraInfo.Request(camera_info=info))
            self.executor.spin_until_future_complete(future, timeout_sec=timeout)
            assert future.done(), f"{service}: no answer in {timeout} s"
            return future.result()
        finally:
            self.node.destroy_client(client)


@contextmanager
def ros_client() -> Iterator[Client]:
    import rclpy
    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        client = Client(rclpy, context)
        yield client
        client.node.destroy_node()
    finally:
        rclpy.shutdown(context=context)


def _info(width: int = WIDTH, height: int = HEIGHT):
    from sensor_msgs.msg import CameraInfo
    return CameraInfo(width=width, height=height, distortion_model="plumb_bob", d=D, k=K,
                      r=R, p=P)


def _start_camera(procs, *params: str):
    return procs.node("camera_node", f"width:={WIDTH}", f"height:={HEIGHT}", "fps:=15.0",
                      "camera_name:=test_cam", *params)


@pytest.mark.slow
def test_set_camera_info_round_trip(procs, tmp_path, monkeypatch) -> None:
    """set_camera_info writes ${ROS_HOME}/camera_info/<camera_name>.yaml; camera_info
    carries it at once; the restarted camera (still no camera_info_url) reads that
    default file and sends the same K; a request of another size is refused and changes
    nothing."""
    monkeypatch.setenv("ROS_HOME", str(tmp_path / "ros_home"))  # inherited by the node
    saved = tmp_path / "ros_home" / "camera_info" / "test_cam.yaml"
    camera = _start_camera(procs)
    with ros_client() as client:
        before = client.camera_info("camera_info", 30)
        assert before is not None, procs.output("camera_node")
        assert list(before.k) == [0.0] * 9, "no camera_info_url: uncalibrated"

        refused = client.set_camera_info("set_camera_info", _info(640, 480), 30)
        assert not refused.success
        assert "640x480 differ from the camera's 320x240" in refused.status_message
        assert not saved.exists()

        answer = client.set_camera_info("set_camera_info", _info(), 30)
        assert answer.success, answer.status_message
        assert str(saved) in answer.status_message
        on_file = calibration.read(saved)
        assert (on_file.k, on_file.d, on_file.p, on_file.camera_name) == (K, D, P, "test_cam")
        after = client.camera_info("camera_info", 30, lambda i: list(i.k) == K)
        assert after is not None, "camera_info must carry the new calibration at once"
        assert (list(after.d), after.distortion_model) == (D, "plumb_bob")

        assert procs.stop(camera) == 0
        _start_camera(procs)  # no url: camera_info_manager's default file, now there
        restarted = client.camera_info("camera_info", 30, lambda i: list(i.k) != [0.0] * 9)
        assert restarted is not None, procs.output("camera_node")
        assert (list(restarted.k), list(restarted.p), list(restarted.r)) == (K, P, R)
        assert (restarted.width, restarted.height) == (WIDTH, HEIGHT)
    assert f"camera_info from {saved}" in procs.output("camera_node")


BAD_FILES = [
    ("wrong_size.yaml", lambda c: calibration.dumps(
        calibration.Calibration(640, 480, "test_cam", "plumb_bob", D, K, R, P)),
     "image_width/image_height 640x480 differ from the camera's 320x240"),
    ("no_k.yaml", lambda c: yaml.safe_dump(
        {k: v for k, v in c.to_dict().items() if k != "camera_matrix"}, sort_keys=False),
     "camera_matrix: missing"),
    ("not_yaml.yaml", lambda c: "image_width: [320\n", "not YAML"),
]


@pytest.mark.parametrize(("name", "text", "named"), BAD_FILES, ids=[b[0] for b in BAD_FILES])
def test_bad_calibration_file_stops_the_camera_with_one_line(procs, tmp_path, name, text,
                                                             named) -> None:
    path = tmp_path / name
    good = calibration.Calibration(WIDTH, HEIGHT, "test_cam", "plumb_bob", D, K, R, P)
    path.write_text(text(good))
    proc = _start_camera(procs, f"camera_info_url:={path}")
    code = proc.wait(timeout=30)
    out = procs.output("camera_node")
    fatal = [line for line in out.splitlines() if "FATAL" in line]
    assert code == 2, out
    assert len(fatal) == 1, out
    assert str(path) in fatal[0] and named in fatal[0], fatal[0]
    assert "Traceback" not in out


K_RIGHT = [310.0, 0.0, 158.0, 0.0, 311.0, 119.0, 0.0, 0.0, 1.0]


@pytest.mark.slow
@pytest.mark.parametrize("layout", ["side_by_side", "top_bottom"])
def test_stereo_eyes_get_their_own_topics_and_calibration(procs, tmp_path, layout) -> None:
    """A robot stack subscribes to left/image_raw, left/camera_info and right/...: each
    eye's pixels (its own stamp), the pair's FrameRef stamp, each eye's loaded K; the
    mono topics are not there; right/set_camera_info writes the right eye's file."""
    import numpy as np
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import CameraInfo, Image

    from vr_stream_ros.camera.pattern import read_stamp
    from vr_stream_ros.msg import FrameRef
    left_file, right_file = tmp_path / "left.yaml", tmp_path / "right.yaml"
    calibration.write(left_file, calibration.Calibration(WIDTH, HEIGHT, "test_cam_left",
                                                         "plumb_bob", D, K, R, P))
    calibration.write(right_file, calibration.Calibration(WIDTH, HEIGHT, "test_cam_right",
                                                          "plumb_bob", D, K_RIGHT, R, P))
    _start_camera(procs, "stereo:=true", f"stereo_layout:={layout}",
                  f"camera_info_url:=file://{left_file}", f"right_camera_info_url:={right_file}")
    with ros_client() as client:
        node = client.node
        got: dict[str, list] = {k: [] for k in ("left", "right", "left_info", "right_info",
                                                "ref")}
        for kind, topic, key, qos in (
                (Image, "left/image_raw", "left", qos_profile_sensor_data),
                (Image, "right/image_raw", "right", qos_profile_sensor_data),
                (CameraInfo, "left/camera_info", "left_info", 1),
                (CameraInfo, "right/camera_info", "right_info", 1),
                (FrameRef, "frame_ref", "ref", qos_profile_sensor_data)):
            node.create_subscription(kind, topic, got[key].append, qos)
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline and min(len(v) for v in got.values()) < 5:
            client.executor.spin_once(timeout_sec=0.1)
        log = procs.output("camera_node")
        assert min(len(v) for v in got.values()) >= 5, ({k: len(v) for k, v in got.items()},
                                                         log)
        # graph/topics.py's stereo:=true column (test_reference checks the mono one).
        spec = next(n for n in NODE_TOPICS if n.name == "camera_node")
        want = {"/" + t.name.lstrip("/") for t in spec.topics
                if t.direction == "pub" and t.only_if != MONO}
        topics = {name for name, _ in node.get_publisher_names_and_types_by_node(
            "camera_node", "/")} - {"/rosout", "/parameter_events"}
        assert topics == want, f"spec only: {want - topics}, node only: {topics - want}"
        assert "/left/image_raw/compressed" in topics and "/image_raw" not in topics

        refs = {(r.header.stamp.sec, r.header.stamp.nanosec): r for r in got["ref"]}
        matched = 0
        for eye in ("left", "right"):
            for image in got[eye]:
                assert (image.width, image.height) == (WIDTH, HEIGHT)
                pixels = np.frombuffer(bytes(image.data), np.uint8).reshape(HEIGHT, WIDTH, 3)
                stamp = read_stamp(pixels)
                assert stamp is not None and stamp.eye == eye, f"{eye}: {stamp}"
                ref = refs.get((image.header.stamp.sec, image.header.stamp.nanosec))
                if ref is not None:  # the pair's FrameRef: same frame, same stamp
                    assert stamp.frame == ref.seq and ref.layout == layout
                    matched += 1
        assert matched >= 4, f"only {matched} eye images matched their FrameRef"
        assert all(list(i.k) == K and (i.width, i.height) == (WIDTH, HEIGHT)
                   for i in got["left_info"])
        assert all(list(i.k) == K_RIGHT for i in got["right_info"])
        info = _info()
        info.k = K
        answer = client.set_camera_info("right/set_camera_info", info, 30)
        assert answer.success, answer.status_message
        assert calibration.read(right_file).k == K
        assert calibration.read(left_file).k == K  # the left file untouched
