"""Stereo sources: the synthetic pair's per-eye stamps, one ring slot written once, and
bad stereo parameters refused in one line naming them."""

from __future__ import annotations

import numpy as np
import pytest

from vr_stream_ros.camera import CameraConfig, CameraError, create_backend
from vr_stream_ros.camera.layout import eye_views
from vr_stream_ros.camera.pattern import read_eye_stamps
from vr_stream_ros.graph.launches import node_launches
from vr_stream_ros.graph.param_spec import ParameterError
from vr_stream_ros.ring.frame_ring import FrameRingReader, FrameRingWriter, FrameSpec


@pytest.mark.parametrize("layout", ["side_by_side", "top_bottom"])
def test_synthetic_pair_stamps_each_eye_in_its_half(layout) -> None:
    config = CameraConfig(width=320, height=240, fps=240.0, stereo=True, stereo_layout=layout)
    assert config.shape == ((240, 640, 3) if layout == "side_by_side" else (480, 320, 3))
    with create_backend(config) as camera:
        out = np.zeros(config.shape, np.uint8)
        for n in range(3):
            capture = camera.capture_into(out, n)
            stamps = read_eye_stamps(out, layout)
            assert {e: (s.frame, s.capture_ns, s.eye) for e, s in stamps.items()} == {
                "left": (n, capture, "left"), "right": (n, capture, "right")}
            assert camera.eye_skew_ns == 0  # one deadline for both eyes
    views = eye_views(out, layout)
    # Disparity: the eyes differ (the box moved), beyond their stamps.
    assert not np.array_equal(views["left"][64:], views["right"][64:])
    # Read the wrong way, a frame shows no stamp rather than the wrong eye's.
    other = "top_bottom" if layout == "side_by_side" else "side_by_side"
    assert read_eye_stamps(out, other)["right"] is None


def test_stereo_ring_slot_is_written_once_through_eye_views(ring_name) -> None:
    config = CameraConfig(width=320, height=240, fps=240.0, stereo=True)
    spec = FrameSpec(*config.frame_size, 3, "rgb8", config.fps, config.layout)
    with FrameRingWriter(ring_name, spec) as ring, create_backend(config) as camera, \
            FrameRingReader(ring_name) as reader:
        assert reader.spec.layout == "top_bottom" and reader.spec.height == 480
        loan = ring.loan()
        eyes = eye_views(loan.array, config.layout)
        # The eyes are the slot's own memory: writing them is writing the slot.
        assert all(np.shares_memory(v, loan.array) for v in eyes.values())
        camera.capture_into(loan.array, loan.seq)
        ring.publish(loan, 123, eye_skew_ns=-7, pairs_dropped=2)
        view = reader.read(loan.seq)
        assert (view.eye_skew_ns, view.pairs_dropped) == (-7, 2)
        stamps = read_eye_stamps(view.array, reader.spec.layout)
        assert stamps["left"].frame == stamps["right"].frame == loan.seq


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"stereo_layout": "over_under"}, r"parameter 'stereo_layout': got 'over_under'"),
    ({"stereo_source": "usb"}, r"parameter 'stereo_source': got 'usb'"),
])
def test_bad_stereo_config_is_one_line_naming_it(kwargs, message) -> None:
    with pytest.raises(CameraError, match=message) as info:
        CameraConfig(stereo=True, **kwargs)
    assert "\n" not in str(info.value)


def test_launch_refuses_side_by_side_over_rtp_jpeg_in_one_line() -> None:
    with pytest.raises(ParameterError, match=r"parameters 'stereo_layout'/'width': "
                       r"side_by_side packs .* 2560 px, over RTP/JPEG's 2040") as info:
        node_launches({"stereo": "true", "stereo_layout": "side_by_side"})
    assert "\n" not in str(info.value)
    # top_bottom 2x1280x720 = 1280x1440 fits; WebRTC (H.264) has no 2040 limit.
    camera = node_launches({"stereo": "true"})[0].parameters
    assert camera["stereo"] is True and camera["stereo_layout"] == "top_bottom"
    node_launches({"stereo": "true", "stereo_layout": "side_by_side", "transport": "webrtc"})
