"""camera_node: captures frames into the shared-memory ring and announces each one.

Pixels are written once, into a ring slot lent by the ring (loan semantics); DDS
carries only a FrameRef (with this host's identity, so consumers elsewhere know to use
the image topics). ``image_raw``, ``image_raw/compressed`` and ``camera_info`` (per eye
under ``left/`` and ``right/`` for a stereo camera) are for the rest of the robot stack
and for other hosts: ros/camera_topics.py builds them from the ring on a thread of its
own, only while someone subscribes, so the capture thread never waits for them.
"""

from __future__ import annotations

from rclpy.qos import qos_profile_sensor_data

from vr_stream_ros.camera import CameraConfig, CameraError, create_backend
from vr_stream_ros.graph.node_params import CAMERA_PARAMS
from vr_stream_ros.msg import FrameRef
from vr_stream_ros.ring.frame_ring import FrameRingWriter, FrameSpec, FrameView
from vr_stream_ros.ring.source import host_identity
from vr_stream_ros.ros.camera_topics import (
    CameraTopics,
    EyeTopics,
    eye_sources,
    load_calibrations,
)
from vr_stream_ros.ros.ring_node import RingNode
from vr_stream_ros.ros.runner import run_node

NODE_NAME = "camera_node"


class CameraNode(RingNode):
    """Owns the camera backend and the ring writer; runs capture on its own thread."""

    def __init__(self) -> None:
        super().__init__(NODE_NAME, CAMERA_PARAMS)
        p = self.p
        self._config = CameraConfig(
            backend=p["camera"], width=p["width"], height=p["height"], fps=p["fps"],
            pixel_format=p["pixel_format"], profile=p["profile"], device=p["device"],
            file_path=p["file_path"], camera_index=p["camera_index"],
            exposure_us=p["exposure_us"], analogue_gain=p["analogue_gain"],
            stereo=p["stereo"], stereo_layout=p["stereo_layout"],
            right_camera_index=p["right_camera_index"], right_device=p["right_device"],
            stereo_source=p["stereo_source"],
            stereo_pair_tolerance_ms=p["stereo_pair_tolerance_ms"])
        self._frame_id = p["frame_id"]
        self._layout = self._config.layout
        # Before the camera opens: a bad calibration file stops the node with one line.
        eyes = eye_sources(p, p["stereo"])
        calibrations = load_calibrations(eyes, p["width"], p["height"],
                                         self.get_logger().warn)
        self._backend = create_backend(self._config)
        self._backend.open()
        try:
            c = self._config
            # The ring carries the rate, so consumers (the bridge's H.264 rate control)
            # need not guess it.
            # A stereo slot holds the packed pair; the layout travels with the ring.
            spec = FrameSpec(*c.frame_size, c.channels, c.pixel_format, c.fps, c.layout)
            self._ring = FrameRingWriter(p["ring_name"], spec, slots=p["ring_slots"])
        except Exception:
            self._backend.close()
            raise
        if self._ring.recovered_stale:
            self.get_logger().warn(f"ring '{p['ring_name']}': removed a stale segment left "
                                   "by a camera_node that did not exit cleanly")
        self._ring_name = p["ring_name"]
        self._frame_ref_pub = self.create_publisher(FrameRef, "frame_ref", qos_profile_sensor_data)
        self.frames = 0
        self._stamps: list[tuple[int, object] | None] = [None] * p["ring_slots"]
        """Per slot: (seq, header stamp) of the frame in it, for the topics thread."""
        self._host = host_identity()
        self._eyes = [EyeTopics(self, s, *calibrations[s.eye]) for s in eyes]
        self.start_worker("capture", self._capture_loop)
        self._topics = CameraTopics(
            self, self._ring_name, self._layout, self._eyes, self._stamp_of, self._frame_id,
            c.pixel_format, p["compressed_quality"], p["compressed_fps"], self._topics_failed)
        images = ", ".join(f"{e.image_pub.topic_name} and {e.compressed_pub.topic_name}"
                           for e in self._eyes)
        self.get_logger().info(
            f"{self._backend.describe()} -> ring '{self._ring_name}' "
            f"({p['ring_slots']} slots), frame refs on {self._frame_ref_pub.topic_name}; "
            f"{images} are best effort (sensor-data QoS, depth 5): a RELIABLE subscriber "
            "gets nothing, subscribe with qos_profile_sensor_data; camera_info is "
            "reliable, depth 1"
            + (f"; JPEG q{p['compressed_quality']} at most {p['compressed_fps']:g} fps"
               if p["compressed_fps"] else f"; JPEG q{p['compressed_quality']}")
            + f"; host '{self._host.name}'")
        for eye in self._eyes:
            self.get_logger().info(eye.describe())

    def _capture_loop(self) -> None:
        ring, backend = self._ring, self._backend
        width, height = self._config.frame_size
        ref = FrameRef(ring_name=self._ring_name, width=width, height=height,
                       encoding=self._config.pixel_format, layout=self._config.layout,
                       host=self._host.name, host_id=self._host.id)
        ref.header.frame_id = self._frame_id
        clock = self.get_clock()
        while not self.stopping:
            loan = ring.loan()
            try:
                capture_ns = backend.capture_into(loan.array, loan.seq)
            except CameraError as exc:
                ring.cancel(loan)
                self.fatal_error = str(exc)
                return
            except Exception as exc:  # a backend bug must not leave a half-written slot
                ring.cancel(loan)
                self.fatal_error = f"camera backend {backend.name} failed: {exc!r}"
                return
            # Stamped before the commit: the topics thread may wake as soon as it is in.
            stamp = clock.now().to_msg()
            self._stamps[loan.slot] = (loan.seq, stamp)
            skew_ns = backend.eye_skew_ns
            write_ns = ring.publish(loan, capture_ns, skew_ns, backend.pairs_dropped)
            self.frames += 1
            self.between_frames()
            ref.header.stamp = stamp
            ref.seq, ref.slot = loan.seq, loan.slot
            ref.capture_mono_ns, ref.ring_write_mono_ns = capture_ns, write_ns
            ref.eye_skew_ns = skew_ns
            try:
                self._frame_ref_pub.publish(ref)
            except Exception:
                if not self.context.ok():
                    return  # shutting down (Ctrl-C): the frame is in the ring, we are done
                raise

    # -- what the topics thread needs from the capture side --------------------------------
    def _stamp_of(self, view: FrameView) -> object | None:
        """The FrameRef header stamp of the frame in ``view``; None if the slot was reused."""
        entry = self._stamps[view.slot]
        return entry[1] if entry is not None and entry[0] == view.seq else None

    def _topics_failed(self, error: str) -> None:
        if self.context.ok() and not self.stopping:
            self.fatal_error = error

    @property
    def compressed_published(self) -> int:
        """JPEG messages published so far (all eyes)."""
        return self._topics.compressed_published

    def close(self) -> None:
        """Stop capture and the topics, release the camera, remove the ring segment."""
        self.stop_worker(timeout=2.0)
        self._topics.close(timeout=2.0)
        self._backend.close()
        self._ring.close()


def main(args: list[str] | None = None) -> int:
    """Entry point of ``ros2 run vr_stream_ros camera_node``."""
    return run_node(NODE_NAME, CameraNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
