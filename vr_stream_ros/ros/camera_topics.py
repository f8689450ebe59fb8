"""camera_node's robot-stack view: image_raw, image_raw/compressed, camera_info per eye.

A mono camera has one set of topics (``image_raw``, ``image_raw/compressed``,
``camera_info``); a stereo camera one per eye under ``left/`` and ``right/``, each eye
cut out of the packed ring frame with ``camera.layout.eye_views`` (views, no splitter).
They are built on a thread of their own from the ring, only while someone subscribes,
the JPEG at most ``compressed_fps`` times a second, so capture never waits for them.
Every eye's messages carry the stamp of the frame's FrameRef (the pair's capture time).

Each eye's ``camera_info`` carries the calibration loaded from its camera_info_url at
start (camera.calibration), and a ``set_camera_info`` service
(sensor_msgs/srv/SetCameraInfo) beside it lets ROS's cameracalibrator store a new one:
``set_camera_info`` for mono; ``left/set_camera_info`` and ``right/set_camera_info`` for
stereo, which its ``left_camera:=<ns>/left right_camera:=<ns>/right`` remapping reaches
(https://docs.ros.org/en/jazzy/p/camera_calibration/doc/components.html).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import simplejpeg
from rclpy.node import Node
from rclpy.qos import QoSProfile, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from sensor_msgs.srv import SetCameraInfo
from std_msgs.msg import Header

from vr_stream_ros.camera import calibration
from vr_stream_ros.camera.calibration import Calibration, CalibrationError
from vr_stream_ros.camera.layout import eye_views
from vr_stream_ros.ring.frame_ring import FrameRingReader, FrameView
from vr_stream_ros.ring.newest import NewestFrames
from vr_stream_ros.system.realtime import set_thread_name


@dataclass(frozen=True)
class EyeSource:
    """Where one eye's calibration comes from: the url parameter and the camera name."""

    eye: str  # mono | left | right
    url_param: str
    url: str
    camera_name: str

    @property
    def prefix(self) -> str:
        """'' for mono, 'left/' or 'right/' for an eye of a stereo pair."""
        return "" if self.eye == "mono" else f"{self.eye}/"


def eye_sources(p: dict, stereo: bool) -> tuple[EyeSource, ...]:
    """The eyes of a camera with parameters ``p``: mono, or left and right."""
    name = p["camera_name"]
    if not stereo:
        return (EyeSource("mono", "camera_info_url", p["camera_info_url"], name),)
    return (EyeSource("left", "camera_info_url", p["camera_info_url"], f"{name}_left"),
            EyeSource("right", "right_camera_info_url", p["right_camera_info_url"],
                      f"{name}_right"))


def load_calibrations(sources: tuple[EyeSource, ...], width: int, height: int,
                      warn: Callable[[str], None]) -> dict[str, tuple[Calibration, Path | None]]:
    """Each eye's calibration at start; a bad named file raises CalibrationError (one
    line), a bad default file is warned about (see calibration.load)."""
    return {s.eye: calibration.load(s.url, width, height, s.camera_name, s.url_param, warn)
            for s in sources}


def camera_info_msg(cal: Calibration) -> CameraInfo:
    """A CameraInfo carrying ``cal`` (the header is filled per frame)."""
    return CameraInfo(height=cal.height, width=cal.width,
                      distortion_model=cal.distortion_model, d=list(cal.d), k=list(cal.k),
                      r=list(cal.r), p=list(cal.p))


class EyeTopics:
    """One eye's publishers, its current calibration and its set_camera_info service."""

    def __init__(self, node: Node, source: EyeSource, cal: Calibration,
                 path: Path | None) -> None:
        self.source = source
        self._node = node
        prefix = source.prefix
        self.image_pub = node.create_publisher(Image, f"{prefix}image_raw",
                                               qos_profile_sensor_data)
        self.compressed_pub = node.create_publisher(
            CompressedImage, f"{prefix}image_raw/compressed", qos_profile_sensor_data)
        self.info_pub = node.create_publisher(CameraInfo, f"{prefix}camera_info",
                                              QoSProfile(depth=1))
        self.calibration = cal
        self.info = camera_info_msg(cal)
        self.path = path
        """The file set_camera_info writes: the url's, else camera_info_manager's default."""
        self.save_path = path or calibration.default_path(source.camera_name)
        self.service = node.create_service(SetCameraInfo, f"{prefix}set_camera_info",
                                           self._set_camera_info)
        self.next_jpeg = 0.0
        self.compressed_published = 0

    def subscribed(self) -> bool:
        """True while any of this eye's topics has a subscriber."""
        return bool(self.image_pub.get_subscription_count()
                    or self.compressed_pub.get_subscription_count()
                    or self.info_pub.get_subscription_count())

    def describe(self) -> str:
        """One phrase for the start-up log: where its calibration comes from."""
        name = self.info_pub.topic_name
        if self.path is not None:
            # camera_info_manager's check too: a file of another camera is used, but said.
            other = self.calibration.camera_name != self.source.camera_name
            return (f"{name} from {self.path}" + (
                f" (its camera_name is '{self.calibration.camera_name}', this camera is "
                f"'{self.source.camera_name}': check it is this camera's file)" if other
                else "") + ("" if self.calibration.calibrated else " (K zero: uncalibrated)"))
        return (f"{name} uncalibrated (K and P zero: no {self.source.url_param} and no "
                f"{self.save_path}); {self.service.srv_name} saves there")

    def _set_camera_info(self, request: SetCameraInfo.Request,
                         response: SetCameraInfo.Response) -> SetCameraInfo.Response:
        """Check the size, write the file, publish the new info from the next frame on."""
        msg = request.camera_info
        where = f"{self.service.srv_name} request"
        try:
            cal = Calibration(msg.width, msg.height, self.source.camera_name,
                              msg.distortion_model, list(msg.d), list(msg.k), list(msg.r),
                              list(msg.p))
            cal.check_size(self.calibration.width, self.calibration.height, where)
            # What is written must read back at the next start: the same checks as a file.
            cal = calibration.loads(calibration.dumps(cal), where)
            calibration.write(self.save_path, cal)
        except (CalibrationError, OSError) as exc:
            response.success = False
            response.status_message = str(exc)
            self._node.get_logger().error(f"set_camera_info refused: {exc}")
            return response
        self.calibration, self.info, self.path = cal, camera_info_msg(cal), self.save_path
        response.success = True
        response.status_message = f"saved to {self.save_path}"
        self._node.get_logger().info(f"{self.service.srv_name}: calibration saved to "
                                     f"{self.save_path}; {self.info_pub.topic_name} carries "
                                     "it from now on")
        return response


class CameraTopics:
    """The eyes' topics and the thread that fills them from the ring while subscribed."""

    def __init__(self, node: Node, ring_name: str, layout: str, eyes: list[EyeTopics],
                 stamp_of: Callable[[FrameView], object | None], frame_id: str,
                 pixel_format: str, jpeg_quality: int, compressed_fps: float,
                 on_error: Callable[[str], None]) -> None:
        self.eyes = eyes
        self._ring_name = ring_name
        self._layout = layout
        self._stamp_of = stamp_of
        self._frame_id = frame_id
        self._pixel_format = pixel_format
        self._jpeg_quality = jpeg_quality
        self._jpeg_period_s = 1.0 / compressed_fps if compressed_fps else 0.0
        self._on_error = on_error
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="topics", daemon=True)
        self._thread.start()

    @property
    def compressed_published(self) -> int:
        """JPEG messages published so far, all eyes."""
        return sum(e.compressed_published for e in self.eyes)

    def close(self, timeout: float = 2.0) -> None:
        """Stop the thread (it closes its ring reader)."""
        self._stop.set()
        self._thread.join(timeout=timeout)

    def _subscribed(self) -> bool:
        return any(e.subscribed() for e in self.eyes)

    def _run(self) -> None:
        set_thread_name("topics")
        reader: FrameRingReader | None = None
        try:
            while not self._stop.is_set():
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
                    self._publish(view, newest)
        except Exception as exc:
            if not self._stop.is_set():
                self._on_error(f"topics thread failed: {exc!r}")
        finally:
            if reader is not None:
                reader.close()

    def _publish(self, view: FrameView, newest: NewestFrames) -> None:
        """Each eye's topics of one frame: only for actual subscribers, the JPEG only when
        ``compressed_fps`` allows; nothing from a slot the camera overwrote meanwhile."""
        stamp = self._stamp_of(view)
        if stamp is None:
            return  # the slot was reused already
        header = Header(stamp=stamp, frame_id=self._frame_id)
        views = eye_views(view.array, self._layout)
        for eye in self.eyes:
            self._publish_eye(eye, views[eye.source.eye], header, view, newest)

    def _publish_eye(self, eye: EyeTopics, pixels: np.ndarray, header: Header,
                     view: FrameView, newest: NewestFrames) -> None:
        height, width = pixels.shape[:2]
        if eye.image_pub.get_subscription_count():
            msg = Image(header=header, height=height, width=width,
                        encoding=self._pixel_format, is_bigendian=0,
                        step=width * pixels.shape[2])
            msg.data = pixels.tobytes()
            if newest.intact(view):
                eye.image_pub.publish(msg)
        now = time.monotonic()
        period = self._jpeg_period_s
        # Due a quarter period early (camera frames jitter around the period's edge); the
        # schedule advances by whole periods so the mean rate is compressed_fps.
        if eye.compressed_pub.get_subscription_count() and now >= eye.next_jpeg - period / 4:
            eye.next_jpeg = max(eye.next_jpeg + period, now + period / 2)
            colorspace = "RGB" if self._pixel_format == "rgb8" else "BGR"
            data = simplejpeg.encode_jpeg(np.ascontiguousarray(pixels), self._jpeg_quality,
                                          colorspace, "420")
            if newest.intact(view):
                eye.compressed_pub.publish(
                    CompressedImage(header=header, format="jpeg", data=data))
                eye.compressed_published += 1
        if eye.info_pub.get_subscription_count():
            info = eye.info  # replaced whole by set_camera_info: never half old, half new
            info.header = header
            eye.info_pub.publish(info)
