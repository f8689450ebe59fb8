"""The camera backend interface: open, capture into a caller's buffer, close."""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from vr_stream_ros.camera.layout import LAYOUTS, packed_size


class CameraError(RuntimeError):
    """The camera cannot be opened or configured as asked (the message says which)."""


@dataclass(frozen=True)
class CameraConfig:
    """What the camera node asks of a backend (see node_params.CAMERA_PARAMS)."""

    backend: str = "synthetic"
    width: int = 1280
    height: int = 720
    fps: float = 60.0
    pixel_format: str = "rgb8"
    profile: str = "low"
    device: str = "/dev/video0"
    file_path: str = ""
    camera_index: int = 0
    exposure_us: int = 0
    analogue_gain: float = 0.0
    # Stereo: two cameras, one packed frame; width/height stay per eye.
    stereo: bool = False
    stereo_layout: str = "top_bottom"
    right_camera_index: int = 1
    right_device: str = "/dev/video1"
    stereo_source: str = "two_devices"
    stereo_pair_tolerance_ms: float = 2.0

    def __post_init__(self) -> None:
        if self.stereo_layout not in LAYOUTS[1:]:
            raise CameraError(f"parameter 'stereo_layout': got {self.stereo_layout!r}, "
                              f"expected one of {', '.join(LAYOUTS[1:])}")
        if self.stereo_source not in STEREO_SOURCES:
            raise CameraError(f"parameter 'stereo_source': got {self.stereo_source!r}, "
                              f"expected one of {', '.join(STEREO_SOURCES)}")

    @property
    def channels(self) -> int:
        """Bytes per pixel of ``pixel_format``."""
        return 1 if self.pixel_format == "mono8" else 3

    @property
    def layout(self) -> str:
        """The frame's layout: ``mono``, or ``stereo_layout`` when ``stereo``."""
        return self.stereo_layout if self.stereo else "mono"

    @property
    def frame_size(self) -> tuple[int, int]:
        """(width, height) of the frame in the ring: both eyes packed when stereo."""
        return packed_size(self.width, self.height, self.layout)

    @property
    def shape(self) -> tuple[int, ...]:
        """Array shape of one (packed) frame, the buffer ``capture_into`` fills."""
        width, height = self.frame_size
        if self.channels == 1:
            return (height, width)
        return (height, width, self.channels)


STEREO_SOURCES = ("two_devices", "side_by_side_device")
"""camera:=v4l2 with stereo: two V4L2 devices (``device`` left, ``right_device`` right),
or one UVC stereo camera whose frames are the two eyes side by side (``device``)."""


class CameraBackend(ABC):
    """A source of frames. ``capture_into`` blocks until the next frame is ready."""

    name = "abstract"

    def __init__(self, config: CameraConfig) -> None:
        self.config = config
        self.eye_skew_ns = 0
        """Stereo: right eye's capture minus left eye's, of the frame just captured."""
        self.pairs_dropped = 0
        """Stereo: frames dropped so far because no partner was within the tolerance."""

    @abstractmethod
    def open(self) -> None:
        """Acquire the device; raise CameraError naming the device or parameter on failure."""

    @abstractmethod
    def capture_into(self, out: np.ndarray, frame: int) -> int:
        """Write the next frame into ``out`` and return its capture time.

        The capture time is CLOCK_MONOTONIC nanoseconds (``time.monotonic_ns``): the
        sensor's exposure start where the backend knows it, else the moment the frame
        became available. ``frame`` is the sequence number the frame will carry.
        """

    def close(self) -> None:
        """Release the device (idempotent)."""

    def describe(self) -> str:
        """One line for the start-up log."""
        c = self.config
        eyes = f"stereo 2x{c.width}x{c.height} {c.layout}" if c.stereo else \
            f"{c.width}x{c.height}"
        return f"{self.name} {eyes} {c.pixel_format} @ {c.fps:g} fps"

    def __enter__(self) -> CameraBackend:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class OpenCvBackend(CameraBackend):
    """A backend reading from an OpenCV ``VideoCapture`` kept in ``self._cap``."""

    _cap = None

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


class FramePacer:
    """Absolute-deadline pacing for sources that have no clock of their own."""

    def __init__(self, fps: float) -> None:
        self.period_ns = round(1e9 / fps)
        self._next = 0

    def wait(self) -> int:
        """Sleep until the next frame time and return it (monotonic ns).

        If the caller fell behind by more than a frame, the schedule restarts from now
        instead of bursting to catch up (a late frame is better skipped than queued).
        """
        now = time.monotonic_ns()
        if self._next == 0 or now - self._next > self.period_ns:
            self._next = now
        delay = self._next - now
        if delay > 0:
            time.sleep(delay / 1e9)
        deadline = self._next
        self._next += self.period_ns
        return deadline


def convert_bgr(frame_bgr: np.ndarray, out: np.ndarray, pixel_format: str) -> None:
    """Copy an OpenCV BGR frame into ``out`` in ``pixel_format`` (one pass, no temporaries)."""
    if pixel_format == "bgr8":
        np.copyto(out, frame_bgr)
    else:
        np.copyto(out, frame_bgr[:, :, ::-1])
