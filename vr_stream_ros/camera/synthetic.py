"""The synthetic camera: a moving test pattern stamped with frame number and capture time.

It is the default where no camera exists (CI, a laptop) and the stand-in for the Pi
camera in tests: it sits behind the same interface as the real backends.
"""

from __future__ import annotations

import numpy as np

from vr_stream_ros.camera.base import CameraBackend, CameraError, FramePacer
from vr_stream_ros.camera.pattern import PatternGenerator


class SyntheticCamera(CameraBackend):
    """Renders ``PatternGenerator`` frames at the configured rate."""

    name = "synthetic"

    def open(self) -> None:
        c = self.config
        if c.fps > 240:
            raise CameraError(f"parameter 'fps': got {c.fps:g}, the synthetic camera does 1..240")
        self._pattern = PatternGenerator(c.width, c.height, c.channels)
        self._pacer = FramePacer(c.fps)

    def capture_into(self, out: np.ndarray, frame: int) -> int:
        capture_ns = self._pacer.wait()
        self._pattern.render_into(out, frame, capture_ns)
        if self.config.pixel_format == "bgr8":
            out[...] = out[:, :, ::-1]
        return capture_ns
