"""A stereo stream end to end in real processes: camera_node (synthetic pair, top_bottom)
-> ring -> headset_bridge_node -> RTP/JPEG over UDP -> the reference receiver, which
reads both eyes' stamps; the SDP names the layout and /latency carries the eye skew. Over
WebRTC the /offer answer names the layout and H.264 carries the packed pair."""

from __future__ import annotations

import socket
import sys

import pytest
from conftest import free_port, needs_ros, read_json

pytestmark = [needs_ros, pytest.mark.slow]


# jpeg_threads 2: the 640x720 pair as two bands of 23 and 22 MCU rows (the cut is not at
# the eyes' boundary) spliced with a restart marker, sent as RTP/JPEG type 65.
@pytest.mark.parametrize("jpeg_threads", [1, 2])
def test_stereo_pair_arrives_with_both_eyes_stamps_and_skew(procs, port, tmp_path,
                                                            jpeg_threads: int) -> None:
    summary, latency, sdp = (tmp_path / n for n in ("rx.json", "latency.json", "s.sdp"))
    receiver = procs.receiver("--port", str(port), "--duration", "5", "--quiet",
                              "--summary-json", str(summary))
    procs.node("camera_node", "stereo:=true", "width:=640", "height:=360", "fps:=30.0")
    procs.node("headset_bridge_node", f"headset_port:={port}", f"sdp_path:={sdp}",
               "stats_period_s:=0.5", f"jpeg_threads:={jpeg_threads}")
    probe = procs.start("probe", [sys.executable, "-m", "vr_stream_ros.ros.topic_probe",
                                  "latency", "--seconds", "1.5", "--out", str(latency)])
    assert receiver.wait(timeout=40) == 0, procs.output("receiver")
    assert probe.wait(timeout=40) == 0, procs.output("probe")
    s = read_json(summary)
    stereo = s["stereo"]
    assert stereo is not None, s
    assert stereo["layout"] == "top_bottom"  # found from where the stamps lie
    assert stereo["pairs"] >= 45, stereo  # ~3 s at 30 fps, with room for a loaded machine
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
    assert ("in 2 parallel bands" in procs.output("headset_bridge_node")) == \
        (jpeg_threads == 2), procs.output("headset_bridge_node")


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


def _receive_webrtc(base: str, token: str, frames: int) -> tuple[str, list]:
    """A real WebRTC viewer (aiortc): post an offer, take the answer's frame_layout, decode
    ``frames`` H.264 frames and read both eyes' stamps from each."""
    import asyncio

    import aiohttp
    from aiortc import (
        RTCConfiguration,
        RTCPeerConnection,
        RTCRtpSender,
        RTCSessionDescription,
    )

    from vr_stream_ros.camera.pattern import read_eye_stamps

    async def run() -> tuple[str, list]:
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        transceiver = pc.addTransceiver("video", direction="recvonly")
        # The bridge sends H.264 (as Chromium offers it first); aiortc would offer VP8 first.
        transceiver.setCodecPreferences([c for c in RTCRtpSender.getCapabilities("video").codecs
                                         if c.mimeType in ("video/H264", "video/rtx")])
        track = asyncio.get_running_loop().create_future()
        pc.on("track", track.set_result)
        try:
            await pc.setLocalDescription(await pc.createOffer())
            offer = {"sdp": pc.localDescription.sdp, "type": pc.localDescription.type}
            async with aiohttp.ClientSession() as http, \
                    http.post(f"{base}/offer?token={token}", json=offer) as response:
                answer = await response.json()
            await pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], answer["type"]))
            video = await asyncio.wait_for(track, 20)
            stamps = []
            for _ in range(frames):
                image = (await asyncio.wait_for(video.recv(), 20)).to_ndarray(format="rgb24")
                stamps.append((image.shape, read_eye_stamps(image, answer["frame_layout"])))
            return answer["frame_layout"], stamps
        finally:
            await pc.close()

    return asyncio.run(run())


def test_webrtc_answer_names_the_layout_and_h264_carries_the_packed_pair(procs) -> None:
    """side_by_side 2x640x360 = 1280x360 through H.264 (no 2040 px limit there)."""
    port = free_port(socket.SOCK_STREAM)
    procs.node("camera_node", "stereo:=true", "stereo_layout:=side_by_side", "width:=640",
               "height:=360", "fps:=30.0")
    procs.node("headset_bridge_node", "transport:=webrtc", f"webrtc_port:={port}",
               "webrtc_bind:=127.0.0.1", "webrtc_tls:=false", "webrtc_token:=stereo")
    assert procs.wait_for_output("headset_bridge_node", r"\(stereo side_by_side\)", 30), \
        procs.output("headset_bridge_node")
    layout, frames = _receive_webrtc(f"http://127.0.0.1:{port}", "stereo", 12)
    assert layout == "side_by_side"
    assert {shape for shape, _ in frames} == {(360, 1280, 3)}
    pairs = [(s["left"], s["right"]) for _, s in frames if s["left"] and s["right"]]
    assert len(pairs) >= 8, frames  # H.264 keeps the stamps; the first frames may blur
    assert all(left.frame == right.frame and left.capture_ns == right.capture_ns
               for left, right in pairs)
    assert "Traceback" not in procs.output("headset_bridge_node")
