"""USB (UVC) cameras through OpenCV's V4L2 backend."""

from __future__ import annotations

import os
import time

import numpy as np

from vr_stream_ros.camera.base import CameraError, OpenCvBackend, convert_bgr


class V4l2Camera(OpenCvBackend):
    """A V4L2 device, asked for MJPEG (the only way most UVC cameras reach 60 fps)."""

    name = "v4l2"

    def open(self) -> None:
        import cv2

        c = self.config
        device = c.device
        if not os.path.exists(device):
            raise CameraError(f"parameter 'device': {device} does not exist "
                              "(is the camera plugged in? `v4l2-ctl --list-devices` lists them)")
        cap = cv2.VideoCapture(device, cv2.CAP_V4L2)
        if not cap.isOpened():
            raise CameraError(f"parameter 'device': cannot open {device} as a V4L2 camera "
                              "(permissions? another program using it?)")
        cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*"MJPG"))
        cap.set(cv2.CAP_PROP_FRAME_WIDTH, c.width)
        cap.set(cv2.CAP_PROP_FRAME_HEIGHT, c.height)
        cap.set(cv2.CAP_PROP_FPS, c.fps)
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # newest frame, not a queue of old ones
        got_w = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))
        got_h = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        got_fps = cap.get(cv2.CAP_PROP_FPS)
        if (got_w, got_h) != (c.width, c.height):
            cap.release()
            raise CameraError(f"parameters 'width'/'height': {device} cannot do "
                              f"{c.width}x{c.height} (it offered {got_w}x{got_h})")
        if got_fps and got_fps + 0.5 < c.fps:
            cap.release()
            raise CameraError(f"parameter 'fps': {device} cannot do {c.fps:g} fps at "
                              f"{c.width}x{c.height} (it offered {got_fps:g})")
        self._cap = cap

    def capture_into(self, out: np.ndarray, frame: int) -> int:
        ok, bgr = self._cap.read()
        capture_ns = time.monotonic_ns()
        if not ok:
            raise CameraError(f"parameter 'device': {self.config.device} stopped delivering frames")
        convert_bgr(bgr, out, self.config.pixel_format)
        return capture_ns
