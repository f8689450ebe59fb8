"""``make bench-webrtc``: the browser paths side by side with RTP/UDP, pooled over runs.

Each run starts one camera_node feeding two bridges from its ring: one sends RTP/JPEG
over UDP to the reference receiver (capture -> decoded, the like-with-like reference),
the other H.264 over WebRTC to headless Chromium (Debian's, driven by Selenium). Three
browser variants take turns, run after run:

- ``video``: the <video> element, no playout-delay extension (the browser paces frames);
- ``video+pd``: the <video> element, playout delay min 0 / max 0 (render on decode);
- ``direct+pd``: playout delay 0 and frames taken from the track (MediaStreamTrackProcessor)
  by the page's worker and drawn as they arrive (newest only) into an OffscreenCanvas;
- ``direct+pd main``: the same, drawn on the page's main thread (``&worker=0``), as
  before the worker: what the worker changes;
- ``webcodecs``: no WebRTC: the same access units over a WebSocket, decoded by WebCodecs
  (no jitter buffer by design) and drawn as they arrive.

Headless Chromium renders on a 60 Hz tick that can phase-lock with the camera's timer,
so one run lands on a random phase: samples are pooled over ``--runs`` runs per variant.
Per variant: capture -> decoded in the page and capture -> drawn (p50/p95/p99), their
ratio to RTP/UDP capture -> decoded of the same runs, frames drawn / frames sent, where
the others went (Chromium decoded / dropped, getStats; the page took / drew / closed
unshown because a newer one overtook it), and Chromium's own jitter buffer and decode
time per frame (getStats). The last line is JSON.
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
from collections import defaultdict

from vr_stream_ros.graph.processes import ProcessGroup, free_port
from vr_stream_ros.latency.percentiles import summarize
from vr_stream_ros.tools.apt import PackagesMissing
from vr_stream_ros.tools.chromium import Chromium

VARIANTS = {  # name: (webrtc_max_playout_delay_ms, page path, more of the page's query)
    "video": (-1, "video", ""),
    "video+pd": (0, "video", ""),
    "direct+pd": (0, "direct", ""),
    "direct+pd-main": (0, "direct", "&worker=0"),
    "webcodecs": (-1, "webcodecs", ""),
}
LABELS = {"video": "<video>, no playout delay (before)",
          "video+pd": "<video> + playout delay 0",
          "direct+pd": "direct + playout delay 0 (worker)",
          "direct+pd-main": "direct + playout delay 0, main thread",
          "webcodecs": "WebSocket + WebCodecs (no WebRTC)"}
WARMUP_FRAMES = 30


def _pcts(values: list[float]) -> dict[str, float]:
    return summarize(values).as_dict("_ms", digits=2)


def _rows(record: str) -> list[dict[str, int]]:
    """A bridge's recording (record_path CSV): per frame, its marks in ns."""
    with open(record) as f:
        return [{k: int(v) for k, v in r.items() if v} for r in csv.DictReader(f)]


def _between(rows: list[dict[str, int]], start: str, end: str) -> list[float]:
    """end - start in ms for the frames that have both marks, after the warm-up."""
    return [(r[end] - r[start]) / 1e6 for r in rows if start in r and end in r][WARMUP_FRAMES:]


def _listening(port: int, timeout: float) -> bool:
    """True once something accepts TCP connections on 127.0.0.1:``port``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1.0).close()
            return True
        except OSError:
            time.sleep(0.2)
    return False


WARMUP_S = 3.0  # before the frame counts' interval starts (the page and decoder settle)
COUNTS = ("sent", "received", "decoded", "taken", "drawn", "overtaken")


def _counts(browser: Chromium, path: str) -> dict[str, int]:
    """Running frame counts now: Chromium's (getStats) and the page's, and the time."""
    page = browser.stats()
    inbound = (browser.inbound_video() if path != "webcodecs" else None) or {}
    worker = page.get("worker")
    mine = ({"taken": worker["decoded"], "drawn": worker["drawn"],
             "overtaken": worker["overtaken"]} if worker else
            page["main"])
    return {"t_ns": time.monotonic_ns(), "received": inbound.get("framesReceived", 0),
            "decoded": inbound.get("framesDecoded", 0), **mine}


def run_once(fps: float, variant: str, seconds: float, tmp: str, browser: Chromium) -> dict:
    """One camera, RTP/UDP and one WebRTC variant side by side; the raw samples."""
    delay_ms, path, more = VARIANTS[variant]
    run_dir = tempfile.mkdtemp(prefix=f"{variant}-{fps:g}-", dir=tmp)
    env = dict(os.environ, ROS_DOMAIN_ID=str(150 + os.getpid() % 40))
    ring = f"vr_bench_webrtc_{os.getpid()}_{os.path.basename(run_dir).replace('+', '_')}"
    udp_port = free_port()
    http_port = free_port(socket.SOCK_STREAM)
    rec_udp, rec_web = os.path.join(run_dir, "udp.csv"), os.path.join(run_dir, "webrtc.csv")
    ros = ("--log-level", "warn")
    with ProcessGroup(os.path.join(run_dir, "logs"), env) as group:
        group.receiver("--port", str(udp_port), "--quiet", "--duration", str(seconds + 25))
        group.node("camera_node", f"ring_name:={ring}", f"fps:={fps}", ros_args=ros)
        time.sleep(1.0)
        group.node("headset_bridge_node", f"ring_name:={ring}", f"headset_port:={udp_port}",
                   "sdp_path:=''", f"record_path:={rec_udp}", name="bridge_udp",
                   ros_args=("-r", "__node:=bridge_udp", *ros))
        group.node("headset_bridge_node", f"ring_name:={ring}", "transport:=webrtc",
                   f"webrtc_port:={http_port}", "webrtc_bind:=127.0.0.1",
                   "webrtc_token:=bench", f"webrtc_max_playout_delay_ms:={delay_ms}",
                   f"record_path:={rec_web}", name="bridge_webrtc",
                   ros_args=("-r", "__node:=bridge_webrtc", *ros))
        if not _listening(http_port, 30):
            raise RuntimeError(f"{variant}: the WebRTC bridge is not listening on "
                               f"{http_port}:\n{group.output('bridge_webrtc')[-2000:]}")
        time.sleep(1.0)
        browser.open_viewer(f"https://127.0.0.1:{http_port}/?token=bench&path={path}{more}")
        time.sleep(WARMUP_S)
        before = _counts(browser, path)
        time.sleep(max(1.0, seconds - WARMUP_S))
        after = _counts(browser, path)
        page = browser.stats()
        inbound = browser.inbound_video() if path != "webcodecs" else {}
        browser.open_viewer("about:blank")
        if inbound is None or page["path"] != path:
            raise RuntimeError(f"{variant}: the browser received no video or took another "
                               f"path; page state { {k: page[k] for k in ('path', 'error')} }")
    udp, web = _rows(rec_udp), _rows(rec_web)
    # Where the frames of the counted interval went: sent by the bridge, received and
    # decoded by Chromium, taken and drawn by the page (or overtaken before drawing).
    window = {k: after[k] - before[k] for k in after if k != "t_ns"}
    window["sent"] = sum(1 for r in web if "encoded" in r
                         and before["t_ns"] <= r["encoded"] < after["t_ns"])
    drawn = [r for r in web if "browser_drawn" in r]
    first, last = drawn[0]["frame"], drawn[-1]["frame"]
    sent = [r for r in web if "encoded" in r and first <= r["frame"] <= last]
    return {
        "udp_decoded": _between(udp, "capture", "headset_decoded"),
        "decoded": _between(web, "capture", "browser_decoded"),
        "drawn": _between(web, "capture", "browser_drawn"),
        "encode": _between(web, "bridge_pickup", "encoded"),
        "shown": len(drawn), "sent": len(sent),
        "jitter_buffer_ms": 1000 * inbound.get("jitterBufferDelay", 0)
        / max(1, inbound.get("jitterBufferEmittedCount", 0)),
        "decode_ms": 1000 * inbound.get("totalDecodeTime", 0)
        / max(1, inbound.get("framesDecoded", 0)),
        "playout_delay": page["playoutDelay"],
        "window": window,
    }


def pool(runs: list[dict]) -> dict:
    """One variant's runs pooled: percentiles, ratios to RTP/UDP, frames, browser stats."""
    cat = defaultdict(list)
    for r in runs:
        for key in ("udp_decoded", "decoded", "drawn", "encode"):
            cat[key] += r[key]
    udp, decoded, drawn = summarize(cat["udp_decoded"]), summarize(cat["decoded"]), \
        summarize(cat["drawn"])
    shown, sent = sum(r["shown"] for r in runs), sum(r["sent"] for r in runs)
    return {
        "rtp_udp_decoded": _pcts(cat["udp_decoded"]),
        "capture_to_decoded": _pcts(cat["decoded"]),
        "capture_to_drawn": _pcts(cat["drawn"]),
        "ratio_decoded_p50": round(decoded.p50 / udp.p50, 2),
        "ratio_decoded_p99": round(decoded.p99 / udp.p99, 2),
        "ratio_drawn_p50": round(drawn.p50 / udp.p50, 2),
        "ratio_drawn_p99": round(drawn.p99 / udp.p99, 2),
        "encode_h264_p50_ms": round(summarize(cat["encode"]).p50, 2),
        "frames_shown": shown, "frames_sent": sent,
        "shown_pct": round(100 * shown / max(1, sent), 2),
        "browser_jitter_buffer_ms": round(sum(r["jitter_buffer_ms"] for r in runs) / len(runs), 2),
        "browser_decode_ms": round(sum(r["decode_ms"] for r in runs) / len(runs), 2),
        "per_run_drawn_p50_ms": [round(summarize(r["drawn"]).p50, 2) for r in runs],
        "frames": {k: sum(r["window"][k] for r in runs) for k in COUNTS},
        "page_drawn_pct_of_sent": round(100 * sum(r["window"]["drawn"] for r in runs)
                                        / max(1, sum(r["window"]["sent"] for r in runs)), 2),
        "playout_delay": runs[-1]["playout_delay"],
        "runs": len(runs),
    }


def print_table(fps: float, pooled: dict[str, dict]) -> None:
    """One frame rate's table: RTP/UDP, then each variant's decoded and drawn rows."""
    runs = next(iter(pooled.values()))["runs"]
    print(f"\n1280x720 @ {fps:g} fps, {runs} runs pooled per variant "
          f"{'p50':>8} {'p95':>8} {'p99':>8} {'samples':>8}  x UDP p50/p99  shown/sent  "
          f"jitter buf")
    for name, p in pooled.items():
        udp = p["rtp_udp_decoded"]
        print(f"{'RTP/UDP capture -> decoded (' + name + ' runs)':50} {udp['p50_ms']:8.2f} "
              f"{udp['p95_ms']:8.2f} {udp['p99_ms']:8.2f} {udp['samples']:8d}")
    for name, p in pooled.items():
        for what, key, r50, r99 in (("decoded", "capture_to_decoded", "ratio_decoded_p50",
                                     "ratio_decoded_p99"),
                                    ("drawn", "capture_to_drawn", "ratio_drawn_p50",
                                     "ratio_drawn_p99")):
            s = p[key]
            extra = (f"  {p['frames_shown']:>5}/{p['frames_sent']:<5} "
                     f"{p['browser_jitter_buffer_ms']:6.2f} ms") if what == "drawn" else ""
            print(f"{LABELS[name] + ' -> ' + what:50} {s['p50_ms']:8.2f} {s['p95_ms']:8.2f} "
                  f"{s['p99_ms']:8.2f} {s['samples']:8d}  {p[r50]:5.2f} / {p[r99]:5.2f}{extra}")
    print(f"where frames went (after {WARMUP_S:g} s warm-up): " + " / ".join(COUNTS)
          + "  (received/decoded: Chromium's getStats, none for WebCodecs)  drawn/sent")
    for name, p in pooled.items():
        f = p["frames"]
        print(f"  {LABELS[name]:48} " + " / ".join(f"{f[k]:5d}" for k in COUNTS)
              + f"  {p['page_drawn_pct_of_sent']:6.2f} %")


def main(argv: list[str] | None = None) -> int:
    """Run every variant at every rate, print the tables; the last line is JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=12.0, help="per run")
    parser.add_argument("--runs", type=int, default=4, help="per variant and frame rate")
    parser.add_argument("--fps", type=float, nargs="+", default=[30.0, 60.0])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    ns = parser.parse_args(argv)
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="vr_bench_webrtc_") as tmp:
        try:
            browser = Chromium(os.path.join(tmp, "profile"))
        except PackagesMissing as exc:
            print(f"bench-webrtc needs Debian's chromium and chromium-driver: {exc}",
                  file=sys.stderr)
            return 2
        with browser:
            for fps in ns.fps:
                runs: dict[str, list[dict]] = defaultdict(list)
                for i in range(ns.runs):  # variants take turns: the machine's load is shared
                    for variant in ns.variants:
                        runs[variant].append(run_once(fps, variant, ns.seconds, tmp, browser))
                        print(f"[bench-webrtc] {fps:g} fps run {i + 1}/{ns.runs} {variant}: "
                              f"drawn p50 {summarize(runs[variant][-1]['drawn']).p50:.1f} ms",
                              file=sys.stderr, flush=True)
                pooled = {v: pool(runs[v]) for v in ns.variants}
                print_table(fps, pooled)
                results[f"{fps:g}fps"] = pooled
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
