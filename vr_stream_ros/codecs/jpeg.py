"""JPEG encoding with libjpeg-turbo, through simplejpeg or, with restart markers, OpenCV.

``restart_interval`` > 0 puts a restart marker (RST, JPEG ITU T.81 B.2.4.4) every that
many MCUs: the entropy coder starts afresh after each, so the packetizer can cut the
scan at those points and every RTP packet decodes on its own (RFC 2435 3.1.7), and a
receiver that lost one packet loses a stripe, not the frame. simplejpeg cannot write
them; OpenCV's encoder (the same libjpeg-turbo, standard Huffman tables) can.
"""

from __future__ import annotations

import numpy as np
import simplejpeg

_COLORSPACE = {"rgb8": "RGB", "bgr8": "BGR", "mono8": "GRAY"}
MAX_RESTART_INTERVAL = 65535


class JpegEncoder:
    """Encodes ring frames to baseline JPEG with standard Huffman tables (RTP/JPEG-safe)."""

    def __init__(self, quality: int = 80, subsampling: str = "420",
                 pixel_format: str = "rgb8", restart_interval: int = 0) -> None:
        if not 1 <= quality <= 100:
            raise ValueError(f"parameter 'jpeg_quality': got {quality}, expected 1..100")
        if subsampling not in ("420", "422"):
            raise ValueError(f"parameter 'chroma_subsampling': got {subsampling!r}, "
                             "expected '420' or '422' (RTP/JPEG types 1 and 0)")
        if pixel_format not in _COLORSPACE:
            raise ValueError(f"pixel format {pixel_format!r} not one of {', '.join(_COLORSPACE)}")
        if not 0 <= restart_interval <= MAX_RESTART_INTERVAL:
            raise ValueError(f"parameter 'jpeg_restart_interval': got {restart_interval}, "
                             f"expected 0 (none) .. {MAX_RESTART_INTERVAL} MCUs")
        self.quality = quality
        self.subsampling = subsampling
        self.restart_interval = restart_interval
        self._colorspace = _COLORSPACE[pixel_format]
        self._cv2_params: list[int] = []
        if restart_interval:
            import cv2  # only this path needs OpenCV

            self._cv2 = cv2
            self._cv2_params = [
                cv2.IMWRITE_JPEG_QUALITY, quality,
                cv2.IMWRITE_JPEG_RST_INTERVAL, restart_interval,
                cv2.IMWRITE_JPEG_SAMPLING_FACTOR,
                cv2.IMWRITE_JPEG_SAMPLING_FACTOR_420 if subsampling == "420" else
                cv2.IMWRITE_JPEG_SAMPLING_FACTOR_422]

    def set_quality(self, quality: int) -> None:
        """Change the quality from the next frame on (RTP/JPEG sends the tables in-band)."""
        if not 1 <= quality <= 100:
            raise ValueError(f"JPEG quality: got {quality}, expected 1..100")
        self.quality = quality
        if self._cv2_params:
            self._cv2_params[1] = quality

    def encode(self, frame: np.ndarray) -> bytes:
        """Encode one frame (read straight from the ring view; no copy without restarts)."""
        if not self.restart_interval:
            return simplejpeg.encode_jpeg(frame, self.quality, self._colorspace,
                                          self.subsampling)
        cv2 = self._cv2
        if self._colorspace == "RGB":
            frame = cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)
        ok, buf = cv2.imencode(".jpg", frame, self._cv2_params)
        if not ok:
            raise ValueError(f"OpenCV could not encode a {frame.shape} frame as JPEG")
        return buf.tobytes()
