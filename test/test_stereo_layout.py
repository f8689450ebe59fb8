"""Packed stereo layouts: each eye is a view into its half of the one frame."""

import numpy as np
import pytest

from vr_stream_ros.camera.layout import eye_size, eye_views, packed_size


@pytest.mark.parametrize("layout", ["side_by_side", "top_bottom"])
def test_eyes_are_views_of_their_halves(layout: str) -> None:
    w, h = packed_size(64, 48, layout)
    frame = np.zeros((h, w, 3), np.uint8)
    eyes = eye_views(frame, layout)
    assert eyes["left"].shape == eyes["right"].shape == (48, 64, 3)
    eyes["left"][:] = 1
    eyes["right"][:] = 2
    # Written through the views, read back from the packed frame: no copy in between.
    left_half = frame[:, :64] if layout == "side_by_side" else frame[:48]
    right_half = frame[:, 64:] if layout == "side_by_side" else frame[48:]
    assert (left_half == 1).all() and (right_half == 2).all()
    assert eye_size(w, h, layout) == (64, 48)


def test_mono_is_one_view_and_unknown_layouts_are_named() -> None:
    frame = np.zeros((4, 6), np.uint8)
    assert eye_views(frame, "mono")["mono"] is frame
    with pytest.raises(ValueError, match="layout: got 'stacked'"):
        packed_size(6, 4, "stacked")
    with pytest.raises(ValueError, match="odd"):
        eye_size(7, 4, "side_by_side")
