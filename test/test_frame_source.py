"""frame_source:=auto|ring|topic: the choice (ring/source.py), the host identity it rests
on, decoding and the newest-message slot, and detector_node's bad input with real
processes: an unknown source, and undecodable frames counted and skipped."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import simplejpeg
from conftest import needs_ros, wait_for
from test_detector import needs_yolo

from vr_stream_ros.ring.source import (
    CameraHost,
    FrameSourceError,
    HostIdentity,
    Newest,
    UndecodableFrame,
    choose_source,
    decode_image,
    host_identity,
)

HERE = HostIdentity("laptop", "boot-1/shm:1:2/pid:2/net:3")
LOCAL = CameraHost("laptop", HERE.id, "frames")
REMOTE = CameraHost("pi5", "boot-9/shm:1:2/pid:2/net:3", "frames")
NAMESAKE = CameraHost("laptop", "boot-1/shm:1:2/pid:2/net:4", "frames")


@pytest.mark.parametrize(("requested", "camera", "exists", "source", "reason"), [
    ("auto", LOCAL, True, "ring", "camera_node runs on this host ('laptop') and its ring "
     "'frames' is here"),
    ("auto", REMOTE, False, "topic", "camera_node runs on host 'pi5', this is 'laptop'"),
    ("auto", REMOTE, True, "topic", "camera_node runs on host 'pi5'"),
    ("auto", NAMESAKE, True, "topic", "camera_node runs in another namespace of host "
     "'laptop' (FrameRef host_id differs)"),
    ("auto", LOCAL, False, "topic", "its ring 'frames' is not in /dev/shm here"),
    ("auto", CameraHost("old", "", "frames"), True, "ring", "camera_node runs on this host"),
    ("auto", None, True, None, None),
    ("ring", None, True, "ring", "ring found here (no FrameRef seen yet)"),
    ("ring", LOCAL, True, "ring", "frame_source:=ring, camera_node on this host"),
    ("ring", None, False, None, None),
    ("topic", LOCAL, True, "topic", "frame_source:=topic"),
])
def test_choice(requested, camera, exists, source, reason):
    choice = choose_source(requested, HERE, camera, "frames", exists)
    if source is None:
        assert choice is None
        return
    assert choice.source == source and choice.ring_name == "frames"
    assert reason in choice.reason, choice.reason


def test_ring_where_the_camera_is_not_names_the_ring_and_both_hosts():
    with pytest.raises(FrameSourceError) as err:
        choose_source("ring", HERE, REMOTE, "frames", True)
    text = str(err.value)
    assert "ring 'frames' is on host 'pi5'" in text and "this host 'laptop'" in text
    assert "frame_source:=auto or topic" in text and "\n" not in text


def test_unknown_source_names_the_allowed_values():
    with pytest.raises(FrameSourceError, match="expected one of 'auto', 'ring', 'topic'"):
        choose_source("shm", HERE, LOCAL, "frames", True)


def _identity_in(*prefix: str) -> str:
    code = "from vr_stream_ros.ring.source import host_identity; print(host_identity().id)"
    return subprocess.run([*prefix, sys.executable, "-c", code], capture_output=True,
                          text=True, check=True, timeout=60).stdout.strip()


def test_host_identity_is_the_same_process_wide_and_differs_in_another_namespace():
    here = host_identity()
    assert here.id == _identity_in(), "another process on this host is on the same host"
    assert here.id.count("/") == 3 and "net:" in here.id and "shm:" in here.id
    other_net = _identity_in("unshare", "--net")  # root (CI is root)
    assert other_net != here.id
    assert other_net.split("/")[:2] == here.id.split("/")[:2], "same boot, same /dev/shm"
    # `ip netns exec` gives each process its own mount namespace but the same /dev/shm:
    # the ring is as readable as on the host, so only the network namespace differs.
    other_shm = _identity_in("unshare", "--mount", "--propagation", "private", "sh", "-c",
                             'mount -t tmpfs vrshm /dev/shm && exec "$@"', "sh")
    assert other_shm.split("/")[1] != here.id.split("/")[1]


def test_decode_jpeg_and_raw():
    rgb = (np.random.default_rng(3).random((48, 64, 3)) * 255).astype(np.uint8)
    jpeg = simplejpeg.encode_jpeg(rgb, 95, "RGB")
    pixels, is_rgb = decode_image("jpeg", jpeg)
    assert is_rgb and pixels.shape == (48, 64, 3)
    assert np.abs(pixels.astype(int) - rgb).mean() < 8
    padded = np.zeros((48, 200), np.uint8)  # step 200 > 64 * 3 = 192
    padded[:, :192] = rgb.reshape(48, 192)
    pixels, is_rgb = decode_image("bgr8", padded.tobytes(), 64, 48, 200)
    assert not is_rgb and np.array_equal(pixels, rgb)


@pytest.mark.parametrize(("args", "needle"), [
    (("jpeg", b"\xff\xd8 not a jpeg"), "CompressedImage of 13 bytes is not a decodable JPEG"),
    (("png", b"\x89PNG"), "format 'png': expected jpeg"),
    (("mono16", b"\0" * 100, 10, 5, 20), "encoding 'mono16': expected rgb8 or bgr8"),
    (("rgb8", b"\0" * 100, 10, 5, 30), "100 bytes with step 30, expected step >= 30 and 150"),
])
def test_undecodable_frames_say_why(args, needle):
    with pytest.raises(UndecodableFrame) as err:
        decode_image(*args)
    assert needle in str(err.value)


def test_newest_keeps_only_the_last_and_counts_the_rest():
    box: Newest[int] = Newest()
    for i in range(5):
        box.put(i)
    assert box.take(0.0) == 4 and box.skipped == 4
    assert box.take(0.05) is None
    threading.Timer(0.05, box.put, args=(7,)).start()
    start = time.monotonic()
    assert box.take(2.0) == 7 and time.monotonic() - start < 1.5, "woken by the put"


# -- real processes ----------------------------------------------------------------------
@needs_ros
def test_unknown_frame_source_stops_at_start_with_the_allowed_values(procs):
    det = procs.node("detector_node", "frame_source:=shm")
    assert det.wait(timeout=60) == 2
    out = procs.output("detector_node")
    fatal = [line for line in out.splitlines() if "FATAL" in line]
    assert len(fatal) == 1, out
    assert "parameter 'frame_source'" in fatal[0], out
    assert "one of 'auto', 'ring', 'topic'" in fatal[0], out


@needs_ros
@needs_yolo
@pytest.mark.slow
def test_topic_source_skips_undecodable_frames_and_stamps_the_good_ones(procs):
    """A real detector on frame_source:=topic; this process plays the remote camera:
    FrameRefs, garbage JPEGs and good ones with the FrameRef's stamp."""
    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
    from sensor_msgs.msg import CompressedImage

    from vr_stream_ros.msg import DetectionArray, FrameRef
    procs.node("detector_node", "frame_source:=topic", "model:=yolo11n.yaml", "imgsz:=160",
               "conf:=0.0001")
    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node("remote_camera", context=context)
    refs = node.create_publisher(FrameRef, "frame_ref", qos_profile_sensor_data)
    images = node.create_publisher(CompressedImage, "image_raw/compressed",
                                   qos_profile_sensor_data)
    got: list = []
    node.create_subscription(DetectionArray, "detections", got.append,
                             QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE))
    executor = rclpy.executors.SingleThreadedExecutor(context=context)
    executor.add_node(node)
    good = simplejpeg.encode_jpeg(np.full((96, 128, 3), 90, np.uint8), 80, "RGB")
    sent: dict[int, tuple[int, int]] = {}  # seq -> (stamp ns, capture ns)
    try:
        assert procs.wait_for_output("detector_node", r"frame source: topic", 90), \
            procs.output("detector_node")
        seq = 0
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (len(got) < 3 or "undecodable" not in
                                               procs.output("detector_node")):
            seq += 1
            now = node.get_clock().now()
            ref = FrameRef(ring_name="on_another_host", seq=seq, width=128, height=96,
                           encoding="rgb8", capture_mono_ns=10_000 + seq, host="pi5",
                           host_id="elsewhere")
            ref.header.stamp = now.to_msg()
            refs.publish(ref)
            data = good if seq % 2 else b"\xff\xd8garbage"  # every other frame undecodable
            images.publish(CompressedImage(header=ref.header, format="jpeg", data=data))
            if seq % 2:
                sent[seq] = (now.nanoseconds, ref.capture_mono_ns)
            end = time.monotonic() + 0.2
            while time.monotonic() < end:
                executor.spin_once(timeout_sec=0.05)
    finally:
        node.destroy_node()
        rclpy.shutdown(context=context)
    out = procs.output("detector_node")
    assert len(got) >= 3, out
    for m in got:
        assert m.frame_seq in sent, f"boxes of frame {m.frame_seq}: not a decodable one"
        stamp_ns, capture_ns = sent[m.frame_seq]
        assert m.capture_mono_ns == capture_ns, "capture time of the frame's FrameRef"
        assert m.header.stamp.sec * 10**9 + m.header.stamp.nanosec == stamp_ns
    counted = wait_for(lambda: [int(n) for n in re.findall(
        r"undecodable (\d+)", procs.output("detector_node"))], 10)
    assert counted and counted[-1] >= 1, out
    assert "is not a decodable JPEG" in out and "Traceback" not in out


@needs_ros
@needs_yolo
def test_ring_without_ring_or_camera_names_the_ring_and_this_host(procs, ring_name):
    det = procs.node("detector_node", "frame_source:=ring", f"ring_name:={ring_name}",
                     "ring_wait_s:=1.0", "model:=yolo11n.yaml", "imgsz:=64")
    assert det.wait(timeout=120) == 1
    out = procs.output("detector_node")
    fatal = [line for line in out.splitlines() if "FATAL" in line]
    assert len(fatal) == 1, out
    assert f"frame_source:=ring: ring '{ring_name}' not found on this host " \
           f"'{host_identity().name}' after 1 s" in fatal[0], out
    assert "no camera_node seen on frame_ref either" in fatal[0] and "Traceback" not in out


@needs_ros
@pytest.mark.slow
def test_camera_compressed_topic_at_its_own_rate_with_the_frames_stamps(procs, ring_name):
    """compressed_fps:=5 of a 30 fps camera: about one JPEG per six frames, each with the
    header stamp of its frame's FrameRef (how a remote consumer finds seq and capture)."""
    import rclpy
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import CompressedImage

    from vr_stream_ros.msg import FrameRef
    procs.node("camera_node", f"ring_name:={ring_name}", "width:=320", "height:=240",
               "fps:=30", "compressed_fps:=5.0", "compressed_quality:=60")
    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node("remote_consumer", context=context)
    refs: list = []
    jpegs: list = []
    node.create_subscription(FrameRef, "frame_ref", refs.append, qos_profile_sensor_data)
    node.create_subscription(CompressedImage, "image_raw/compressed", jpegs.append,
                             qos_profile_sensor_data)
    executor = rclpy.executors.SingleThreadedExecutor(context=context)
    executor.add_node(node)
    try:
        assert wait_for(lambda: executor.spin_once(timeout_sec=0.05) or len(jpegs) >= 2, 40)
        refs.clear()
        jpegs.clear()
        end = time.monotonic() + 6.0
        while time.monotonic() < end:
            executor.spin_once(timeout_sec=0.05)
    finally:
        node.destroy_node()
        rclpy.shutdown(context=context)
    assert len(refs) > 60, procs.output("camera_node")
    ratio = len(jpegs) / len(refs)
    assert 0.08 < ratio < 0.3, f"{len(jpegs)} JPEGs for {len(refs)} frames (5 of 30 fps)"
    by_stamp = {(r.header.stamp.sec, r.header.stamp.nanosec): r for r in refs}
    matched = [by_stamp.get((j.header.stamp.sec, j.header.stamp.nanosec)) for j in jpegs]
    assert sum(m is not None for m in matched) * 2 >= len(jpegs), "stamps of real frames"
    for jpeg, ref in zip(jpegs, matched, strict=True):
        pixels, _ = decode_image(jpeg.format, bytes(jpeg.data))
        assert pixels.shape == (240, 320, 3)
        if ref is not None:
            assert (ref.host, ref.host_id) == (host_identity().name, host_identity().id)


@needs_ros
@needs_yolo
@pytest.mark.slow
def test_ring_source_outlives_a_camera_restart(procs, ring_name):
    """frame_source:=ring with a short ring_wait_s: the ring's absence while the camera
    restarts is not the start-up wait; the reader re-attaches to the new ring."""
    camera_args = (f"ring_name:={ring_name}", "width:=320", "height:=240", "fps:=30")
    camera = procs.node("camera_node", *camera_args)
    det = procs.node("detector_node", "frame_source:=ring", f"ring_name:={ring_name}",
                     "ring_wait_s:=1.0", "model:=yolo11n.yaml", "imgsz:=64",
                     "max_rate_hz:=5.0")
    assert procs.wait_for_output("detector_node", r"first frame from the ring", 120), \
        procs.output("detector_node")
    assert procs.stop(camera) == 0
    time.sleep(3.0)  # three times ring_wait_s without a ring
    procs.node("camera_node", *camera_args, name="camera_again")
    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy

    from vr_stream_ros.msg import DetectionArray
    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node("after_restart", context=context)
    got: list = []
    node.create_subscription(DetectionArray, "detections", got.append,
                             QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
    executor = rclpy.executors.SingleThreadedExecutor(context=context)
    executor.add_node(node)
    try:
        # The new camera counts from 0 again: boxes of its early frames are the proof.
        assert wait_for(lambda: executor.spin_once(timeout_sec=0.05) or
                        any(m.frame_seq < 300 for m in got), 60), procs.output("detector_node")
    finally:
        node.destroy_node()
        rclpy.shutdown(context=context)
    assert det.poll() is None, procs.output("detector_node")


@needs_ros
def test_ring_source_gives_a_stereo_pair_as_its_left_eye(ring_name):
    """A detector on a stereo ring looks at the left eye (boxes in one eye's pixels), not
    at the packed pair."""
    from vr_stream_ros.ring.frame_ring import FrameRingWriter, FrameSpec
    from vr_stream_ros.ros.frame_source import _RingFrames
    writer = FrameRingWriter(ring_name, FrameSpec(64, 96, 3, "rgb8", 30.0, "top_bottom"),
                             slots=3)
    frames = _RingFrames(ring_name)
    try:
        pair = np.zeros((96, 64, 3), np.uint8)
        pair[48:] = 200  # the right eye (bottom half) differs from the left
        writer.write(pair, capture_ns=time.monotonic_ns())
        frame = frames.take(timeout=2.0)
        assert frame is not None
        assert frame.pixels.shape == (48, 64, 3)
        assert not frame.pixels.any()
    finally:
        frames.reader.close()
        writer.close()
