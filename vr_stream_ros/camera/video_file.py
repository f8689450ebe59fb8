"""A video (or still image) file played in a loop at the configured rate.

With ``stereo`` the file is a side-by-side stereo video (left eye left, the usual
"SBS" format of 3D video): each frame, resized to ``2 * width`` x ``height`` if needed,
is split into the eyes straight into their places in the ring slot (both eyes from one
file frame: the eye skew is 0).
"""

from __future__ import annotations

import os

import numpy as np

from vr_stream_ros.camera.base import (
    CameraError,
    FramePacer,
    OpenCvBackend,
    convert_bgr,
    convert_bgr_side_by_side,
)


class VideoFileCamera(OpenCvBackend):
    """Frames from any file OpenCV reads (mp4, mkv, avi, jpg, png), resized to fit."""

    name = "file"

    def open(self) -> None:
        import cv2

        path = self.config.file_path
        if not path:
            raise CameraError("parameter 'file_path': empty; camera:=file needs a video file")
        if not os.path.isfile(path):
            raise CameraError(f"parameter 'file_path': {path} does not exist")
        cap = cv2.VideoCapture(path)
        ok, first = cap.read() if cap.isOpened() else (False, None)
        if not ok:
            raise CameraError(f"parameter 'file_path': {path} is not a video or image "
                              "OpenCV can decode")
        self._cv2, self._cap, self._first = cv2, cap, first
        # A still image is a one-frame video that cannot be rewound: keep its frame.
        ok, second = cap.read()
        self._still = None if ok else first
        self._second = second if ok else None
        self._pacer = FramePacer(self.config.fps)

    def _next_bgr(self) -> np.ndarray:
        if self._still is not None:
            return self._still
        if self._first is not None:
            bgr, self._first = self._first, None
            return bgr
        if self._second is not None:
            bgr, self._second = self._second, None
            return bgr
        ok, bgr = self._cap.read()
        if not ok:  # end of file: loop
            self._cap.set(self._cv2.CAP_PROP_POS_FRAMES, 0)
            ok, bgr = self._cap.read()
            if not ok:
                raise CameraError(f"parameter 'file_path': {self.config.file_path} "
                                  "cannot be read again")
        return bgr

    def capture_into(self, out: np.ndarray, frame: int) -> int:
        bgr = self._next_bgr()
        c = self.config
        width = 2 * c.width if c.stereo else c.width  # stereo: both eyes side by side
        if bgr.shape[:2] != (c.height, width):
            bgr = self._cv2.resize(bgr, (width, c.height), interpolation=self._cv2.INTER_AREA)
        capture_ns = self._pacer.wait()
        if c.stereo:
            convert_bgr_side_by_side(bgr, out, c.layout, c.pixel_format)
        else:
            convert_bgr(bgr, out, c.pixel_format)
        return capture_ns
