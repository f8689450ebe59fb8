"""``make bench-webrtc``: the WebRTC path next to RTP/UDP, on the same camera, same run.

One camera_node feeds two bridges at once from its ring: one sends RTP/JPEG over UDP to
the reference receiver, the other H.264 over WebRTC to headless Chromium (Debian's,
driven by Selenium). Prints capture -> decoded (receiver) and capture -> displayed
(browser) percentiles, their ratio, and where the WebRTC path spends its time: the
bridge's encode, the browser's jitter buffer and decode (getStats), and the rest
(network, compositing, waiting for the display). The last line is JSON.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import socket
import sys
import tempfile
import time

from vr_stream_ros.graph.processes import ProcessGroup, free_port
from vr_stream_ros.latency.percentiles import summarize
from vr_stream_ros.tools.apt import PackagesMissing
from vr_stream_ros.tools.chromium import Chromium


def _pcts(values: list[float]) -> dict[str, float]:
    return summarize(values).as_dict("_ms", digits=2)


def _encode_ms(record: str) -> list[float]:
    with open(record) as f:
        return [(int(r["encoded"]) - int(r["bridge_pickup"])) / 1e6 for r in csv.DictReader(f)
                if r.get("encoded") and r.get("bridge_pickup")][30:]


def run(seconds: float, fps: float, tmp: str, browser: Chromium) -> dict:
    """Both paths side by side; returns the figures."""
    env = dict(os.environ, ROS_DOMAIN_ID=str(150 + os.getpid() % 40))
    ring, udp_port, http_port = f"vr_bench_webrtc_{os.getpid()}", free_port(), \
        free_port(socket.SOCK_STREAM)
    rec_udp, rec_webrtc = os.path.join(tmp, "udp.csv"), os.path.join(tmp, "webrtc.csv")
    summary = os.path.join(tmp, "receiver.json")
    ros = ("--log-level", "warn")
    with ProcessGroup(os.path.join(tmp, "logs"), env) as group:
        group.receiver("--port", str(udp_port), "--quiet", "--duration", str(seconds + 25),
                       "--summary-json", summary)
        group.node("camera_node", f"ring_name:={ring}", f"fps:={fps}", ros_args=ros)
        time.sleep(1.0)
        group.node("headset_bridge_node", f"ring_name:={ring}", f"headset_port:={udp_port}",
                   "sdp_path:=''", f"record_path:={rec_udp}", name="bridge_udp",
                   ros_args=("-r", "__node:=bridge_udp", *ros))
        group.node("headset_bridge_node", f"ring_name:={ring}", "transport:=webrtc",
                   f"webrtc_port:={http_port}", "webrtc_bind:=127.0.0.1",
                   "webrtc_token:=bench", f"record_path:={rec_webrtc}", name="bridge_webrtc",
                   ros_args=("-r", "__node:=bridge_webrtc", *ros))
        time.sleep(3.0)
        browser.open_viewer(f"https://127.0.0.1:{http_port}/?token=bench")
        time.sleep(seconds)
        page = browser.stats()
        inbound = browser.inbound_video()
        if inbound is None:
            raise RuntimeError(f"the browser received no video; page state {page}")
    with open(summary) as f:
        receiver = json.load(f)
    browser_ms = page["latenciesMs"][30:]
    jitter_ms = 1000 * inbound["jitterBufferDelay"] / max(1, inbound["jitterBufferEmittedCount"])
    decode_ms = 1000 * inbound["totalDecodeTime"] / max(1, inbound["framesDecoded"])
    return {
        "rtp_udp": {"capture_to_decoded": receiver["latency_ms"],
                    "encode_jpeg": _pcts(_encode_ms(rec_udp))},
        "webrtc": {"capture_to_displayed": _pcts(browser_ms),
                   "encode_h264": _pcts(_encode_ms(rec_webrtc)),
                   "browser_jitter_buffer_ms": round(jitter_ms, 2),
                   "browser_decode_ms": round(decode_ms, 2),
                   "frames_decoded": inbound["framesDecoded"],
                   "frames_dropped": inbound.get("framesDropped", 0),
                   "stamps_read": len(page["framesRead"]), "unreadable": page["unreadable"]},
    }


def main(argv: list[str] | None = None) -> int:
    """Run, print the table and what dominates; the last line is JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--fps", type=float, default=30.0)
    ns = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="vr_bench_webrtc_") as tmp:
        try:
            browser = Chromium(os.path.join(tmp, "profile"))
        except PackagesMissing as exc:
            print(f"bench-webrtc needs Debian's chromium and chromium-driver: {exc}",
                  file=sys.stderr)
            return 2
        with browser:
            r = run(ns.seconds, ns.fps, tmp, browser)
    udp, web = r["rtp_udp"]["capture_to_decoded"], r["webrtc"]["capture_to_displayed"]
    print(f"\n{'1280x720 @ ' + format(ns.fps, 'g') + ' fps, one camera':34} "
          f"{'p50':>8} {'p95':>8} {'p99':>8} {'samples':>8}  (ms)")
    print(f"{'RTP/UDP  capture -> decoded':34} {udp['p50']:8.2f} {udp['p95']:8.2f} "
          f"{udp['p99']:8.2f} {udp['samples']:8d}")
    print(f"{'WebRTC   capture -> displayed':34} {web['p50_ms']:8.2f} {web['p95_ms']:8.2f} "
          f"{web['p99_ms']:8.2f} {web['samples']:8d}")
    jpeg, h264 = r["rtp_udp"]["encode_jpeg"], r["webrtc"]["encode_h264"]
    w = r["webrtc"]
    rest = web["p50_ms"] - h264["p50_ms"] - w["browser_jitter_buffer_ms"] - \
        w["browser_decode_ms"]
    print(f"\nratio webrtc/udp p50 {web['p50_ms'] / udp['p50']:.2f}, p99 "
          f"{web['p99_ms'] / udp['p99']:.2f}")
    print(f"encode p50: JPEG {jpeg['p50_ms']:.2f} ms, H.264 {h264['p50_ms']:.2f} ms; "
          f"browser: jitter buffer {w['browser_jitter_buffer_ms']:.2f} ms, decode "
          f"{w['browser_decode_ms']:.2f} ms; the rest of the WebRTC p50 (network, "
          f"compositing, waiting for the display): {rest:.2f} ms")
    print(json.dumps(r))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
