"""detector_node: YOLO beside the video path, never on it.

Takes the newest frame only when it is free (no queue: the frames it was too busy for
are counted as skipped) from its frame source (ros/frame_source.py): the shared-memory
ring when the camera runs on this host, else ``image_raw/compressed`` over DDS from
another host (``frame_source:=auto|ring|topic``). Runs the model and publishes
``detections`` (vr_stream_ros/DetectionArray) stamped with the frame's sequence number
and capture time, and ``vision_detections`` (vision_msgs/Detection2DArray) where
vision_msgs is installed (on a robot).
"""

from __future__ import annotations

import time

import numpy as np
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rclpy.time import Time

from vr_stream_ros.detection.yolo import Detection as Box
from vr_stream_ros.detection.yolo import Detector, DetectorConfig, DetectorError
from vr_stream_ros.graph.node_params import DETECTOR_PARAMS, parse_classes
from vr_stream_ros.graph.param_spec import ParameterError
from vr_stream_ros.msg import Detection, DetectionArray
from vr_stream_ros.ring.source import Frame, FrameSourceError
from vr_stream_ros.ros.frame_source import FrameSource
from vr_stream_ros.ros.ring_node import RingNode
from vr_stream_ros.ros.runner import run_node

NODE_NAME = "detector_node"
LOG_PERIOD_S = 5.0


class DetectorNode(RingNode):
    """Owns the model and a frame source; detects on its own thread."""

    def __init__(self) -> None:
        super().__init__(NODE_NAME, DETECTOR_PARAMS)
        p = self._p = self.p
        config = DetectorConfig(model=p["model"], imgsz=p["imgsz"], conf=p["conf"],
                                iou=p["iou"], classes=parse_classes(p["classes"]),
                                max_det=p["max_det"], device=p["device"], threads=p["threads"])
        try:
            self._detector = Detector(config)
        except DetectorError as exc:
            raise ParameterError(str(exc)) from None
        # The first inference sets the model up (seconds on a CPU): before the first frame.
        self._detector.detect(np.zeros((p["imgsz"], p["imgsz"], 3), np.uint8))
        self._source = FrameSource(self, p["frame_source"], ring_name=p["ring_name"],
                                   ring_wait_s=p["ring_wait_s"], image_topic=p["image_topic"])
        reliable = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
        self._pub = self.create_publisher(DetectionArray, "detections", reliable)
        self._vision_pub, self._vision = self._vision_publisher(reliable)
        self.frames_done = 0
        self.start_worker("detect", self._run)
        self.get_logger().info(
            f"{p['model']} on {self._detector.backend}, imgsz {p['imgsz']}, conf {p['conf']:g}"
            f", {p['threads']} thread(s); newest frame (frame_source:={p['frame_source']}) "
            f"when free -> {self._pub.topic_name}"
            + (f" and {self._vision_pub.topic_name} (vision_msgs)" if self._vision_pub
               else " (vision_msgs not installed: only vr_stream_ros/DetectionArray)"))

    def _vision_publisher(self, qos: QoSProfile):
        try:
            import vision_msgs.msg as vision
        except ImportError:
            return None, None
        return self.create_publisher(vision.Detection2DArray, "vision_detections", qos), vision

    @property
    def frames_skipped(self) -> int:
        """Frames published while the model was busy (it takes only the newest)."""
        return self._source.count("skipped")

    # -- detection thread --------------------------------------------------------------
    def _run(self) -> None:
        try:
            self._detect_loop()
        except FrameSourceError as exc:  # frame_source:=ring where the ring is not
            self.fatal_error = str(exc)

    def _detect_loop(self) -> None:
        p, source = self._p, self._source
        min_period = 1.0 / p["max_rate_hz"] if p["max_rate_hz"] > 0 else 0.0
        next_log = time.monotonic() + LOG_PERIOD_S
        inference: list[float] = []
        while not self.stopping:
            started = time.monotonic()
            if started >= next_log:  # also while no frame comes: say what was skipped
                next_log = max(next_log + LOG_PERIOD_S, started)
                if inference or self._source.choice:
                    self._log_progress(inference)
                inference.clear()
            frame = source.take(timeout=0.25)
            if frame is None:
                continue
            result = self._detector.detect(frame.pixels, rgb=frame.rgb)
            self.frames_done += 1
            inference.append(result.inference_ms)
            self._publish(frame, result.detections, result.inference_ms)
            self.between_frames()
            rest = min_period - (time.monotonic() - started)
            if rest > 0:
                self._stop.wait(rest)

    def _log_progress(self, inference: list[float]) -> None:
        s = self._source
        where = s.choice.source if s.choice else "none yet"
        text = (f"{self._detector.backend}: inference p50 "
                f"{np.median(inference) if inference else 0:.1f} ms "
                f"({len(inference) / LOG_PERIOD_S:.1f} fps), frames done {self.frames_done}, "
                f"skipped {self.frames_skipped}, source {where}")
        if where == "ring":
            text += f", torn {s.count('torn')}"
        elif where == "topic":
            text += (f", undecodable {s.count('undecodable')}, without FrameRef "
                     f"{s.count('unmatched')}")
            if s.last_error:
                text += f" (last: {s.last_error})"
        self.get_logger().info(text)

    def _publish(self, frame: Frame, boxes: list[Box], inference_ms: float) -> None:
        msg = DetectionArray(frame_seq=frame.seq, capture_mono_ns=frame.capture_ns,
                             backend=self._detector.backend, inference_ms=inference_ms,
                             frames_done=self.frames_done, frames_skipped=self.frames_skipped)
        if frame.stamp_ns is not None:  # the camera's own stamp (its host's clocks)
            stamp_ns = frame.stamp_ns
        else:  # same host: capture time on CLOCK_MONOTONIC moved to the ROS clock
            stamp_ns = self.get_clock().now().nanoseconds - (time.monotonic_ns()
                                                             - frame.capture_ns)
        msg.header.stamp = Time(nanoseconds=stamp_ns,
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
        """Stop the thread and release the ring or the image subscription."""
        self.stop_worker(timeout=5.0)
        self._source.close()


def main(args: list[str] | None = None) -> int:
    """Entry point of ``ros2 run vr_stream_ros detector_node``."""
    return run_node(NODE_NAME, DetectorNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
