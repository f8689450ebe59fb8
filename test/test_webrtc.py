"""transport:=webrtc in real headless Chromium: token, video decoded and drawn as it
arrives, frame stamps read from the pixels in order, playout delay negotiated as Chromium
sees it, and the page's capture -> decoded / drawn latency on /latency."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
from conftest import free_port, needs_ros, wait_for
from debian_tools import ensure_debian_packages

pytestmark = [needs_ros, pytest.mark.slow]

TOKEN_URL = r"open (https?://\S+/\?token=(\S+))"
UNVERIFIED = ssl._create_unverified_context()  # self-signed: we test access, not trust


def _graph(procs, ring_name, http_port, *bridge_params):
    procs.node("camera_node", f"ring_name:={ring_name}", "fps:=30")
    procs.node("headset_bridge_node", f"ring_name:={ring_name}", "transport:=webrtc",
               f"webrtc_port:={http_port}", "webrtc_bind:=127.0.0.1", *bridge_params)
    found = procs.wait_for_output("headset_bridge_node", TOKEN_URL, 30)
    assert found, procs.output("headset_bridge_node")
    return found.group(1), found.group(2)


def _post(url: str, data: bytes | None = None) -> tuple[int, bytes]:
    """Status and body of a GET (or, with ``data``, a JSON POST)."""
    headers = {"Content-Type": "application/json"} if data is not None else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=data, headers=headers),
                                    timeout=10, context=UNVERIFIED) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def _status(url: str, data: bytes | None = None) -> int:
    return _post(url, data)[0]


def _real_offer() -> bytes:
    """A real WebRTC offer (video to receive, a data channel) from aiortc, as a second
    viewer's browser would post it."""
    import asyncio

    from aiortc import RTCConfiguration, RTCPeerConnection

    async def make() -> dict:
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))  # loopback: no STUN
        pc.addTransceiver("video", direction="recvonly")
        pc.createDataChannel("vr")
        await pc.setLocalDescription(await pc.createOffer())
        offer = {"sdp": pc.localDescription.sdp, "type": pc.localDescription.type}
        await pc.close()
        return offer

    offer = asyncio.run(make())
    assert offer["type"] == "offer" and "m=video" in offer["sdp"] and "a=candidate" in \
        offer["sdp"], offer
    return json.dumps(offer).encode()


def test_browser_decodes_reads_stamps_in_order_and_reports_latency(
        chromium, procs, ring_name, tmp_path):
    http_port = free_port(socket.SOCK_STREAM)
    url, token = _graph(procs, ring_name, http_port, "max_viewers:=1")
    base = f"https://127.0.0.1:{http_port}"
    # Without the token: neither the page nor the signaling.
    assert _status(f"{base}/") == 403
    assert _status(f"{base}/?token=wrong") == 403
    assert _status(f"{base}/offer", data=b"{}") == 403

    chromium.open_viewer(url, http_port)
    ok = wait_for(lambda: chromium.stat("framesRead.length") > 60, 60)
    state = chromium.stats()
    assert ok, f"page state: { {k: state[k] for k in ('connected', 'error', 'unreadable')} }"
    # Chromium's own view of the answer: the extension is in its remote description.
    remote = chromium.driver.execute_script("return vrPeer.remoteDescription.sdp")
    assert "/rtp-hdrext/playout-delay" in remote, remote
    assert state["playoutDelay"].startswith("negotiated (a=extmap:"), state["playoutDelay"]
    assert state["path"] == "direct", "Debian's Chromium has MediaStreamTrackProcessor"
    assert state["worker"] and state["worker"]["drawn"] > 0, "the frame worker draws the view"
    assert "MediaStreamTrackProcessor" in chromium.driver.find_element("id", "path").text
    decoded_before = chromium.stat("framesDecoded")
    time.sleep(2.0)
    decoded_after = chromium.stat("framesDecoded")
    assert decoded_after > decoded_before > 0, "getStats framesDecoded must rise"

    frames = chromium.stat("framesRead")
    assert frames == sorted(set(frames)), "frame numbers read from the pixels, in order"
    assert frames[-1] - frames[0] + 1 <= 2 * len(frames), (
        f"most frames shown: {frames[:20]}; {chromium.stat('unreadable')} unreadable, "
        f"{chromium.stat('framesDecoded')} decoded, {len(frames)} read, "
        f"{chromium.stat('overtaken')} overtaken")
    page_ms = chromium.stat("latenciesMs")
    assert len(page_ms) > 30 and 0 < np.median(page_ms) < 1000, page_ms[:10]

    # A second viewer's real offer beyond max_viewers:=1 is refused; the first keeps its
    # stream.
    status, body = _post(f"{base}/offer?token={token}", data=_real_offer())
    assert status == 503, body
    assert "max_viewers 1" in json.loads(body)["error"], body
    from test_latency_topic import _collect

    from vr_stream_ros.msg import LatencyStats
    stats = _collect(LatencyStats, "/latency", 4, timeout=20)  # one a second
    fed = [m for m in stats if m.headset_feedback]
    assert fed, "no LatencyStats with the browser's reports"
    last = fed[-1]
    stages = {s.name: s for s in last.stages}
    stage, decoded = stages["browser_drawn"], stages["browser_decoded"]
    assert stage.samples > 0 and stage.p50_ms <= stage.p95_ms
    assert decoded.samples > 0 and decoded.p50_ms <= stage.p50_ms, (decoded, stage)
    assert stages["xr_submitted"].samples == 0, "not in VR"
    assert last.end_to_end.p50_ms == pytest.approx(stage.p50_ms)
    later = chromium.stat("framesRead.length")
    assert later > len(frames), "the first viewer kept receiving"
    print(f"browser capture->decoded p50 {decoded.p50_ms:.1f}, ->drawn p50 "
          f"{stage.p50_ms:.1f} p95 {stage.p95_ms:.1f} ms, "
          f"{stage.samples} samples in the last window, page fps "
          f"{chromium.stat('framesDecoded')} decoded; "
          f"(page's own p50 {np.median(page_ms):.1f} ms); {len(frames)} stamps read; "
          f"arrival -> drawn p50 {np.median(chromium.stat('workMs')):.1f} ms, "
          f"{chromium.stat('overtaken')} frames overtaken before drawing")
    chromium.screenshot(os.environ.get("VR_STREAM_SCREENSHOT") or tmp_path / "viewer.png")
    out = procs.output("headset_bridge_node")
    assert "viewer 0 connected" in out and "viewer 1 connected" not in out, out
    assert "Traceback" not in out, out


def test_port_in_use_is_named(procs, ring_name):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        procs.node("camera_node", f"ring_name:={ring_name}", "fps:=30")
        bridge = procs.node("headset_bridge_node", f"ring_name:={ring_name}",
                            "transport:=webrtc", f"webrtc_port:={port}",
                            "webrtc_bind:=127.0.0.1")
        assert bridge.wait(timeout=30) == 2
    out = procs.output("headset_bridge_node")
    fatal = [line for line in out.splitlines() if "FATAL" in line]
    assert len(fatal) == 1 and "'webrtc_port'" in fatal[0] and str(port) in fatal[0], out


def test_signaling_refuses_a_malformed_offer(procs, ring_name):
    http_port = free_port(socket.SOCK_STREAM)
    _url, token = _graph(procs, ring_name, http_port)
    req = urllib.request.Request(f"https://127.0.0.1:{http_port}/offer?token={token}",
                                 data=b"not json")
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=10, context=UNVERIFIED)
    assert err.value.code == 400
    assert "expected JSON" in json.loads(err.value.read())["error"]
    assert procs.procs[-1][1].poll() is None, "the bridge keeps running"


def test_a_second_viewer_does_not_starve_the_first(chromium, procs, ring_name):
    http_port = free_port(socket.SOCK_STREAM)
    url, _token = _graph(procs, ring_name, http_port, "max_viewers:=2")
    chromium.open_viewer(url, http_port)
    driver = chromium.driver
    first = driver.current_window_handle
    assert wait_for(lambda: chromium.stat("framesRead.length") > 30, 60)
    driver.switch_to.new_window("window")
    chromium.open_viewer(url, http_port)
    assert wait_for(lambda: chromium.stat("framesRead.length") > 30, 60), "second viewer"
    driver.switch_to.window(first)
    before = chromium.stat("framesRead.length")
    time.sleep(2.0)
    assert chromium.stat("framesRead.length") > before + 20, "the first viewer starved"
    assert "viewer 1 connected" in procs.output("headset_bridge_node")


@pytest.mark.skipif(importlib.util.find_spec("ultralytics") is None,
                    reason="the YOLO extra is not installed (`make test YOLO=0`); "
                    "`make test` and CI install it and run this")
def test_detections_reach_the_page(chromium, procs, ring_name):
    http_port = free_port(socket.SOCK_STREAM)
    url, _token = _graph(procs, ring_name, http_port)
    procs.node("detector_node", f"ring_name:={ring_name}", "model:=yolo11n.yaml",
               "conf:=0.0001", "max_det:=5")
    chromium.open_viewer(url, http_port)
    got = wait_for(lambda: chromium.stat("detections"), 90)
    assert got, procs.output("detector_node")
    assert got["frame"] > 0 and got["sent_with"] >= got["frame"]
    assert 0 < len(got["boxes"]) <= 5 and len(got["boxes"][0]) == 6, got
    assert wait_for(lambda: "detections of frame" in chromium.driver.find_element(
        "id", "stats").text, 10)


def test_plain_http_when_tls_is_off_and_a_bad_certificate_is_named(procs, ring_name, tmp_path):
    http_port = free_port(socket.SOCK_STREAM)
    url, token = _graph(procs, ring_name, http_port, "webrtc_tls:=false")
    assert url.startswith("http://")
    assert _status(f"http://127.0.0.1:{http_port}/?token={token}") == 200
    assert _status(f"http://127.0.0.1:{http_port}/") == 403
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate")
    bridge = procs.node("headset_bridge_node", f"ring_name:={ring_name}", "transport:=webrtc",
                        f"webrtc_port:={free_port(socket.SOCK_STREAM)}",
                        f"webrtc_cert:={bad}", f"webrtc_key:={bad}", name="bridge2")
    assert bridge.wait(timeout=30) == 2
    fatal = [x for x in procs.output("bridge2").splitlines() if "FATAL" in x]
    assert len(fatal) == 1 and "'webrtc_cert'" in fatal[0] and str(bad) in fatal[0], fatal


def _answer_facts(sdp: str) -> tuple[int, int | None, int]:
    """From the bridge's answer as Chromium holds it: the video SSRC, the playout-delay
    extmap id (None when absent) and the H.264 payload type."""
    ssrc = int(re.search(r"^a=ssrc:(\d+) cname:", sdp, re.M).group(1))
    ext = re.search(r"^a=extmap:(\d+) \S+/rtp-hdrext/playout-delay", sdp, re.M)
    pt = int(re.search(r"^a=rtpmap:(\d+) H264/90000", sdp, re.M).group(1))
    return ssrc, int(ext.group(1)) if ext else None, pt


def test_playout_delay_on_the_wire_as_tshark_dissects_it(chromium, procs, ring_name,
                                                         tmp_path):
    """Wireshark, not our code, reads the header extension off loopback: SRTP encrypts the
    payload only (RFC 3711 section 3.1), so the RTP header and its extensions are clear."""
    tshark = ensure_debian_packages("tshark", ["tshark"])
    http_port = free_port(socket.SOCK_STREAM)
    url, _token = _graph(procs, ring_name, http_port, "webrtc_max_playout_delay_ms:=100")
    chromium.inject(ASK_150_MS)
    chromium.open_viewer(url, http_port)
    assert wait_for(lambda: chromium.stat("framesRead.length") > 10, 60)
    ssrc, ext_id, pt = _answer_facts(
        chromium.driver.execute_script("return vrPeer.remoteDescription.sdp"))
    assert ext_id is not None
    capture = subprocess.run(
        [tshark, "-i", "lo", "-a", "duration:4", "-f", "udp", "--enable-heuristic", "rtp_udp",
         "-Y", f"rtp.ssrc == {ssrc:#x}", "-T", "fields", "-E", "separator=;",
         "-e", "rtp.p_type", "-e", "rtp.ext.profile", "-e", "rtp.ext.rfc5285.id",
         "-e", "rtp.ext.rfc5285.data", "-e", "_ws.malformed"],
        capture_output=True, text=True, timeout=60)
    rows = [line.split(";") for line in capture.stdout.splitlines() if line]
    assert len(rows) > 50, f"{len(rows)} video packets seen: {capture.stderr[-500:]}"
    for p_type, profile, ids, data, malformed in rows:
        assert int(p_type) == pt and int(profile, 0) == 0xBEDE and not malformed, rows[:3]
        extensions = dict(zip(ids.split(","), data.split(","), strict=True))
        # min 0, max 100 ms = 10 units: 0x000 0x00a
        assert extensions.get(str(ext_id), "").replace(":", "") == "00000a", (ids, data)
    # Chromium's own receive stream (libwebrtc video_receive_stream2.cc) says the frames'
    # maximum, 100 ms from the extension, overrode the page's 150 ms minimum.
    used = re.findall(r"video_receive_stream2\.cc:\d+\] (Maximum playout delay 100 ms "
                      r"overrides minimum delay\. frame min delay=0 us base min delay=150 ms.*)",
                      chromium.log())
    assert used, [line for line in chromium.log().splitlines() if "playout" in line][:5]
    print(f"tshark: {len(rows)} video packets (SSRC {ssrc:#x}, PT {pt}), every one with "
          f"extension id {ext_id} = 00000a (playout delay min 0 max 100 ms); Chromium: "
          f"{used[0]}")


# The page asks Chromium's jitter buffer for a 150 ms minimum once connected: only a
# playout-delay extension received with each frame (max 100 ms) can override it, and
# Chromium logs that it did.
ASK_150_MS = """
const setRemote = RTCPeerConnection.prototype.setRemoteDescription;
RTCPeerConnection.prototype.setRemoteDescription = async function (description) {
  const done = await setRemote.call(this, description);
  for (const t of this.getTransceivers()) t.receiver.jitterBufferTarget = 150;
  return done;
};"""

MALFORMED = ("not json", "[1, 2]", '{"type": "bogus"}', '{"type": "frame"}',
             '{"type": "frame", "frame": 1, "capture_ns": "x", "stages": {}}',
             '{"type": "frame", "frame": 1, "capture_ns": "1", "stages": {"nope": "2"}}',
             '{"type": "ping", "id": "a", "t": 1}', "{" + " " * 10000 + "}")


def test_no_playout_delay_no_track_processor_and_malformed_reports(chromium, procs,
                                                                   ring_name):
    """A browser without MediaStreamTrackProcessor falls back to <video> and says so; an
    answer without playout delay still streams and the page says so; a page sending
    garbage on the data channel has it counted and dropped."""
    chromium.inject("delete window.MediaStreamTrackProcessor;")
    http_port = free_port(socket.SOCK_STREAM)
    url, _token = _graph(procs, ring_name, http_port, "webrtc_max_playout_delay_ms:=-1")
    chromium.open_viewer(url, http_port)
    assert wait_for(lambda: chromium.stat("framesRead.length") > 30, 60), chromium.stats()
    state = chromium.stats()
    assert state["path"] == "video" and state["playoutDelay"] == "not negotiated", state
    header = chromium.driver.find_element("tag name", "header").text
    assert "playout delay: not negotiated" in header, header
    assert "this browser has no MediaStreamTrackProcessor" in header, header
    remote = chromium.driver.execute_script("return vrPeer.remoteDescription.sdp")
    assert "playout-delay" not in remote
    assert "playout delay not negotiated" in procs.output("headset_bridge_node")

    for message in MALFORMED:
        chromium.driver.execute_script("vrChannel.send(arguments[0])", message)
    from test_latency_topic import _collect

    from vr_stream_ros.msg import LatencyStats
    got = wait_for(lambda: [m for m in _collect(LatencyStats, "/latency", 1, timeout=10)
                            if m.reports_malformed >= len(MALFORMED)], 30)
    assert got, "malformed data-channel messages not counted"
    last = got[-1]
    assert last.headset_feedback and last.reports_malformed == len(MALFORMED), last
    before = chromium.stat("framesRead.length")
    time.sleep(1.5)
    assert chromium.stat("framesRead.length") > before + 10, "the stream stopped"
    out = procs.output("headset_bridge_node")
    assert "data channel: not JSON" in out and "Traceback" not in out, out


def test_webcodecs_over_a_websocket_needs_the_token_and_draws_every_frame(
        chromium, procs, ring_name):
    """The path without a jitter buffer: access units over /ws, decoded by WebCodecs."""
    http_port = free_port(socket.SOCK_STREAM)
    url, _token = _graph(procs, ring_name, http_port)
    assert _status(f"https://127.0.0.1:{http_port}/ws?token=wrong") == 403
    chromium.open_viewer(url + "&path=webcodecs", http_port)
    assert wait_for(lambda: chromium.stat("framesRead.length") > 60, 60), chromium.stats()
    state = chromium.stats()
    assert state["path"] == "webcodecs" and state["connected"], state["error"]
    assert "WebCodecs" in chromium.driver.find_element("id", "path").text
    frames = state["framesRead"]
    assert frames == sorted(set(frames))
    from test_latency_topic import _collect

    from vr_stream_ros.msg import LatencyStats
    fed = [m for m in _collect(LatencyStats, "/latency", 3, timeout=15) if m.headset_feedback]
    assert fed, "no LatencyStats with the page's reports over the WebSocket"
    stages = {s.name: s for s in fed[-1].stages}
    assert stages["browser_decoded"].samples > 0 and stages["browser_drawn"].samples > 0
    out = procs.output("headset_bridge_node")
    assert "WebSocket + WebCodecs" in out and "Traceback" not in out, out
    print(f"WebCodecs: capture -> decoded p50 {stages['browser_decoded'].p50_ms:.1f}, -> drawn "
          f"p50 {stages['browser_drawn'].p50_ms:.1f} ms; {frames[-1] - frames[0] + 1} frames "
          f"sent, {len(frames)} drawn, {state['overtaken']} overtaken")
