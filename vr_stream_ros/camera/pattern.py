"""Moving test pattern that carries its frame number and capture time in its pixels.

The stamp is a grid of black/white cells (16x16 px each) in the top-left corner,
large enough to survive JPEG/H.264 compression, so any receiver that decodes the
picture can read back which frame it shows and when it was captured: the basis of
glass-to-glass latency measurement. The magic byte also tells the eye: 0xA5 mono,
0xA6 left, 0xA7 right; in a stereo frame each eye carries its own stamp (its own
capture time) in the top-left corner of its own half (``read_eye_stamps``).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

from vr_stream_ros.camera.layout import eye_views

CELL = 16
"""Edge of one stamp cell in pixels."""
EYE_MAGIC = {"mono": 0xA5, "left": 0xA6, "right": 0xA7}
"""The stamp's first byte per eye (mono is the original magic, unchanged)."""
_EYE_OF_MAGIC = {m: eye for eye, m in EYE_MAGIC.items()}
_BITS = 8 + 32 + 64 + 32  # magic, frame number, capture ns, crc32
STAMP_BITS = _BITS


@dataclass(frozen=True)
class PixelStamp:
    """What the pattern carries: frame number, capture time (CLOCK_MONOTONIC ns), eye."""

    frame: int
    capture_ns: int
    eye: str = "mono"
    """'mono', 'left' or 'right'."""


def stamp_grid(width: int) -> tuple[int, int]:
    """Return (columns, rows) of stamp cells for a frame of this width."""
    cols = width // CELL
    if cols < 8:
        raise ValueError(f"width {width} too small for the pixel stamp (need >= {8 * CELL})")
    return cols, -(-_BITS // cols)


def _bits_of(frame: int, capture_ns: int, eye: str) -> np.ndarray:
    if eye not in EYE_MAGIC:
        raise ValueError(f"stamp eye: got {eye!r}, expected one of {', '.join(EYE_MAGIC)}")
    body = (
        EYE_MAGIC[eye].to_bytes(1, "big")
        + (frame & 0xFFFFFFFF).to_bytes(4, "big")
        + (capture_ns & 0xFFFFFFFFFFFFFFFF).to_bytes(8, "big")
    )
    crc = zlib.crc32(body).to_bytes(4, "big")
    return np.unpackbits(np.frombuffer(body + crc, dtype=np.uint8))


def write_stamp(image: np.ndarray, frame: int, capture_ns: int, eye: str = "mono") -> None:
    """Draw the stamp of ``eye`` into ``image`` (H x W x C or H x W, uint8) in place."""
    cols, rows = stamp_grid(image.shape[1])
    bits = np.zeros(cols * rows, dtype=np.uint8)
    bits[:_BITS] = _bits_of(frame, capture_ns, eye)
    cells = (bits.reshape(rows, cols) * 255).astype(np.uint8)
    block = np.repeat(np.repeat(cells, CELL, axis=0), CELL, axis=1)
    region = image[: rows * CELL, : cols * CELL]
    if image.ndim == 3:
        region[...] = block[:, :, None]
    else:
        region[...] = block


def read_stamp(image: np.ndarray) -> PixelStamp | None:
    """Read the stamp back from a decoded frame; None if it is absent or corrupt."""
    if image.ndim == 3:
        image = image[:, :, 1]  # green carries most luma in RGB and BGR alike
    cols, rows = stamp_grid(image.shape[1])
    if image.shape[0] < rows * CELL:
        return None
    region = image[: rows * CELL, : cols * CELL]
    # Sample the middle 8x8 of each cell: edges smear under compression.
    q = CELL // 4
    centres = region.reshape(rows, CELL, cols, CELL)[:, q : CELL - q, :, q : CELL - q]
    bits = (centres.mean(axis=(1, 3)) > 127).astype(np.uint8).reshape(-1)[:_BITS]
    raw = np.packbits(bits).tobytes()
    eye = _EYE_OF_MAGIC.get(raw[0])
    if eye is None or zlib.crc32(raw[:13]) != int.from_bytes(raw[13:17], "big"):
        return None
    return PixelStamp(int.from_bytes(raw[1:5], "big"), int.from_bytes(raw[5:13], "big"), eye)


def read_eye_stamps(image: np.ndarray, layout: str) -> dict[str, PixelStamp | None]:
    """Each eye's stamp of a packed frame (``{'left': ..., 'right': ...}``; mono: ``'mono'``).

    A stamp whose eye is not the half it was read from counts as absent: a receiver that
    split the frame the wrong way sees None, not a wrong eye's time.
    """
    stamps: dict[str, PixelStamp | None] = {}
    for eye, view in eye_views(image, layout).items():
        stamp = read_stamp(view)
        stamps[eye] = stamp if stamp is not None and stamp.eye == eye else None
    return stamps


class PatternGenerator:
    """Renders the moving pattern: colour bars scrolling sideways and a sweeping box.

    ``render_into`` writes straight into a caller-owned buffer (a ring slot), so a
    frame costs one copy of the background plus the stamp.
    """

    def __init__(self, width: int, height: int, channels: int = 3) -> None:
        stamp_grid(width)
        self.width, self.height, self.channels = width, height, channels
        x = np.arange(2 * width)
        bars = np.array(
            [[235, 235, 235], [235, 235, 16], [16, 235, 235], [16, 235, 16],
             [235, 16, 235], [235, 16, 16], [16, 16, 235], [16, 16, 16]], dtype=np.uint8)
        row = bars[(x * 8 // width) % 8]  # two periods so any shift is a plain slice
        ramp = np.linspace(0.35, 1.0, height, dtype=np.float32)[:, None, None]
        wide = (row[None, :, :] * ramp).astype(np.uint8)
        self._wide = wide if channels == 3 else wide.mean(axis=2).astype(np.uint8)
        self._box = max(16, height // 6)

    def render_into(self, out: np.ndarray, frame: int, capture_ns: int, eye: str = "mono",
                    disparity: int = 0) -> None:
        """Render frame number ``frame`` into ``out`` (shape H x W x C, uint8).

        ``disparity``: the sweeping box is drawn this many pixels further left while the
        bars stay put, so a right eye rendered with it sees the box nearer than the bars.
        """
        shift = (frame * 4) % self.width
        np.copyto(out, self._wide[:, shift : shift + self.width])
        b = self._box
        bx = max(0, (frame * 7) % max(1, self.width - b) - disparity)
        by = self.height // 2 - b // 2
        out[by : by + b, bx : bx + b] = 255 - out[by : by + b, bx : bx + b]
        write_stamp(out, frame, capture_ns, eye)

    def render(self, frame: int, capture_ns: int) -> np.ndarray:
        """Render into a new array (tests and tools; the camera uses render_into)."""
        shape = (self.height, self.width, self.channels) if self.channels > 1 else (
            self.height, self.width)
        out = np.empty(shape, dtype=np.uint8)
        self.render_into(out, frame, capture_ns)
        return out
