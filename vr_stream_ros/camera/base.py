"""The camera backend interface: open, capture into a caller's buffer, close."""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np


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

    @property
    def channels(self) -> int:
        """Bytes per pixel of ``pixel_format``."""
        return 1 if self.pixel_format == "mono8" else 3

    @property
    def shape(self) -> tuple[int, ...]:
        """Array shape of one frame."""
        if self.channels == 1:
            return (self.height, self.width)
        return (self.height, self.width, self.channels)


class CameraBackend(ABC):
    """A source of frames. ``capture_into`` blocks until the next frame is ready."""

    name = "abstract"

    def __init__(self, config: CameraConfig) -> None:
        self.config = config

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
        return f"{self.name} {c.width}x{c.height} {c.pixel_format} @ {c.fps:g} fps"

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
