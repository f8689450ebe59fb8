"""USB (UVC) cameras through OpenCV's V4L2 backend, one or a stereo pair.

Stereo (``stereo``) comes two ways (``stereo_source``):

- ``two_devices``: ``device`` is the left eye, ``right_device`` the right, each a camera
  of ``width`` x ``height``. USB cameras have no common clock or trigger: each frame's
  capture time is when its ``grab()`` returned, and frames are paired by it within
  ``stereo_pair_tolerance_ms`` (camera/pairing.py); a frame without a partner is dropped
  and counted. Two free-running cameras drift through each other's frame period, so
  expect drops unless the tolerance is about half a period.
- ``side_by_side_device``: one UVC stereo camera (the common dual-sensor USB boards) whose
  every frame holds both eyes side by side, ``2 * width`` x ``height``; the board
  exposes both sensors at once, so the eye skew is 0. Each half is converted straight
  into its eye's place in the ring slot.
"""

from __future__ import annotations

import os
import time

import numpy as np

from vr_stream_ros.camera.base import (
    CameraError,
    OpenCvBackend,
    convert_bgr,
    convert_bgr_side_by_side,
)
from vr_stream_ros.camera.layout import eye_views
from vr_stream_ros.camera.pairing import StereoPairer

UNPAIRED_SECONDS = 3.0
"""Drops in a row, in seconds of frames, before two devices count as not pairable."""


class V4l2Camera(OpenCvBackend):
    """A V4L2 device, asked for MJPEG (the only way most UVC cameras reach 60 fps)."""

    name = "v4l2"

    def open(self) -> None:
        c = self.config
        self._right = None
        if not c.stereo:
            self._cap = self._open_device(c.device, "device", c.width, c.height)
        elif c.stereo_source == "side_by_side_device":
            self._cap = self._open_device(c.device, "device", 2 * c.width, c.height)
        else:
            if os.path.realpath(c.device) == os.path.realpath(c.right_device):
                raise CameraError(f"parameters 'device'/'right_device': both are {c.device}; "
                                  "stereo_source:=two_devices needs two cameras (one "
                                  "side-by-side camera: stereo_source:=side_by_side_device)")
            self._cap = self._open_device(c.device, "device", c.width, c.height)
            try:
                self._right = self._open_device(c.right_device, "right_device", c.width,
                                                c.height)
            except CameraError:
                self.close()
                raise
            self._pairer = StereoPairer(
                lambda view: self._read_into(self._cap, "device", view),
                lambda view: self._read_into(self._right, "right_device", view),
                round(c.stereo_pair_tolerance_ms * 1e6),
                max_unpaired=max(10, round(UNPAIRED_SECONDS * c.fps)))

    def _open_device(self, device: str, param: str, width: int, height: int):
        import cv2

        c = self.config
        if not os.path.exists(device):
            raise CameraError(f"parameter '{param}': {device} does not exist "
                              "(is the camera plugged in? `v4l2-ctl --list-devices` lists them)")
        cap = cv2.VideoCapture(device, cv2.CAP_V4L2)
        if not cap.isOpened():
            raise CameraError(f"parameter '{param}': cannot open {device} as a V4L2 camera "
                              "(permissions? another program using it?)")
        cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*"MJPG"))
        cap.set(cv2.CAP_PROP_FRAME_WIDTH, width)
        cap.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
        cap.set(cv2.CAP_PROP_FPS, c.fps)
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # newest frame, not a queue of old ones
        got_w = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))
        got_h = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        got_fps = cap.get(cv2.CAP_PROP_FPS)
        if (got_w, got_h) != (width, height):
            cap.release()
            raise CameraError(f"parameters 'width'/'height': {device} cannot do "
                              f"{width}x{height} (it offered {got_w}x{got_h})")
        if got_fps and got_fps + 0.5 < c.fps:
            cap.release()
            raise CameraError(f"parameter 'fps': {device} cannot do {c.fps:g} fps at "
                              f"{width}x{height} (it offered {got_fps:g})")
        return cap

    def _read_into(self, cap, param: str, out: np.ndarray) -> int:
        """Grab the device's next frame, convert it into ``out``; its capture time."""
        ok = cap.grab()
        capture_ns = time.monotonic_ns()
        ok, bgr = cap.retrieve() if ok else (False, None)
        if not ok:
            device = getattr(self.config, param)
            raise CameraError(f"parameter '{param}': {device} stopped delivering frames")
        convert_bgr(bgr, out, self.config.pixel_format)
        return capture_ns

    def capture_into(self, out: np.ndarray, frame: int) -> int:
        c = self.config
        if self._right is not None:  # two devices: a pair within the tolerance
            left_ns, right_ns = self._pairer.capture(eye_views(out, c.layout))
            self.eye_skew_ns = right_ns - left_ns
            self.pairs_dropped = self._pairer.dropped
            return left_ns
        ok, bgr = self._cap.read()
        capture_ns = time.monotonic_ns()
        if not ok:
            raise CameraError(f"parameter 'device': {c.device} stopped delivering frames")
        if c.stereo:  # one side-by-side stereo camera
            convert_bgr_side_by_side(bgr, out, c.layout, c.pixel_format)
        else:
            convert_bgr(bgr, out, c.pixel_format)
        return capture_ns

    def close(self) -> None:
        super().close()
        right = getattr(self, "_right", None)
        if right is not None:
            right.release()
            self._right = None
