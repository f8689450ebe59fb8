"""How the eyes of a stereo pair share one frame (one ring slot, one JPEG, one texture).

A stereo frame is packed: ``side_by_side`` puts the left eye in the left half,
``top_bottom`` the left eye in the top half. ``mono`` is one picture. The views returned
here are numpy slices of the packed frame, never copies: a backend writes each eye
straight into its half, a consumer reads each eye where it lies.
"""

from __future__ import annotations

import numpy as np

LAYOUTS = ("mono", "side_by_side", "top_bottom")
EYES = ("left", "right")


def check_layout(layout: str, where: str = "layout") -> str:
    """Return ``layout`` if known, else raise ValueError naming ``where``."""
    if layout not in LAYOUTS:
        raise ValueError(f"{where}: got {layout!r}, expected one of {', '.join(LAYOUTS)}")
    return layout


def packed_size(eye_width: int, eye_height: int, layout: str) -> tuple[int, int]:
    """(width, height) of the packed frame holding two eyes of ``eye_width`` x ``eye_height``."""
    check_layout(layout)
    if layout == "side_by_side":
        return 2 * eye_width, eye_height
    if layout == "top_bottom":
        return eye_width, 2 * eye_height
    return eye_width, eye_height


def eye_size(width: int, height: int, layout: str) -> tuple[int, int]:
    """(width, height) of one eye inside a packed ``width`` x ``height`` frame."""
    check_layout(layout)
    if layout == "side_by_side":
        if width % 2:
            raise ValueError(f"side_by_side frame width {width} is odd: expected two equal eyes")
        return width // 2, height
    if layout == "top_bottom":
        if height % 2:
            raise ValueError(f"top_bottom frame height {height} is odd: expected two equal eyes")
        return width, height // 2
    return width, height


def eye_views(frame: np.ndarray, layout: str) -> dict[str, np.ndarray]:
    """The eyes of a packed frame as views (``{'left': ..., 'right': ...}``).

    ``mono`` gives one view under ``'mono'``.
    """
    height, width = frame.shape[:2]
    w, h = eye_size(width, height, layout)
    if layout == "side_by_side":
        return {"left": frame[:, :w], "right": frame[:, w:]}
    if layout == "top_bottom":
        return {"left": frame[:h], "right": frame[h:]}
    return {"mono": frame}
