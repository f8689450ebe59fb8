"""Where a frame consumer's frames come from: the ring on the camera's host, decoded
image topics anywhere else (no rclpy; the node side is ros/frame_source.py).

    here = host_identity()                       # what camera_node puts in FrameRef.host_id
    choice = choose_source("auto", here, camera, ring_exists)
    choice.source, choice.reason                 # "ring" / "topic", and why, for the log

The ring is shared memory: a reader must share the camera's kernel (boot), its /dev/shm
(the same tmpfs), and its PID and network namespaces (the ring's doorbell is an abstract
AF_UNIX socket, and the writer is recognised by its pid). ``host_identity`` says exactly
that, so two network namespaces of one machine count as two hosts, as they must.
``Newest`` hands the newest message of a topic to a worker thread (never a queue), and
``decode_image`` turns a CompressedImage (JPEG) or Image into pixels, raising
``UndecodableFrame`` for frames that cannot be (the caller counts and skips them).
"""

from __future__ import annotations

import os
import socket
import threading
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np
import simplejpeg

from vr_stream_ros.ring.frame_ring import SHM_DIR

FRAME_SOURCES = ("auto", "ring", "topic")
_NAMESPACES = ("pid", "net")

T = TypeVar("T")


class FrameSourceError(Exception):
    """A frame source that cannot work here; one line naming the ring and the hosts."""


class UndecodableFrame(Exception):
    """An image message whose pixels cannot be recovered (counted and skipped)."""


@dataclass(frozen=True)
class HostIdentity:
    """A host as far as the frame ring is concerned."""

    name: str
    """Host name, for people (log lines, errors)."""
    id: str
    """Kernel boot id, the /dev/shm filesystem and the PID and network namespaces: equal
    iff a ring written there can be read here."""


def host_identity() -> HostIdentity:
    """This process's host (see HostIdentity)."""
    name = socket.gethostname()
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            parts = [f.read().strip()]
        shm = os.stat(SHM_DIR)
        parts.append(f"shm:{shm.st_dev}:{shm.st_ino}")
        parts += [f"{ns}:{os.stat(f'/proc/self/ns/{ns}').st_ino}" for ns in _NAMESPACES]
    except OSError:  # not Linux: the host name is all there is
        parts = [name]
    return HostIdentity(name, "/".join(parts))


@dataclass(frozen=True)
class CameraHost:
    """Where camera_node runs and which ring it writes, as its FrameRef says."""

    host: str
    host_id: str
    """'' from a camera_node older than FrameRef.host_id: then the ring's presence decides."""
    ring_name: str


@dataclass(frozen=True)
class Choice:
    """The source to use and why."""

    source: str
    """'ring' or 'topic'."""
    ring_name: str
    reason: str


def ring_exists(name: str) -> bool:
    """True if /dev/shm/<name> exists on this host."""
    return os.path.exists(os.path.join(SHM_DIR, name))


def choose_source(requested: str, here: HostIdentity, camera: CameraHost | None,
                  ring_name: str, exists: bool) -> Choice | None:
    """The source for ``frame_source:=requested``; None while it cannot be told yet.

    ``camera`` is the newest FrameRef's word (None before the first one), ``ring_name``
    the ring to use (the camera's, else the node's parameter) and ``exists`` whether it
    is in /dev/shm here. Raises FrameSourceError for ``ring`` when the camera is
    elsewhere, and for an unknown ``requested``.
    """
    if requested not in FRAME_SOURCES:
        raise FrameSourceError(f"parameter 'frame_source': got {requested!r}, expected one "
                               f"of {', '.join(map(repr, FRAME_SOURCES))}")
    if requested == "topic":
        return Choice("topic", ring_name, "frame_source:=topic")
    local = camera is not None and camera.host_id in ("", here.id)
    if requested == "ring":
        if camera is not None and not local:
            raise FrameSourceError(
                f"frame_source:=ring: ring '{ring_name}' is on host '{camera.host}' where "
                f"camera_node runs (its FrameRef says so); this host '{here.name}' cannot map "
                "it (shared memory does not cross hosts or namespaces): use "
                "frame_source:=auto or topic")
        if not exists:
            return None
        return Choice("ring", ring_name, "frame_source:=ring" + (
            f", camera_node on this host ('{here.name}')" if camera else
            ", ring found here (no FrameRef seen yet)"))
    if camera is None:
        return None
    if not local:
        where = (f"in another namespace of host '{camera.host}' (FrameRef host_id differs)"
                 if camera.host == here.name else f"on host '{camera.host}'")
        return Choice("topic", ring_name, f"camera_node runs {where}, this is '{here.name}': "
                      "shared memory does not cross hosts")
    if exists:
        return Choice("ring", ring_name, f"camera_node runs on this host ('{here.name}') "
                      f"and its ring '{ring_name}' is here")
    return Choice("topic", ring_name, f"camera_node runs on this host but its ring "
                  f"'{ring_name}' is not in {SHM_DIR} here")


def ring_missing(ring_name: str, here: HostIdentity, camera: CameraHost | None,
                 waited_s: float) -> FrameSourceError:
    """The error of ``frame_source:=ring`` when the ring never appeared."""
    seen = (f"; camera_node runs on host '{camera.host}'" if camera else
            "; no camera_node seen on frame_ref either")
    return FrameSourceError(f"frame_source:=ring: ring '{ring_name}' not found on this host "
                            f"'{here.name}' after {waited_s:g} s{seen}")


@dataclass(frozen=True)
class Frame:
    """One frame out of either source, owned by the consumer (a copy, not a view)."""

    pixels: np.ndarray
    rgb: bool
    """True: RGB channel order; False: BGR."""
    seq: int
    """FrameRef.seq of the frame."""
    capture_ns: int
    """Capture time on the camera host's CLOCK_MONOTONIC (FrameRef.capture_mono_ns)."""
    stamp_ns: int | None = None
    """The camera's header stamp (ROS clock) when the frame came over a topic."""


class Newest(Generic[T]):
    """One slot between a subscription callback and a worker: the newest item wins."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: T | None = None
        self.skipped = 0
        """Items replaced by a newer one before the worker took them."""

    def put(self, item: T) -> None:
        """Offer ``item`` (any thread); never blocks on the worker."""
        with self._cond:
            if self._item is not None:
                self.skipped += 1
            self._item = item
            self._cond.notify()

    def take(self, timeout: float) -> T | None:
        """The newest item not taken yet, waiting up to ``timeout`` s; None if none came."""
        with self._cond:
            if self._item is None:
                self._cond.wait(timeout)
            item, self._item = self._item, None
            return item


def decode_image(fmt_or_encoding: str, data: bytes, width: int = 0, height: int = 0,
                 step: int = 0) -> tuple[np.ndarray, bool]:
    """Pixels of a CompressedImage (``width`` 0: ``format``, JPEG) or of an Image
    (``encoding`` rgb8/bgr8 with width, height and step); (array, rgb)."""
    if not width:
        fmt = fmt_or_encoding.lower()
        if "jpeg" not in fmt and "jpg" not in fmt:
            raise UndecodableFrame(f"CompressedImage format {fmt_or_encoding!r}: expected "
                                   "jpeg (camera_node's image_raw/compressed)")
        try:
            return simplejpeg.decode_jpeg(data, colorspace="RGB"), True
        except ValueError as exc:
            raise UndecodableFrame(f"CompressedImage of {len(data)} bytes is not a "
                                   f"decodable JPEG: {exc}") from None
    if fmt_or_encoding not in ("rgb8", "bgr8"):
        raise UndecodableFrame(f"Image encoding {fmt_or_encoding!r}: expected rgb8 or bgr8")
    row = width * 3
    if step < row or len(data) < step * height:
        raise UndecodableFrame(f"Image {width}x{height} {fmt_or_encoding}: {len(data)} bytes "
                               f"with step {step}, expected step >= {row} and "
                               f"{step * height} bytes")
    rows = np.frombuffer(data, np.uint8, count=step * height).reshape(height, step)
    return rows[:, :row].reshape(height, width, 3).copy(), fmt_or_encoding == "rgb8"
