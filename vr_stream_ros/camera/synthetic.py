"""The synthetic camera: a moving test pattern stamped with frame number and capture time.

It is the default where no camera exists (CI, a laptop) and the stand-in for the Pi
camera in tests: it sits behind the same interface as the real backends. With
``stereo`` it is a hardware-synchronised pair (as two sensors under ``rpi.SyncMode``
would be): both eyes are exposed at the same frame deadline, the right eye sees the
sweeping box ``DISPARITY_PX`` further left (nearer than the bars), and each eye is
rendered straight into its half of the caller's buffer (the ring slot).
"""

from __future__ import annotations

import numpy as np

from vr_stream_ros.camera.base import CameraBackend, CameraError, FramePacer
from vr_stream_ros.camera.layout import eye_views
from vr_stream_ros.camera.pattern import PatternGenerator

DISPARITY_PX = 24
"""Horizontal disparity of the box between the eyes of the synthetic pair."""


class SyntheticCamera(CameraBackend):
    """Renders ``PatternGenerator`` frames at the configured rate (one per eye in stereo)."""

    name = "synthetic"

    def open(self) -> None:
        c = self.config
        if c.fps > 240:
            raise CameraError(f"parameter 'fps': got {c.fps:g}, the synthetic camera does 1..240")
        self._pattern = PatternGenerator(c.width, c.height, c.channels)
        self._pacer = FramePacer(c.fps)

    def capture_into(self, out: np.ndarray, frame: int) -> int:
        capture_ns = self._pacer.wait()
        layout = self.config.layout
        if layout == "mono":
            self._render(out, frame, capture_ns, "mono")
            return capture_ns
        for eye, view in eye_views(out, layout).items():  # views of the slot: no copy
            self._render(view, frame, capture_ns, eye)
        self.eye_skew_ns = 0  # one deadline for both eyes
        return capture_ns

    def _render(self, out: np.ndarray, frame: int, capture_ns: int, eye: str) -> None:
        disparity = DISPARITY_PX if eye == "right" else 0
        self._pattern.render_into(out, frame, capture_ns, eye, disparity)
        if self.config.pixel_format == "bgr8":
            out[...] = out[:, :, ::-1]
