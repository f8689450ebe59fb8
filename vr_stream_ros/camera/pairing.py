"""Pairing two free-running cameras' frames into stereo pairs by capture time.

Each camera delivers its own stream; a pair is one frame of each whose capture times
differ by at most the tolerance (``stereo_pair_tolerance_ms``). When they differ by
more, the older frame has no partner: it is dropped (counted) and that camera's next
frame is taken, so a mismatched pair is never shown. Each frame is written straight
into its eye's half of the caller's buffer (a ring slot); a dropped one is simply
overwritten by the next.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from vr_stream_ros.camera.base import CameraError

Capture = Callable[[np.ndarray], int]
"""Writes one camera's next frame into an eye view; returns its capture time (ns)."""


class StereoPairer:
    """Captures a left and a right frame within ``tolerance_ns`` of each other."""

    def __init__(self, left: Capture, right: Capture, tolerance_ns: int,
                 max_unpaired: int) -> None:
        self._left, self._right = left, right
        self.tolerance_ns = tolerance_ns
        self.max_unpaired = max_unpaired
        """Frames dropped in a row after which the cameras count as not pairable."""
        self.dropped = 0
        """Frames dropped for want of a partner, since start."""

    def capture(self, eyes: dict[str, np.ndarray]) -> tuple[int, int]:
        """Fill ``eyes['left']`` and ``eyes['right']`` with a pair; (left_ns, right_ns)."""
        left_ns = self._left(eyes["left"])
        right_ns = self._right(eyes["right"])
        in_a_row = 0
        while abs(right_ns - left_ns) > self.tolerance_ns:
            self.dropped += 1
            in_a_row += 1
            if in_a_row > self.max_unpaired:
                raise CameraError(
                    f"parameter 'stereo_pair_tolerance_ms': no pair within "
                    f"{self.tolerance_ns / 1e6:g} ms in {in_a_row} frames (the eyes' capture "
                    f"times differ by {(right_ns - left_ns) / 1e6:+.3f} ms); are the cameras "
                    "synchronised and at the same fps?")
            if left_ns < right_ns:  # the older frame has no partner: take that side's next
                left_ns = self._left(eyes["left"])
            else:
                right_ns = self._right(eyes["right"])
        return left_ns, right_ns
