"""JPEG encoding with libjpeg-turbo through simplejpeg (see README: Dependencies)."""

from __future__ import annotations

import numpy as np
import simplejpeg

_COLORSPACE = {"rgb8": "RGB", "bgr8": "BGR", "mono8": "GRAY"}


class JpegEncoder:
    """Encodes ring frames to baseline JPEG with standard Huffman tables (RTP/JPEG-safe)."""

    def __init__(self, quality: int = 80, subsampling: str = "420",
                 pixel_format: str = "rgb8") -> None:
        if not 1 <= quality <= 100:
            raise ValueError(f"parameter 'jpeg_quality': got {quality}, expected 1..100")
        if subsampling not in ("420", "422"):
            raise ValueError(f"parameter 'chroma_subsampling': got {subsampling!r}, "
                             "expected '420' or '422' (RTP/JPEG types 1 and 0)")
        if pixel_format not in _COLORSPACE:
            raise ValueError(f"pixel format {pixel_format!r} not one of {', '.join(_COLORSPACE)}")
        self.quality = quality
        self.subsampling = subsampling
        self._colorspace = _COLORSPACE[pixel_format]

    def encode(self, frame: np.ndarray) -> bytes:
        """Encode one frame (read straight from the ring view; no copy is made)."""
        return simplejpeg.encode_jpeg(frame, self.quality, self._colorspace, self.subsampling)
