"""Enter VR in an emulated Meta Quest 3 (IWER injected into headless Chromium) with a
stereo camera: the immersive session starts, both eyes are drawn every XR frame, each
eye's viewport shows its own eye's picture of the newest pair (stamps read back from the
XR framebuffer), the one-picture toggle shows the left eye to both, the head-locked toggle
moves the quad, leaving VR restores the 2D view, and capture -> XR frame submitted
reaches /latency."""

from __future__ import annotations

import math
import os
import socket
import time

import numpy as np
import pytest
from conftest import free_port, needs_ros, wait_for
from debian_tools import ensure_debian_packages
from iwer_runtime import XR_HZ, iwer_script

from vr_stream_ros.tools.chromium import PACKAGES, Chromium

pytestmark = [needs_ros, pytest.mark.slow]

TOKEN_URL = r"open (https?://\S+/\?token=(\S+))"
XR_FLAGS = ("--enable-unsafe-swiftshader", "--window-size=960,600")


@pytest.fixture
def quest3(tmp_path):
    """Headless Chromium whose pages see IWER's Quest 3 as navigator.xr."""
    script = iwer_script()
    ensure_debian_packages("chromedriver", list(PACKAGES))
    with Chromium(tmp_path / "chromium-profile", extra_flags=XR_FLAGS) as browser:
        browser.inject(script)
        yield browser


def _yaw(browser: Chromium, degrees: float) -> None:
    half = math.radians(degrees) / 2
    browser.driver.execute_script(
        "iwerDevice.quaternion.set(0, arguments[0], 0, arguments[1])", math.sin(half),
        math.cos(half))


def _probes(browser: Chromium, count: int) -> list[dict]:
    """The next ``count`` XR frames' read-backs of what the first eye shows."""
    browser.driver.execute_script("vrStats.xr.probes = []; vrStats.xrProbe = true")
    assert wait_for(lambda: browser.stat("xr.probes.length") >= count, 30)
    probes = browser.stat("xr.probes")
    browser.driver.execute_script("vrStats.xrProbe = false")
    return probes


def _click(browser: Chromium, element_id: str) -> None:
    """A click on a page control that IWER's full-window XR canvas now covers."""
    browser.driver.execute_script("document.getElementById(arguments[0]).click()", element_id)


def _quad_at(probes: list[dict]) -> np.ndarray:
    return np.median([p["quadAt"] for p in probes], axis=0)


def test_enter_vr_in_an_emulated_quest_3(quest3, procs, ring_name, tmp_path):
    http_port = free_port(socket.SOCK_STREAM)
    # Stereo, side by side (the eyes' stamps then lie in different columns of the
    # texture): 2 x 640x360, the quad's picture one eye's.
    procs.node("camera_node", f"ring_name:={ring_name}", "fps:=30", "stereo:=true",
               "stereo_layout:=side_by_side", "width:=640", "height:=360")
    procs.node("headset_bridge_node", f"ring_name:={ring_name}", "transport:=webrtc",
               f"webrtc_port:={http_port}", "webrtc_bind:=127.0.0.1", "vr_quad:=world")
    found = procs.wait_for_output("headset_bridge_node", TOKEN_URL, 30)
    assert found, procs.output("headset_bridge_node")
    quest3.open_viewer(found.group(1), http_port)
    assert wait_for(lambda: quest3.stat("framesRead.length") > 30, 60), quest3.stats()
    assert quest3.stat("xr.available") is True, "IWER's immersive-vr not offered"
    assert quest3.stat("layout") == "side_by_side", quest3.stat("layout")
    button = quest3.driver.find_element("id", "enter-vr")
    assert button.is_enabled() and button.text == "Enter VR"

    button.click()
    assert wait_for(lambda: quest3.stat("xr.active") and quest3.stat("xr.frames") > 90, 30), \
        quest3.stats()["xr"]
    assert quest3.driver.execute_script("return document.body.classList.contains('in-vr')")
    xr_frames_before, t0 = quest3.stat("xr.frames"), time.monotonic()
    time.sleep(2.0)
    xr = quest3.stat("xr")
    rate = (xr["frames"] - xr_frames_before) / (time.monotonic() - t0)
    assert xr["views"] == 2, xr
    # Every XR frame draws both eyes, but the few before the first video frame reaches
    # the texture (a frame or two: the last 2D picture is handed to it on entering).
    assert xr["bothEyes"] + xr["waiting"] == xr["frames"], f"{xr['frames'] - xr['bothEyes']}" \
        f" frames not drawn in both eyes (of {xr['frames']}; {xr['waiting']} before a picture)"
    assert xr["waiting"] <= 3, xr

    # What the XR framebuffer shows: the stamp read back from the drawn quad.
    world = _probes(quest3, 90)
    stamped = [p for p in world if p["stamped"] is not None]
    assert len(stamped) == len(world), f"{len(world) - len(stamped)} of {len(world)} XR " \
        f"frames' quads unreadable"
    known = [p for p in stamped if p["texture"] is not None]  # its stamp already read
    assert len(known) > len(stamped) / 2 and all(p["stamped"] == p["texture"] for p in known), \
        stamped[:5]
    behind = [p["newest"] - p["stamped"] for p in stamped]
    assert max(behind) <= 1, f"the quad lagged the newest decoded frame by {max(behind)}"
    distinct = len({p["stamped"] for p in stamped})
    assert distinct > 10, "the quad's picture did not move on"
    # Each eye its own picture: the left view shows the left eye's stamp, the right view
    # the right eye's, of the same pair.
    skews_ms = []
    for p in world:
        eyes = {e["view"]: e for e in p["eyes"]}
        assert eyes.keys() == {"left", "right"}, p["eyes"]
        assert (eyes["left"]["stampEye"], eyes["right"]["stampEye"]) == ("left", "right"), \
            p["eyes"]
        assert eyes["left"]["stamp"] == eyes["right"]["stamp"], p["eyes"]
        skews_ms.append((int(eyes["right"]["captureNs"]) - int(eyes["left"]["captureNs"])) / 1e6)
    _click(quest3, "one-picture")  # the mono fallback: the left eye's picture in both
    one = _probes(quest3, 10)
    _click(quest3, "one-picture")
    assert all([e["stampEye"] for e in p["eyes"]] == ["left", "left"] for p in one), one[:2]

    # World-locked vs head-locked: turn the emulated head; only the world-locked quad moves
    # on the screen.
    _yaw(quest3, 15)
    turned_world = _quad_at(_probes(quest3, 10))
    _click(quest3, "head-locked")
    turned_head = _quad_at(_probes(quest3, 10))
    _yaw(quest3, 0)
    ahead_head = _quad_at(_probes(quest3, 10))
    assert np.linalg.norm(turned_world - turned_head) > 50, (turned_world, turned_head)
    assert np.linalg.norm(turned_head - ahead_head) < 2, (turned_head, ahead_head)
    _click(quest3, "head-locked")
    _probes(quest3, 5)
    # docs/webrtc_xr.png: VR_STREAM_XR_SCREENSHOT=docs/webrtc_xr.png pytest test/test_webrtc_xr.py
    shot = quest3.screenshot(os.environ.get("VR_STREAM_XR_SCREENSHOT") or tmp_path / "xr.png")
    assert os.path.getsize(shot) < 300_000, os.path.getsize(shot)

    # capture -> XR frame submitted, on /latency (from the bridge) and in the page.
    from test_latency_topic import _collect

    from vr_stream_ros.msg import LatencyStats
    fed = [m for m in _collect(LatencyStats, "/latency", 3, timeout=15) if m.headset_feedback]
    assert fed, "no LatencyStats with the page's reports"
    stages = {s.name: s for s in fed[-1].stages}
    assert stages["xr_submitted"].samples > 0, stages["xr_submitted"]
    page = quest3.stats()
    decoded, submitted = np.array(page["decodedMs"][-150:]), np.array(page["xrMs"][-150:])

    # Leaving VR restores the 2D view, which goes on drawing frames.
    _click(quest3, "enter-vr")
    assert wait_for(lambda: not quest3.stat("xr.active"), 10)
    assert not quest3.driver.execute_script(
        "return document.body.classList.contains('in-vr')")
    assert quest3.driver.find_element("id", "view").is_displayed()
    assert button.text == "Enter VR"
    drawn = quest3.stat("drawnMs.length")
    assert wait_for(lambda: quest3.stat("drawnMs.length") > drawn + 20, 10), "2D view stalled"
    print(f"\nIWER Quest 3: {xr['frames']} XR frames at {rate:.1f} Hz (emulated {XR_HZ:g}), "
          f"{xr['bothEyes']} with both eyes drawn; {len(stamped)}/{len(world)} quad stamps "
          f"read back ({distinct} camera frames), at most {max(behind)} frame(s) behind the newest "
          f"decoded; each eye its own stamp in {len(world)}/{len(world)} frames (pair skew "
          f"max {max(map(abs, skews_ms)):.3f} ms), one-picture toggle: left in both; quad centre "
          f"turned head {turned_world.round(1)} world vs {turned_head.round(1)} head-locked")
    print(f"page capture -> decoded p50 {np.median(decoded):.1f} p99 "
          f"{np.percentile(decoded, 99):.1f} ms; capture -> XR frame submitted p50 "
          f"{np.median(submitted):.1f} p99 {np.percentile(submitted, 99):.1f} ms; /latency "
          f"xr_submitted p50 {stages['xr_submitted'].p50_ms:.1f} ms "
          f"({stages['xr_submitted'].samples} samples)")
