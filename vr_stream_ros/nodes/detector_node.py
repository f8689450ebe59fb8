"""detector_node: YOLO beside the video path, never on it.

Reads the newest frame from the shared-memory ring only when it is free (no queue: the
frames it was too busy for are counted as skipped), copies it out of the ring, checks the
copy is whole, runs the model and publishes ``detections`` (vr_stream_ros/DetectionArray)
stamped with the frame's sequence number and capture time, and ``vision_detections``
(vision_msgs/Detection2DArray) where vision_msgs is installed (on a robot).
"""

from __future__ import annotations

import threading
import time

import numpy as np
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rclpy.time import Time

from vr_stream_ros.detection.yolo import Detection as Box
from vr_stream_ros.detection.yolo import Detector, DetectorConfig, DetectorError
from vr_stream_ros.graph.node_params import DETECTOR_PARAMS, parse_classes
from vr_stream_ros.graph.param_spec import ParameterError
from vr_stream_ros.msg import Detection, DetectionArray
from vr_stream_ros.ring.frame_ring import FrameRingReader
from vr_stream_ros.ros.params import declare_and_validate
from vr_stream_ros.ros.process_status import ProcessStatus
from vr_stream_ros.ros.realtime import setup_realtime
from vr_stream_ros.ros.runner import run_node
from vr_stream_ros.system.realtime import set_thread_name

NODE_NAME = "detector_node"
LOG_PERIOD_S = 5.0


class DetectorNode(Node):
    """Owns the model and a ring reader; detects on its own thread."""

    def __init__(self) -> None:
        super().__init__(NODE_NAME)
        p = declare_and_validate(self, DETECTOR_PARAMS)
        self.fatal_error: str | None = None
        self.executor_kind = p["executor"]
        self.rt_report = setup_realtime(self, p)
        self._p = p
        config = DetectorConfig(model=p["model"], imgsz=p["imgsz"], conf=p["conf"],
                                iou=p["iou"], classes=parse_classes(p["classes"]),
                                max_det=p["max_det"], device=p["device"], threads=p["threads"])
        try:
            self._detector = Detector(config)
        except DetectorError as exc:
            raise ParameterError(str(exc)) from None
        self._reader = FrameRingReader.wait_for(p["ring_name"], timeout=p["ring_wait_s"])
        self._rgb = self._reader.pixel_format == "rgb8"
        reliable = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
        self._pub = self.create_publisher(DetectionArray, "detections", reliable)
        self._vision_pub, self._vision = self._vision_publisher(reliable)
        self._process_status = ProcessStatus(self)
        self.frames_done = self.frames_skipped = self.frames_torn = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._detect_loop, name="detect", daemon=True)
        self._thread.start()
        self.get_logger().info(
            f"{p['model']} on {self._detector.backend}, imgsz {p['imgsz']}, conf {p['conf']:g}"
            f", {p['threads']} thread(s); newest frame of ring '{p['ring_name']}' when free"
            f" -> {self._pub.topic_name}"
            + (f" and {self._vision_pub.topic_name} (vision_msgs)" if self._vision_pub
               else " (vision_msgs not installed: only vr_stream_ros/DetectionArray)"))

    def _vision_publisher(self, qos: QoSProfile):
        try:
            import vision_msgs.msg as vision
        except ImportError:
            return None, None
        return self.create_publisher(vision.Detection2DArray, "vision_detections", qos), vision

    # -- detection thread --------------------------------------------------------------
    def _detect_loop(self) -> None:
        set_thread_name("detect")
        try:
            self._run()
        except Exception as exc:  # a dead thread in a live-looking node is worse than exit
            self.fatal_error = f"detection thread failed: {exc!r}"

    def _run(self) -> None:
        reader, p = self._reader, self._p
        min_period = 1.0 / p["max_rate_hz"] if p["max_rate_hz"] > 0 else 0.0
        last = reader.latest_seq()
        next_log = time.monotonic() + LOG_PERIOD_S
        inference: list[float] = []
        while not self._stop.is_set():
            started = time.monotonic()
            seq = reader.wait_newer(last, timeout=0.25)
            if seq is None:
                continue
            if 0 <= last < seq:
                self.frames_skipped += seq - last - 1
            last = seq
            view = reader.read(seq)
            if view is None:
                self.frames_torn += 1
                continue
            frame = np.array(view.array)  # out of the ring before the slow part
            if not reader.is_intact(view):
                self.frames_torn += 1
                continue
            result = self._detector.detect(frame, rgb=self._rgb)
            self.frames_done += 1
            inference.append(result.inference_ms)
            self._publish(seq, view.capture_ns, result.detections, result.inference_ms)
            if time.monotonic() >= next_log:
                next_log += LOG_PERIOD_S
                self.get_logger().info(
                    f"{self._detector.backend}: inference p50 {np.median(inference):.1f} ms "
                    f"({len(inference) / LOG_PERIOD_S:.1f} fps), frames done "
                    f"{self.frames_done}, skipped {self.frames_skipped}")
                inference.clear()
            rest = min_period - (time.monotonic() - started)
            if rest > 0:
                self._stop.wait(rest)

    def _publish(self, seq: int, capture_ns: int, boxes: list[Box], inference_ms: float
                 ) -> None:
        msg = DetectionArray(frame_seq=seq, capture_mono_ns=capture_ns,
                             backend=self._detector.backend, inference_ms=inference_ms,
                             frames_done=self.frames_done, frames_skipped=self.frames_skipped)
        age_ns = time.monotonic_ns() - capture_ns
        msg.header.stamp = Time(nanoseconds=self.get_clock().now().nanoseconds - age_ns,
                                clock_type=self.get_clock().clock_type).to_msg()
        msg.header.frame_id = self._p["frame_id"]
        msg.detections = [Detection(center_x=b.center_x, center_y=b.center_y, size_x=b.size_x,
                                    size_y=b.size_y, class_id=str(b.class_id),
                                    class_name=b.class_name, score=b.score) for b in boxes]
        self._pub.publish(msg)
        if self._vision_pub is not None:
            self._vision_pub.publish(self._vision_msg(msg))

    def _vision_msg(self, msg: DetectionArray):
        v = self._vision
        out = v.Detection2DArray(header=msg.header)
        for d in msg.detections:
            det = v.Detection2D(header=msg.header)
            det.bbox.center.position.x, det.bbox.center.position.y = d.center_x, d.center_y
            det.bbox.size_x, det.bbox.size_y = d.size_x, d.size_y
            hyp = v.ObjectHypothesisWithPose()
            hyp.hypothesis.class_id, hyp.hypothesis.score = d.class_id, d.score
            det.results.append(hyp)
            out.detections.append(det)
        return out

    def close(self) -> None:
        """Stop the thread and release the ring."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5.0)
        self._reader.close()


def main(args: list[str] | None = None) -> int:
    """Entry point of ``ros2 run vr_stream_ros detector_node``."""
    return run_node(NODE_NAME, DetectorNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
