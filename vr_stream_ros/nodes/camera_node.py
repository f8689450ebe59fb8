"""camera_node: captures frames into the shared-memory ring and announces each one.

Pixels are written once, into a ring slot lent by the ring (loan semantics); DDS
carries only a FrameRef (with this host's identity, so consumers elsewhere know to use
the image topics). ``image_raw``, ``image_raw/compressed`` and ``camera_info`` are for
the rest of the robot stack and for other hosts: a second thread builds them from the
ring, only while someone subscribes, the JPEG at most ``compressed_fps`` times a second,
so the capture thread never waits for them.
"""

from __future__ import annotations

import threading
import time

import simplejpeg
from rclpy.qos import QoSProfile, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Header

from vr_stream_ros.camera import CameraConfig, CameraError, create_backend
from vr_stream_ros.graph.node_params import CAMERA_PARAMS
from vr_stream_ros.msg import FrameRef
from vr_stream_ros.ring.frame_ring import FrameRingReader, FrameRingWriter, FrameSpec, FrameView
from vr_stream_ros.ring.newest import NewestFrames
from vr_stream_ros.ring.source import host_identity
from vr_stream_ros.ros.ring_node import RingNode
from vr_stream_ros.ros.runner import run_node
from vr_stream_ros.system.realtime import set_thread_name

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
        self._jpeg_quality = p["compressed_quality"]
        self._jpeg_period_s = 1.0 / p["compressed_fps"] if p["compressed_fps"] else 0.0
        self._next_jpeg = 0.0
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
        self._image_pub = self.create_publisher(Image, "image_raw", qos_profile_sensor_data)
        self._compressed_pub = self.create_publisher(
            CompressedImage, "image_raw/compressed", qos_profile_sensor_data)
        self._info_pub = self.create_publisher(CameraInfo, "camera_info", QoSProfile(depth=1))
        self.frames = 0
        self.compressed_published = 0
        self._stamps: list[tuple[int, object] | None] = [None] * p["ring_slots"]
        """Per slot: (seq, header stamp) of the frame in it, for the topics thread."""
        self._host = host_identity()
        self.start_worker("capture", self._capture_loop)
        self._topics = threading.Thread(target=self._topics_thread, name="topics", daemon=True)
        self._topics.start()
        self.get_logger().info(
            f"{self._backend.describe()} -> ring '{self._ring_name}' "
            f"({p['ring_slots']} slots), frame refs on {self._frame_ref_pub.topic_name}; "
            f"{self._image_pub.topic_name} and {self._compressed_pub.topic_name} are best "
            "effort (sensor-data QoS, depth 5): a RELIABLE subscriber gets nothing, "
            f"subscribe with qos_profile_sensor_data; {self._info_pub.topic_name} is "
            "reliable, depth 1"
            + (f"; JPEG q{self._jpeg_quality} at most {p['compressed_fps']:g} fps"
               if self._jpeg_period_s else f"; JPEG q{self._jpeg_quality}")
            + f"; host '{self._host.name}'")

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

    # -- topics thread: the standard topics, from the ring, never on the capture thread ----
    def _subscribed(self) -> bool:
        return bool(self._image_pub.get_subscription_count()
                    or self._compressed_pub.get_subscription_count()
                    or self._info_pub.get_subscription_count())

    def _topics_thread(self) -> None:
        set_thread_name("topics")
        reader: FrameRingReader | None = None
        try:
            while not self.stopping:
                if not self._subscribed():  # nobody: no ring reader, no doorbell to ring
                    if reader is not None:
                        reader.close()
                        reader = None
                    self._stop.wait(0.2)
                    continue
                if reader is None:
                    reader = FrameRingReader(self._ring_name)
                    newest = NewestFrames(reader)
                view = newest.take(timeout=0.2)
                if view is not None:
                    self._publish_standard_topics(view, newest)
        except Exception as exc:
            if self.context.ok() and not self.stopping:
                self.fatal_error = f"topics thread failed: {exc!r}"
        finally:
            if reader is not None:
                reader.close()

    def _publish_standard_topics(self, view: FrameView, newest: NewestFrames) -> None:
        """image_raw, image_raw/compressed, camera_info of one frame: only for actual
        subscribers, the JPEG only when ``compressed_fps`` allows; nothing from a slot the
        camera overwrote meanwhile."""
        c = self._config
        entry = self._stamps[view.slot]
        if entry is None or entry[0] != view.seq:
            return  # the slot was reused already
        header = Header(stamp=entry[1], frame_id=self._frame_id)
        if self._image_pub.get_subscription_count():
            msg = Image(header=header, height=c.height, width=c.width,
                        encoding=c.pixel_format, is_bigendian=0, step=c.width * c.channels)
            msg.data = view.array.tobytes()
            if newest.intact(view):
                self._image_pub.publish(msg)
        now = time.monotonic()
        period = self._jpeg_period_s
        # Due a quarter period early (camera frames jitter around the period's edge); the
        # schedule advances by whole periods so the mean rate is compressed_fps.
        if self._compressed_pub.get_subscription_count() and now >= self._next_jpeg - period / 4:
            self._next_jpeg = max(self._next_jpeg + period, now + period / 2)
            colorspace = "RGB" if c.pixel_format == "rgb8" else "BGR"
            data = simplejpeg.encode_jpeg(view.array, self._jpeg_quality, colorspace, "420")
            if newest.intact(view):
                self._compressed_pub.publish(
                    CompressedImage(header=header, format="jpeg", data=data))
                self.compressed_published += 1
        if self._info_pub.get_subscription_count():
            # No calibration is loaded: K/P stay zero, which REP-104 reads as uncalibrated.
            self._info_pub.publish(CameraInfo(header=header, height=c.height, width=c.width))

    def close(self) -> None:
        """Stop capture and the topics, release the camera, remove the ring segment."""
        self.stop_worker(timeout=2.0)
        self._topics.join(timeout=2.0)
        self._backend.close()
        self._ring.close()


def main(args: list[str] | None = None) -> int:
    """Entry point of ``ros2 run vr_stream_ros camera_node``."""
    return run_node(NODE_NAME, CameraNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
