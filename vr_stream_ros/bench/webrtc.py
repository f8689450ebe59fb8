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
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import numpy as np

CHROMIUM_FLAGS = (
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--allow-loopback-in-peer-connection", "--autoplay-policy=no-user-gesture-required",
    "--disable-features=WebRtcHideLocalIpsWithMdns", "--ignore-certificate-errors")


def _free(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pcts(values: list[float]) -> dict[str, float]:
    a = np.asarray(values, dtype=float)
    if a.size == 0:
        return {"p50_ms": float("nan"), "p95_ms": float("nan"), "p99_ms": float("nan"),
                "samples": 0}
    p50, p95, p99 = np.percentile(a, (50, 95, 99))
    return {"p50_ms": round(float(p50), 2), "p95_ms": round(float(p95), 2),
            "p99_ms": round(float(p99), 2), "samples": int(a.size)}


def _encode_ms(record: str) -> list[float]:
    with open(record) as f:
        return [(int(r["encoded"]) - int(r["bridge_pickup"])) / 1e6 for r in csv.DictReader(f)
                if r.get("encoded") and r.get("bridge_pickup")][30:]


def run(seconds: float, fps: float, tmp: str) -> dict:
    """Both paths side by side; returns the figures."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    from vr_stream_ros.graph.runner import executable_path
    os.environ["SE_OFFLINE"] = "true"
    env = dict(os.environ, ROS_DOMAIN_ID=str(150 + os.getpid() % 40))
    ring, udp_port, http_port = f"vr_bench_webrtc_{os.getpid()}", _free(socket.SOCK_DGRAM), \
        _free(socket.SOCK_STREAM)
    rec_udp, rec_webrtc = os.path.join(tmp, "udp.csv"), os.path.join(tmp, "webrtc.csv")
    summary = os.path.join(tmp, "receiver.json")
    ros = ["--ros-args", "-p", f"ring_name:={ring}", "--log-level", "warn"]
    procs = [
        subprocess.Popen([sys.executable, "-m", "vr_stream_ros.tools.receiver", "--port",
                          str(udp_port), "--quiet", "--duration", str(seconds + 25),
                          "--summary-json", summary], env=env, stdout=subprocess.DEVNULL),
        subprocess.Popen([executable_path("camera_node"), *ros, "-p", f"fps:={fps}"], env=env),
    ]
    time.sleep(1.0)
    procs += [
        subprocess.Popen([executable_path("headset_bridge_node"), *ros, "-r",
                          "__node:=bridge_udp", "-p", f"headset_port:={udp_port}", "-p",
                          "sdp_path:=''", "-p", f"record_path:={rec_udp}"], env=env),
        subprocess.Popen([executable_path("headset_bridge_node"), *ros, "-r",
                          "__node:=bridge_webrtc", "-p", "transport:=webrtc", "-p",
                          f"webrtc_port:={http_port}", "-p", "webrtc_bind:=127.0.0.1", "-p",
                          "webrtc_token:=bench", "-p", f"record_path:={rec_webrtc}"], env=env),
    ]
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={os.path.join(tmp, 'profile')}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    try:
        time.sleep(3.0)
        driver.get(f"https://127.0.0.1:{http_port}/?token=bench")
        time.sleep(seconds)
        page = driver.execute_script("return vrStats")
        inbound = driver.execute_async_script("""
          const done = arguments[arguments.length - 1];
          window.vrPeer.getStats().then((stats) => { let out = null;
            stats.forEach((r) => { if (r.type === 'inbound-rtp' && r.kind === 'video') out = {
              framesDecoded: r.framesDecoded, jitterBufferDelay: r.jitterBufferDelay,
              jitterBufferEmittedCount: r.jitterBufferEmittedCount,
              totalDecodeTime: r.totalDecodeTime, framesDropped: r.framesDropped}; });
            done(out); });""")
    finally:
        driver.quit()
        for p in reversed(procs):
            p.send_signal(signal.SIGINT)
        for p in reversed(procs):
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
    with open(summary) as f:
        receiver = json.load(f)
    browser = page["latenciesMs"][30:]
    jitter_ms = 1000 * inbound["jitterBufferDelay"] / max(1, inbound["jitterBufferEmittedCount"])
    decode_ms = 1000 * inbound["totalDecodeTime"] / max(1, inbound["framesDecoded"])
    return {
        "rtp_udp": {"capture_to_decoded": receiver["latency_ms"],
                    "encode_jpeg": _pcts(_encode_ms(rec_udp))},
        "webrtc": {"capture_to_displayed": _pcts(browser),
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
    if not shutil.which("chromedriver"):
        print("bench-webrtc needs Debian's chromium and chromium-driver: "
              "sudo apt install chromium chromium-driver", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="vr_bench_webrtc_") as tmp:
        r = run(ns.seconds, ns.fps, tmp)
    udp, web = r["rtp_udp"]["capture_to_decoded"], r["webrtc"]["capture_to_displayed"]
    print(f"\n{'1280x720 @ ' + format(ns.fps, 'g') + ' fps, one camera':34} "
          f"{'p50':>8} {'p95':>8} {'p99':>8} {'samples':>8}  (ms)")
    print(f"{'RTP/UDP  capture -> decoded':34} {udp['p50']:8.2f} {udp['p95']:8.2f} "
          f"{udp['p99']:8.2f} {udp.get('count', ''):>8}")
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
