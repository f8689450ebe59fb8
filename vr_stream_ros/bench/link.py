"""`make bench-link`: every recovery variant against the same seeded link conditions.

For each condition (net/impairment.py's relay, seeded) and each variant, one run of
``--seconds``: the bridge's RTP/JPEG sink (sinks/rtp.py, the class the node uses, fed
1280x720 synthetic frames at 60 fps in this process), the relay and the reference
receiver (tools/receiver.py) each in their own process, all on loopback. Per run:

- frames shown intact (decoded whole), shown concealed (restart intervals from the
  previous frame) and lost, of the frames sent, and the stale share of the picture;
- the longest freeze (the longest gap between two decoded frames, and from the
  last one to the end) and the gaps over 50 and 100 ms;
- capture -> decoded p50/p95/p99 (the receiver shares the sender's clock here);
- bandwidth overhead: bytes sent (RTX repairs and parity included) over the same condition's
  ``off`` variant, and the relay's own added latency.

A table, then the JSON of every figure as the last line. ``--quick`` is the short
version the tests run.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from vr_stream_ros.camera.base import FramePacer
from vr_stream_ros.camera.pattern import PatternGenerator
from vr_stream_ros.codecs.jpeg import JpegEncoder
from vr_stream_ros.graph.processes import ProcessGroup, free_port, wait_for
from vr_stream_ros.latency.percentiles import ms_cell, summarize
from vr_stream_ros.net.impairment import LinkConditions
from vr_stream_ros.net.senders import TcpRtpSender, UdpRtpSender
from vr_stream_ros.ring.frame_ring import FrameView
from vr_stream_ros.rtp.adapt import LinkAdapter
from vr_stream_ros.sinks.base import Outcome
from vr_stream_ros.sinks.rtp import NackConfig, RtpJpegSink, TcpRtpJpegSink
from vr_stream_ros.sinks.stream_stats import StreamStats

W, H, FPS = 1280, 720, 60.0
DELAY_MS = 5.0
SEED = 13
CONDITIONS: dict[str, LinkConditions] = {
    "clean": LinkConditions(delay_ms=DELAY_MS, seed=SEED),
    "loss_1pct": LinkConditions(delay_ms=DELAY_MS, loss=0.01, seed=SEED),
    "loss_3pct": LinkConditions(delay_ms=DELAY_MS, loss=0.03, seed=SEED),
    # Bursts of 10 packets on average, 1 % of packets in all.
    "bursts_1pct": LinkConditions(delay_ms=DELAY_MS, burst=(0.01 / 10 / 0.99, 10.0),
                                  seed=SEED),
    "jitter_reorder": LinkConditions(delay_ms=DELAY_MS, jitter_ms=2.0, reorder=True,
                                     loss=0.01, seed=SEED),
    "dip_10mbps_2s": LinkConditions(delay_ms=DELAY_MS, dips=((2.0, 2.0, 10.0),), seed=SEED),
}
VARIANTS = ("off", "nack", "rst", "nack+rst", "nack+rst+adapt", "fec", "nack+fec")
"""Recovery off; NACK + RTX; restart markers + concealment; both; both and adaptation;
XOR parity (FEC_GROUP packets per parity packet); NACK and parity."""
FEC_GROUP = 12  # two parity packets per 720p frame (~23 packets): +8 % bytes
RESTART_MCUS = 40  # half a 1280-pixel MCU row: +2.5 % bytes here, packets still ~full
GAP_LIMITS_MS = (50.0, 100.0)


@dataclass(frozen=True)
class RunResult:
    """The figures of one (condition, variant) run."""

    condition: str
    variant: str
    figures: dict


def _relay_argv(listen: int, target: int, cond: LinkConditions, seconds: float,
                summary: str, target_host: str = "127.0.0.1") -> list[str]:
    argv = [sys.executable, "-m", "vr_stream_ros.net.impairment", "--listen", str(listen),
            "--to", f"{target_host}:{target}", "--delay-ms", str(cond.delay_ms),
            "--jitter-ms", str(cond.jitter_ms), "--loss", str(cond.loss),
            "--rate-mbps", str(cond.rate_mbps), "--queue-ms", str(cond.queue_ms),
            "--seed", str(cond.seed), "--duration", str(seconds), "--summary-json", summary]
    if cond.reorder:
        argv.append("--reorder")
    if cond.burst:
        argv += ["--burst-enter", str(cond.burst[0]), "--burst-length", str(cond.burst[1])]
    for start, length, mbps in cond.dips:
        argv += ["--dip", f"{start}:{length}:{mbps}"]
    return argv


def _udp_bound(port: int) -> bool:
    import socket
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def run_link(tmp: str, condition: str, cond: LinkConditions, variant: str,
             seconds: float) -> RunResult:
    """One run: sink -> relay -> receiver for ``seconds`` of 60 fps 720p frames."""
    rx_port, relay_port = free_port(), free_port()
    label = f"{condition}_{variant}"
    rx_json = os.path.join(tmp, f"{label}_receiver.json")
    relay_json = os.path.join(tmp, f"{label}_relay.json")
    nack, rst, fec = "nack" in variant, "rst" in variant, "fec" in variant
    with ProcessGroup(os.path.join(tmp, label)) as group:
        rx_args = ["--port", str(rx_port), "--bind", "127.0.0.1", "--quiet", "--duration",
                   str(seconds + 4), "--summary-json", rx_json]
        receiver = group.receiver(*rx_args, *(["--nack"] if nack else []),
                                  *(["--conceal"] if rst else []),
                                  *(["--fec"] if fec else []))
        relay = group.start("relay", _relay_argv(relay_port, rx_port, cond, seconds + 3,
                                                 relay_json))
        wait_for(lambda: _udp_bound(rx_port) and _udp_bound(relay_port), 15)
        sent, sender_bytes, rtx_bytes, resends = send_frames(
            UdpRtpSender("127.0.0.1", relay_port), seconds, nack=nack,
            restart_interval=RESTART_MCUS if rst else 0, adapt="adapt" in variant,
            fec=FEC_GROUP if fec else 0)
        group.wait(relay, timeout=30)
        group.wait(receiver, timeout=30)
    with open(rx_json) as f:
        rx = json.load(f)
    with open(relay_json) as f:
        relay_summary = json.load(f)
    figures = figures_of(rx, relay_summary, sent, sender_bytes, rtx_bytes, cond)
    figures["bridge_resends"] = resends
    return RunResult(condition, variant, figures)


def send_frames(sender: UdpRtpSender | TcpRtpSender, seconds: float, *, nack: bool = False,
                restart_interval: int = 0, adapt: bool = False, fec: int = 0,
                on_frame: Callable[[int], None] | None = None) -> tuple[int, int, int, dict]:
    """Frames sent, bytes sent (RTX and parity included), of which RTX bytes, and what
    became of the NACKed packets: the bridge's sink (TCP's for a TcpRtpSender), in this
    process, ``seconds`` of 60 fps frames; ``on_frame(i)`` before frame i."""
    stats = StreamStats(RtpJpegSink.stages)
    encoder = JpegEncoder(80, "420", "rgb8", restart_interval)
    changes: list[str] = []
    adapter = LinkAdapter(80, log=changes.append, halve=True) if adapt else None
    options = {"ssrc": 0x1234, "mtu": 1400, "rtcp_interval_s": 0.25, "stats": stats,
               "adapter": adapter}
    sink = TcpRtpJpegSink(sender, encoder, **options) if isinstance(sender, TcpRtpSender) \
        else RtpJpegSink(sender, encoder, nack=NackConfig(enabled=nack), fec=fec, **options)
    pattern, pacer = PatternGenerator(W, H), FramePacer(FPS)
    frame = np.empty((H, W, 3), np.uint8)
    sent = 0
    try:
        sink.idle(time.monotonic_ns())  # a sender report first: the receiver answers it
        for i in range(int(seconds * FPS)):
            if on_frame is not None:
                on_frame(i)
            capture = pacer.wait()
            pattern.render_into(frame, i, capture)
            view = FrameView(frame, i, 0, capture, capture)
            if sink.send(view, time.monotonic_ns(), lambda _v: True).outcome is Outcome.SENT:
                sent += 1
            sink.idle(time.monotonic_ns())
        time.sleep(0.3)  # late NACKs are still served
    finally:
        rtx = sink.rtx_bytes
        total = sender.stats.bytes_sent + rtx + (sink.fec.bytes if sink.fec else 0)
        sink.close()
    serve = summarize(list(sink.serve_ms))
    return sent, total, rtx, {**dataclasses.asdict(sink.resend_counters),
                              "serve_ms": serve.as_dict() if serve else None,
                              "adapt_changes": changes}


def figures_of(rx: dict, relay: dict | None, sent: int, sent_bytes: int, rtx_bytes: int,
               cond: LinkConditions) -> dict:
    """One run's figures from the receiver's summary (and the relay's, when there is one)."""
    decoded, concealed = rx["frames_decoded"], rx["frames_concealed"]
    times = rx["decoded_at_ms"]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    lat = rx["latency_ms"] or {}
    figures = {
        "frames_sent": sent,
        "intact_pct": round(100.0 * (decoded - concealed) / sent, 2) if sent else 0.0,
        "concealed_pct": round(100.0 * concealed / sent, 2) if sent else 0.0,
        "stale_area_pct": rx["stale_area_pct"],
        "lost_pct": round(100.0 * (sent - decoded) / sent, 2) if sent else 0.0,
        "longest_freeze_ms": round(max(gaps, default=0.0), 1),
        "gaps_over_50ms": sum(g > GAP_LIMITS_MS[0] for g in gaps),
        "gaps_over_100ms": sum(g > GAP_LIMITS_MS[1] for g in gaps),
        "p50_ms": lat.get("p50"), "p95_ms": lat.get("p95"), "p99_ms": lat.get("p99"),
        "bytes_sent": sent_bytes, "rtx_bytes": rtx_bytes,
        "packets_lost": rx["packets_lost"], "packets_unrepaired": rx["packets_unrepaired"],
        "packets_reordered": rx["packets_reordered"], "nack": rx["nack"],
        "jitter_ms": rx["jitter_ms"], "fec": rx["fec"],
        "relay": {k: relay[k] for k in ("forwarded", "lost", "queue_drops")} if relay else None,
        "relay_added_ms": (relay["relay_added_ms"] or {}).get("p50") if relay else None,
    }
    for start, length, _mbps in cond.dips:
        in_dip = [t for t in times if start * 1000 <= t < (start + length) * 1000]
        dip_gaps = [b - a for a, b in itertools.pairwise(in_dip)]
        figures["dip_fps"] = round(len(in_dip) / length, 1)
        figures["dip_longest_freeze_ms"] = round(max(dip_gaps, default=length * 1000), 1)
    return figures


def table(results: list[RunResult]) -> str:
    """The side-by-side table (overhead against each condition's 'off' run)."""
    base = {r.condition: r.figures["bytes_sent"] for r in results if r.variant == "off"}
    head = (f"{'condition':<16}{'variant':<15}{'intact%':>8}{'concl%':>7}{'lost%':>7}"
            f"{'stale%':>7}{'freeze':>8}"
            f"{'>50ms':>6}{'>100':>5}{'p50':>7}{'p95':>7}{'p99':>7}{'+bytes%':>8}"
            f"{'pkt lost':>9}{'unrep':>6}{'reord':>6}")
    lines = [head, "-" * len(head)]
    for r in results:
        f = r.figures
        over = 100.0 * (f["bytes_sent"] / base[r.condition] - 1) if base.get(r.condition) \
            else 0.0
        f["bandwidth_overhead_pct"] = round(over, 2)
        lines.append(
            f"{r.condition:<16}{r.variant:<15}{f['intact_pct']:8.2f}{f['concealed_pct']:7.2f}"
            f"{f['lost_pct']:7.2f}{f['stale_area_pct']:7.2f}{f['longest_freeze_ms']:8.1f}{f['gaps_over_50ms']:6d}{f['gaps_over_100ms']:5d}"
            f"{ms_cell(f['p50_ms'])}{ms_cell(f['p95_ms'])}{ms_cell(f['p99_ms'])}{over:8.2f}"
            f"{f['packets_lost']:9d}{f['packets_unrepaired']:6d}{f['packets_reordered']:6d}"
            + (f"  dip: {f['dip_fps']} fps, freeze {f['dip_longest_freeze_ms']} ms"
               if "dip_fps" in f else ""))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run every variant against every condition; table, then JSON as the last line."""
    parser = argparse.ArgumentParser(prog="bench-link", description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="per run (default 8)")
    parser.add_argument("--conditions", default=",".join(CONDITIONS),
                        help="comma-separated subset of: " + ", ".join(CONDITIONS))
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help="comma-separated subset of: " + ", ".join(VARIANTS))
    parser.add_argument("--quick", action="store_true", help="2 s runs (the tests' version)")
    parser.add_argument("--webrtc-seconds", type=float, default=8.0,
                        help="per WebRTC run (bench/link_webrtc.py: H.264 to headless "
                             "Chromium through the same relay; 0 = none; default 8)")
    parser.add_argument("--webrtc-conditions", default="clean,loss_1pct,dip_10mbps_2s",
                        help="comma-separated conditions for the WebRTC runs")
    parser.add_argument("--tcp-seconds", type=float, default=22.0,
                        help="per TCP run (bench/link_tcp.py; root only; 0 = none; default "
                             "22: two of BBR's 10 s round-trip probes)")
    ns = parser.parse_args(argv)
    names = [c for c in ns.conditions.split(",") if c]
    variants = [v for v in ns.variants.split(",") if v]
    bad = [c for c in names if c not in CONDITIONS] + [v for v in variants if v not in VARIANTS]
    if bad:
        parser.error(f"unknown condition or variant {bad}: expected conditions from "
                     f"{list(CONDITIONS)} and variants from {list(VARIANTS)}")
    webrtc_names = [c for c in ns.webrtc_conditions.split(",") if c]
    if any(c not in CONDITIONS for c in webrtc_names):
        parser.error(f"--webrtc-conditions {webrtc_names}: expected conditions from "
                     f"{list(CONDITIONS)}")
    seconds = 2.0 if ns.quick else ns.seconds
    results = []
    with tempfile.TemporaryDirectory(prefix="bench_link_") as tmp:
        for name in names:
            for variant in variants:
                results.append(run_link(tmp, name, CONDITIONS[name], variant, seconds))
                print(f"[bench-link] {name} {variant}: "
                      f"{results[-1].figures['intact_pct']} % intact", flush=True)
        if ns.tcp_seconds > 0 and os.geteuid() == 0:
            from vr_stream_ros.bench.link_tcp import run_all
            results += run_all(tmp, 2.0 if ns.quick else ns.tcp_seconds)
        elif ns.tcp_seconds > 0:
            print("[bench-link] TCP runs skipped: network namespaces need root", flush=True)
        webrtc = []
        if ns.webrtc_seconds > 0:
            from vr_stream_ros.bench import link_webrtc
            webrtc = link_webrtc.run_all(tmp, webrtc_names,
                                         2.0 if ns.quick else ns.webrtc_seconds)
    print(table(results))
    if webrtc:
        print(link_webrtc.table(webrtc))
    print(json.dumps({"seconds": seconds, "fps": FPS, "size": [W, H], "delay_ms": DELAY_MS,
                      "seed": SEED, "runs": [{"condition": r.condition, "variant": r.variant,
                                              **r.figures} for r in results],
                      "webrtc": [{"condition": n, **f} for n, f in webrtc]}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
