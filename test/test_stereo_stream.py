"""A stereo stream end to end in real processes: camera_node (synthetic pair, top_bottom)
-> ring -> headset_bridge_node -> RTP/JPEG over UDP -> the reference receiver, which
reads both eyes' stamps; the SDP names the layout and /latency carries the eye skew."""

from __future__ import annotations

import sys

import pytest
from conftest import needs_ros, read_json

pytestmark = [needs_ros, pytest.mark.slow]


def test_stereo_pair_arrives_with_both_eyes_stamps_and_skew(procs, port, tmp_path) -> None:
    summary, latency, sdp = (tmp_path / n for n in ("rx.json", "latency.json", "s.sdp"))
    receiver = procs.receiver("--port", str(port), "--duration", "7", "--quiet",
                              "--summary-json", str(summary))
    procs.node("camera_node", "stereo:=true", "width:=640", "height:=360", "fps:=30.0")
    procs.node("headset_bridge_node", f"headset_port:={port}", f"sdp_path:={sdp}",
               "stats_period_s:=0.5")
    probe = procs.start("probe", [sys.executable, "-m", "vr_stream_ros.ros.topic_probe",
                                  "latency", "--seconds", "1.5", "--out", str(latency)])
    assert receiver.wait(timeout=40) == 0, procs.output("receiver")
    assert probe.wait(timeout=40) == 0, procs.output("probe")
    s = read_json(summary)
    stereo = s["stereo"]
    assert stereo is not None, s
    assert stereo["layout"] == "top_bottom"  # found from where the stamps lie
    assert stereo["pairs"] >= 60, stereo  # ~5 s at 30 fps, with room for a loaded machine
    assert stereo["pairs_mismatched"] == 0 and stereo["eye_unreadable"] == 0, stereo
    assert stereo["eye_skew_ms"]["p99"] <= 0.1, stereo  # the synthetic pair is synchronised
    for eye in ("left", "right"):  # loopback: per-eye capture -> decoded from the pixels
        assert stereo["capture_to_decoded_ms"][eye]["samples"] == stereo["pairs"], eye
    assert s["stamps"]["out_of_order"] == 0 and s["stamps"]["unreadable"] == 0
    assert "a=x-frame-layout:top_bottom" in sdp.read_text().splitlines()
    stats = read_json(latency)["stats"]
    assert stats, procs.output("headset_bridge_node")
    assert all(m["eye_skew_p99_ms"] <= 0.1 and m["stereo_pairs_dropped"] == 0 for m in stats)
    for name in ("camera_node", "headset_bridge_node"):
        assert "Traceback" not in procs.output(name), procs.output(name)
    assert "(stereo top_bottom)" in procs.output("headset_bridge_node")


def test_bridge_refuses_a_side_by_side_pair_too_wide_for_rtp_jpeg(procs) -> None:
    procs.node("camera_node", "stereo:=true", "stereo_layout:=side_by_side", "width:=1280",
               "height:=720", "fps:=10.0")
    bridge = procs.node("headset_bridge_node")
    assert bridge.wait(timeout=30) != 0
    out = procs.output("headset_bridge_node")
    lines = [ln for ln in out.splitlines() if "stereo_layout" in ln]
    assert len(lines) == 1 and "parameters 'stereo_layout'/'width'" in lines[0], out
    assert "2560x720" in lines[0] and "stereo_layout:=top_bottom" in lines[0], out
    assert "Traceback" not in out
