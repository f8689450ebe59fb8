"""frame_source:=auto|ring|topic for any node that consumes frames (the detector now).

    source = FrameSource(node, "auto", ring_name="x", ring_wait_s=10, image_topic=...)
    frame = source.take(timeout=0.25)     # worker thread: a Frame, or None
    source.close()

It listens to camera_node's ``frame_ref`` (a few dozen bytes per frame) to learn where
the camera runs and which ring it writes, and re-decides before each ``take``
(ring/source.py's ``choose_source``): the ring when the camera is on this host, else
``image_raw/compressed`` (or ``image_raw``) with keep-last-1 best-effort QoS. The
subscription callback only parks the newest message; ``take`` decodes it on the
caller's thread and finds its FrameRef (same header stamp) for the frame's seq and
capture time. The image subscription exists only while the topic is the source, so a
camera on this host does not encode JPEGs for nobody. Each choice and switch is logged
with its reason.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict

import numpy as np
from rclpy.node import Node
from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
    qos_profile_sensor_data,
)
from sensor_msgs.msg import CompressedImage, Image

from vr_stream_ros.camera.layout import eye_views
from vr_stream_ros.msg import FrameRef
from vr_stream_ros.ring.frame_ring import FrameRingReader, RingNotFound
from vr_stream_ros.ring.newest import NewestFrames
from vr_stream_ros.ring.source import (
    CameraHost,
    Choice,
    Frame,
    Newest,
    UndecodableFrame,
    choose_source,
    decode_image,
    host_identity,
    ring_exists,
    ring_missing,
)

NEWEST_ONLY = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1,
                         reliability=ReliabilityPolicy.BEST_EFFORT,
                         durability=DurabilityPolicy.VOLATILE)
"""The image subscription's QoS: one frame in flight, none resent, none kept."""
REFS_KEPT = 256
"""FrameRefs remembered for matching images to their seq (seconds of frames)."""


def stamp_ns(stamp) -> int:
    """A builtin_interfaces/Time as integer nanoseconds."""
    return stamp.sec * 1_000_000_000 + stamp.nanosec


class _RingFrames:
    """Frames copied out of the ring, newest first, torn ones dropped."""

    source = "ring"

    def __init__(self, ring_name: str) -> None:
        self.reader = FrameRingReader(ring_name)
        self.newest = NewestFrames(self.reader)
        self._rgb = self.reader.pixel_format == "rgb8"
        # A stereo pair is looked at through its left eye: boxes in one eye's pixels.
        self._eye = "mono" if self.reader.spec.layout == "mono" else "left"

    def take(self, timeout: float) -> Frame | None:
        view = self.newest.take(timeout)
        if view is None:
            return None
        # Out of the ring before the slow part.
        pixels = np.array(eye_views(view.array, self.reader.spec.layout)[self._eye])
        if not self.newest.intact(view):
            return None
        return Frame(pixels, self._rgb, view.seq, view.capture_ns)

    def counts(self) -> dict[str, int]:
        return {"skipped": self.newest.skipped, "torn": self.newest.torn}

    def close(self, _node: Node) -> None:
        self.reader.close()


class _TopicFrames:
    """The newest image message, decoded on the taking thread and matched to its FrameRef."""

    source = "topic"

    def __init__(self, node: Node, topic: str, refs: OrderedDict[int, tuple[int, int]],
                 refs_lock: threading.Lock) -> None:
        self._mailbox: Newest = Newest()
        self._refs, self._refs_lock = refs, refs_lock
        self._compressed = topic.endswith("compressed")
        self.sub = node.create_subscription(
            CompressedImage if self._compressed else Image, topic, self._mailbox.put,
            NEWEST_ONLY)
        self.undecodable = self.unmatched = 0
        self.last_error = ""

    def take(self, timeout: float) -> Frame | None:
        msg = self._mailbox.take(timeout)
        if msg is None:
            return None
        try:
            if self._compressed:
                pixels, rgb = decode_image(msg.format, bytes(msg.data))
            else:
                pixels, rgb = decode_image(msg.encoding, bytes(msg.data), msg.width,
                                           msg.height, msg.step)
        except UndecodableFrame as exc:
            self.undecodable += 1
            self.last_error = str(exc)
            return None
        stamp = stamp_ns(msg.header.stamp)
        with self._refs_lock:
            ref = self._refs.get(stamp)
        if ref is None:  # its FrameRef was lost (best effort): no seq to stamp boxes with
            self.unmatched += 1
            return None
        return Frame(pixels, rgb, ref[0], ref[1], stamp)

    def counts(self) -> dict[str, int]:
        return {"skipped": self._mailbox.skipped, "undecodable": self.undecodable,
                "unmatched": self.unmatched}

    def close(self, node: Node) -> None:
        node.destroy_subscription(self.sub)


class FrameSource:
    """Chooses, opens and switches the frame source of ``node``; ``take`` on one thread."""

    def __init__(self, node: Node, requested: str, *, ring_name: str, ring_wait_s: float,
                 image_topic: str) -> None:
        self._node = node
        self.requested = requested
        self._ring_param = ring_name
        self._ring_wait_s = ring_wait_s
        self._image_topic = image_topic
        self.here = host_identity()
        self._camera: CameraHost | None = None
        self._refs: OrderedDict[int, tuple[int, int]] = OrderedDict()
        self._refs_lock = threading.Lock()
        self._active: _RingFrames | _TopicFrames | None = None
        self.choice: Choice | None = None
        self._done: dict[str, int] = {}
        self._started = time.monotonic()
        self._waiting_logged = False
        self._opened_at: float | None = None
        node.create_subscription(FrameRef, "frame_ref", self._on_frame_ref,
                                 qos_profile_sensor_data)

    # -- executor thread ---------------------------------------------------------------
    def _on_frame_ref(self, ref: FrameRef) -> None:
        self._camera = CameraHost(ref.host, ref.host_id, ref.ring_name)
        with self._refs_lock:
            self._refs[stamp_ns(ref.header.stamp)] = (ref.seq, ref.capture_mono_ns)
            while len(self._refs) > REFS_KEPT:
                self._refs.popitem(last=False)

    # -- worker thread ------------------------------------------------------------------
    def take(self, timeout: float) -> Frame | None:
        """The newest frame not taken yet, from the source chosen now; None if none came
        within ``timeout`` s. Raises FrameSourceError when ``ring`` cannot work here."""
        self._decide()
        if self._active is None:
            time.sleep(timeout)
            return None
        frame = self._active.take(timeout)
        if frame is not None and self._opened_at is not None:
            self._log(f"frame source: first frame from the {self._active.source} "
                      f"{time.monotonic() - self._opened_at:.2f} s after choosing it "
                      f"(frame {frame.seq})")
            self._opened_at = None
        return frame

    def _decide(self) -> None:
        camera = self._camera
        ring = camera.ring_name if camera else self._ring_param
        choice = choose_source(self.requested, self.here, camera, ring, ring_exists(ring))
        if choice is None:
            if self.choice is not None:  # frame_source:=ring, camera restarting: the
                return                   # reader re-attaches to the new ring by itself
            waited = time.monotonic() - self._started
            if self.requested == "ring" and waited > self._ring_wait_s:
                raise ring_missing(ring, self.here, camera, self._ring_wait_s)
            if not self._waiting_logged:
                self._waiting_logged = True
                self._log(f"frame source ({self.requested}): waiting for camera_node's "
                          f"FrameRef on {self._node.resolve_topic_name('frame_ref')}"
                          + (f" or ring '{ring}'" if self.requested == "ring" else "")
                          + " to choose")
            return
        old = self.choice
        if old is not None and (old.source, old.ring_name) == (choice.source, choice.ring_name):
            if choice.reason != old.reason:  # same source, new situation: say so
                self.choice = choice
                self._log(f"frame source: still {choice.source}, now because {choice.reason}")
            return
        self._open(choice, old)

    def _open(self, choice: Choice, old: Choice | None) -> None:
        self._close_active()
        try:
            if choice.source == "ring":
                self._active = _RingFrames(choice.ring_name)
                where = f"ring '{choice.ring_name}'"
            else:
                self._active = _TopicFrames(self._node, self._image_topic, self._refs,
                                            self._refs_lock)
                where = f"{self._active.sub.topic_name} (best effort, keep last 1)"
        except RingNotFound:  # removed between the look and the open: decide again
            return
        self.choice = choice
        self._opened_at = time.monotonic()
        verb = f"switched {old.source} -> {choice.source}" if old else f"{choice.source}"
        self._log(f"frame source: {verb}: {where}, because {choice.reason}")

    def _close_active(self) -> None:
        if self._active is None:
            return
        for key, value in self._active.counts().items():
            self._done[key] = self._done.get(key, 0) + value
        self._active.close(self._node)
        self._active = None

    def count(self, key: str) -> int:
        """``skipped``, ``torn``, ``undecodable`` or ``unmatched`` frames since start."""
        now = self._active.counts().get(key, 0) if self._active else 0
        return self._done.get(key, 0) + now

    @property
    def last_error(self) -> str:
        """Why the last undecodable frame could not be decoded ('' if none)."""
        return getattr(self._active, "last_error", "")

    def _log(self, text: str) -> None:
        self._node.get_logger().info(text)

    def close(self) -> None:
        """Release the ring or the subscription (after the worker stopped)."""
        self._close_active()
