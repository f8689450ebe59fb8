"""`make bench-link`'s WebRTC rows: H.264 to headless Chromium through the same relay.

Per condition (bench/link.py's seeded CONDITIONS), one run of ``seconds``: the bridge's
WebRTC sink (sinks/webrtc.py, the class the node uses: our H.264 encoder following the
browser's REMB, a keyframe on PLI) fed 1280x720 pattern frames at 60 fps in this
process, net/impairment.py's relay in its own process, and Debian's Chromium
(tools/chromium.py) drawing every frame and reporting its stamp.

How the media goes through the relay (ICE on one host): the server's SDP hook
(WebRtcServer ``rewrite_sdp``) points the browser's first IPv4 host candidate in the
offer at the relay on 127.0.0.1 (the relay forwards to the browser's real address and
port, an address of this host; Chromium offers its LAN address, not loopback) and leaves
aiortc's candidates out of the answer, and aiortc gathers on 127.0.0.1 only. aiortc's
connectivity checks, its RTP and its DTLS therefore go to the relay (the impaired
forward direction); the browser learns the relay's outgoing socket as a peer-reflexive
candidate from those checks and answers, sends its RTCP (NACK, PLI, REMB) and its data
channel back through the relay (delay only). Network namespaces + tbf (bench/link_tcp.py)
were not needed: the relay already shapes every datagram in user space.

Per run: frames drawn / sent, longest freeze (the longest gap between two frames drawn,
from the page's stamps in the bridge's clock), gaps over 50 / 100 ms, capture -> drawn
p50/p95/p99, the encoder's bitrate (start, lowest, lowest during a dip, changes and when),
REMBs (and those not applied because the encoder already sent less), PLIs/FIRs and
keyframes, stamps the page could not read (a blurred frame counts as not drawn).
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import re
import socket
import sys
import threading
import time

import numpy as np

from vr_stream_ros.camera.base import FramePacer
from vr_stream_ros.camera.pattern import PatternGenerator
from vr_stream_ros.codecs.h264 import H264Encoder
from vr_stream_ros.graph.processes import ProcessGroup, free_port
from vr_stream_ros.latency.percentiles import ms_cell, summarize
from vr_stream_ros.net.impairment import LinkConditions
from vr_stream_ros.ring.frame_ring import FrameView
from vr_stream_ros.sinks.base import Outcome
from vr_stream_ros.sinks.stream_stats import StreamStats
from vr_stream_ros.sinks.webrtc import WebRtcSink
from vr_stream_ros.webrtc.reports import BROWSER_DRAWN
from vr_stream_ros.webrtc.server import WebRtcConfig

CONDITIONS = ("clean", "loss_1pct", "dip_10mbps_2s")
"""The default WebRTC subset of bench/link.py's conditions."""
MAX_BITRATE, MIN_BITRATE = 8_000_000, 1_000_000  # the bridge's defaults (node_params)
KEYFRAME_INTERVAL = 600
CONNECT_S = 20.0
DIP_SHIFT_S = 3.0
"""Capacity dips start this much later than in the RTP runs: their clock starts at the
relay's first datagram (ICE's first check), and ICE, DTLS and the first keyframe take
1-3 s here before frames flow."""
GAP_LIMITS_MS = (50.0, 100.0)
_CANDIDATE = re.compile(r"^a=candidate:\S+ 1 udp \d+ (\d+\.\d+\.\d+\.\d+) (\d+) typ host",
                        re.IGNORECASE | re.MULTILINE)
"""An IPv4 UDP host candidate: its address and port."""


class _Drawn(StreamStats):
    """The sink's stats, keeping each frame's capture -> drawn and when it was drawn."""

    def __init__(self) -> None:
        super().__init__(WebRtcSink.stages)
        self.drawn: dict[int, tuple[int, float]] = {}  # frame: (drawn ns, capture->drawn ms)

    def viewer_samples(self, frame_seq: int, samples: dict[str, int],
                       marks: dict[str, int]) -> None:
        super().viewer_samples(frame_seq, samples, marks)
        if BROWSER_DRAWN in marks and BROWSER_DRAWN in samples:
            self.drawn.setdefault(frame_seq, (marks[BROWSER_DRAWN],
                                              samples[BROWSER_DRAWN] / 1e6))


class RelayedSdp:
    """The server's SDP hook: the browser's first IPv4 candidate -> a relay started for it."""

    def __init__(self, group: ProcessGroup, cond: LinkConditions, seconds: float,
                 summary: str) -> None:
        self._group, self._cond, self._seconds, self._summary = group, cond, seconds, summary
        self.relay = None
        self.started_ns = 0
        self.offer = ""

    def __call__(self, kind: str, sdp: str) -> str:
        from vr_stream_ros.bench.link import _relay_argv, _udp_bound
        if kind == "answer":
            return "".join(line for line in sdp.splitlines(keepends=True)
                           if not line.startswith("a=candidate:"))
        self.offer = sdp
        match = _CANDIDATE.search(sdp)
        if match is None:
            raise ValueError("the browser's offer has no IPv4 UDP host candidate")
        host, target = match.group(1), match.group(2)
        port = free_port()
        self.relay = self._group.start("relay", _relay_argv(
            port, int(target), self._cond, self._seconds, self._summary, host))
        deadline = time.monotonic() + 10
        while not _udp_bound(port) and time.monotonic() < deadline:
            time.sleep(0.02)
        self.started_ns = time.monotonic_ns()
        out = []
        for line in sdp.splitlines(keepends=True):  # every m-section's candidates
            if line.startswith("a=candidate:"):
                if f" {host} {target} typ host" not in line:
                    continue  # the browser's other sockets: it is reached by the relay only
                line = line.replace(f" {host} {target} typ", f" 127.0.0.1 {port} typ", 1)
            out.append(line)
        return "".join(out)


def loopback_only(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    """For aioice.ice.get_host_addresses: aiortc gathers on 127.0.0.1 only (one local
    candidate, so the relay sees one peer)."""
    return ["127.0.0.1"]


def run_webrtc(tmp: str, browser, condition: str, cond: LinkConditions,
               seconds: float, fps: float = 60.0, size: tuple[int, int] = (1280, 720)) -> dict:
    """One run: sink -> relay -> Chromium for ``seconds`` of frames; the figures."""
    import json

    import aioice.ice
    aioice.ice.get_host_addresses = loopback_only
    width, height = size
    cond = dataclasses.replace(cond, dips=tuple((start + DIP_SHIFT_S, length, mbps)
                                                for start, length, mbps in cond.dips))
    label = f"{condition}_webrtc"
    relay_json = os.path.join(tmp, f"{label}_relay.json")
    stats, logs = _Drawn(), []
    encoder = H264Encoder(width, height, fps, MAX_BITRATE, KEYFRAME_INTERVAL)
    port = free_port(socket.SOCK_STREAM)
    rates: list[tuple[int, int]] = []  # (ns, bit/s) whenever the encoder's rate changes
    with ProcessGroup(os.path.join(tmp, label)) as group:
        hook = RelayedSdp(group, cond, seconds + CONNECT_S, relay_json)
        sink = WebRtcSink(encoder, WebRtcConfig(bind="127.0.0.1", port=port, token="bench",
                                                tls=False),
                          stats, log=logs.append, min_bitrate_bps=MIN_BITRATE,
                          rewrite_sdp=hook)
        stop = threading.Event()
        sent: dict[int, int] = {}  # frame: sent ns

        def camera() -> None:
            pattern, pacer = PatternGenerator(width, height), FramePacer(fps)
            frame = np.empty((height, width, 3), np.uint8)
            for i in itertools.count():
                if stop.is_set():
                    return
                capture = pacer.wait()
                pattern.render_into(frame, i, capture)
                if not rates or rates[-1][1] != encoder.bitrate_bps:
                    rates.append((capture, encoder.bitrate_bps))
                out = sink.send(FrameView(frame, i, 0, capture, capture),
                                time.monotonic_ns(), lambda _v: True)
                if out.outcome is Outcome.SENT and sink.server.viewers:
                    sent[i] = capture

        thread = threading.Thread(target=camera, name="bench-camera", daemon=True)
        try:
            thread.start()
            browser.open_viewer(f"http://127.0.0.1:{port}/?token=bench")
            deadline = time.monotonic() + CONNECT_S
            while not stats.drawn and time.monotonic() < deadline:
                time.sleep(0.1)
            if not stats.drawn:
                raise RuntimeError(f"{label}: Chromium drew nothing in {CONNECT_S:.0f} s; "
                                   f"server log: {logs[-5:]}; offer's candidates: "
                                   f"{re.findall('a=candidate:.*', hook.offer)}")
            start_ns = time.monotonic_ns()
            feedback0, keyframes0 = _copy(sink.server.feedback), encoder.keyframes
            time.sleep(seconds)
            end_ns = time.monotonic_ns()
            feedback, keyframes = _copy(sink.server.feedback), encoder.keyframes
            time.sleep(0.5)  # the last frames' reports
            unreadable = browser.stat("unreadable")
        finally:
            stop.set()
            thread.join(5)
            browser.open_viewer("about:blank")
            sink.close()
            if hook.relay is not None:
                hook.relay.terminate()
                group.wait(hook.relay, timeout=10)
    relay = {}
    if os.path.exists(relay_json):
        with open(relay_json) as f:
            relay = json.load(f)
    window = sorted(i for i, t in sent.items() if start_ns <= t < end_ns)
    drawn = [(stats.drawn[i][0], stats.drawn[i][1]) for i in window if i in stats.drawn]
    times = sorted(t for t, _ in drawn)
    edges = [start_ns, *times, end_ns]
    gaps = [(b - a) / 1e6 for a, b in itertools.pairwise(edges)]
    worst = max(range(len(gaps)), key=gaps.__getitem__, default=0)
    lat = summarize([ms for _, ms in drawn])
    in_window = [r for t, r in rates if start_ns <= t < end_ns]
    before = [r for t, r in rates if t < start_ns]
    figures = {
        "frames_sent": len(window), "frames_drawn": len(drawn),
        "drawn_pct": round(100.0 * len(drawn) / len(window), 2) if window else 0.0,
        "longest_freeze_ms": round(max(gaps, default=0.0), 1),
        "gaps_over_50ms": sum(g > GAP_LIMITS_MS[0] for g in gaps),
        "gaps_over_100ms": sum(g > GAP_LIMITS_MS[1] for g in gaps),
        "p50_ms": round(lat.p50, 2) if lat else None,
        "p95_ms": round(lat.p95, 2) if lat else None,
        "p99_ms": round(lat.p99, 2) if lat else None,
        "bitrate_start_mbps": (before[-1] if before else MAX_BITRATE) / 1e6,
        "bitrate_min_mbps": min([*in_window, *(before[-1:])], default=MAX_BITRATE) / 1e6,
        "bitrate_changes": len(in_window),
        "longest_freeze_at_s": round((edges[worst] - start_ns) / 1e9, 2),
        "bitrate_changed_at_s": [round((t - start_ns) / 1e9, 2) for t, _ in rates
                                 if start_ns <= t < end_ns],
        "unreadable_stamps": unreadable,
        "remb_not_binding": sink.follower.app_limited,
        "remb": feedback["remb"] - feedback0["remb"],
        "last_remb_mbps": round(feedback["last_remb_bps"] / 1e6, 2),
        "pli": feedback["pli"] - feedback0["pli"], "fir": feedback["fir"] - feedback0["fir"],
        "keyframes": keyframes - keyframes0,
        "relay": {k: relay.get(k) for k in ("forwarded", "returned", "lost", "queue_drops")},
    }
    for start, length, _mbps in cond.dips:  # from the relay's start (~its first datagram)
        if hook.started_ns + (start + length) * 1e9 > end_ns:
            figures["dip_outside_run"] = True  # a --quick run: too short for the dip
            continue
        lo = hook.started_ns + int(start * 1e9)
        hi = hook.started_ns + int((start + length) * 1e9)
        in_dip = [t for t in times if lo <= t < hi]
        dip_gaps = [(b - a) / 1e6 for a, b in itertools.pairwise([lo, *in_dip, hi])]
        figures["dip_fps"] = round(len(in_dip) / length, 1)
        figures["dip_longest_freeze_ms"] = round(max(dip_gaps), 1)
        figures["dip_bitrate_min_mbps"] = min(
            [r for t, r in rates if t < hi][-1:] + [r for t, r in rates if lo <= t < hi],
            default=MAX_BITRATE) / 1e6
    return figures


def _copy(feedback) -> dict:
    return dataclasses.asdict(feedback)


def run_all(tmp: str, names: list[str], seconds: float) -> list[tuple[str, dict]]:
    """Every condition in ``names`` (of bench/link.py's) with one Chromium; [] and a
    line on stdout when Chromium cannot be had."""
    from vr_stream_ros.bench.link import CONDITIONS as LINK_CONDITIONS
    from vr_stream_ros.tools.apt import PackagesMissing
    from vr_stream_ros.tools.chromium import Chromium
    try:
        browser = Chromium(os.path.join(tmp, "chromium-profile"))
    except PackagesMissing as exc:
        print(f"[bench-link] WebRTC runs skipped: {exc}", flush=True)
        return []
    results = []
    with browser:
        for name in names:
            figures = run_webrtc(tmp, browser, name, LINK_CONDITIONS[name], seconds)
            results.append((name, figures))
            print(f"[bench-link] {name} webrtc: {figures['drawn_pct']} % drawn", flush=True)
    return results


def table(results: list[tuple[str, dict]]) -> str:
    """The WebRTC rows."""
    head = (f"{'condition':<16}{'webrtc':<8}{'drawn%':>7}{'freeze':>8}{'>50ms':>6}{'>100':>5}"
            f"{'p50':>7}{'p95':>7}{'p99':>7}{'Mbit/s min':>11}{'REMB':>5}{'PLI':>4}"
            f"{'FIR':>4}{'keyfr':>6}")
    lines = [head, "-" * len(head)]
    for name, f in results:
        lines.append(
            f"{name:<16}{'h264':<8}{f['drawn_pct']:7.2f}{f['longest_freeze_ms']:8.1f}"
            f"{f['gaps_over_50ms']:6d}{f['gaps_over_100ms']:5d}"
            f"{ms_cell(f['p50_ms'])}{ms_cell(f['p95_ms'])}{ms_cell(f['p99_ms'])}"
            f"{f['bitrate_min_mbps']:11.2f}{f['remb']:5d}{f['pli']:4d}{f['fir']:4d}"
            f"{f['keyframes']:6d}"
            + (f"  dip: {f['dip_fps']} fps, freeze {f['dip_longest_freeze_ms']} ms, "
               f"{f['dip_bitrate_min_mbps']:.2f} Mbit/s" if "dip_fps" in f else ""))
    return "\n".join(lines)


if __name__ == "__main__":
    import json
    import tempfile
    with tempfile.TemporaryDirectory(prefix="bench_link_webrtc_") as tmp_dir:
        found = run_all(tmp_dir, sys.argv[1].split(",") if len(sys.argv) > 1
                        else list(CONDITIONS), float(sys.argv[2]) if len(sys.argv) > 2 else 8.0)
    print(table(found))
    print(json.dumps([{"condition": n, **f} for n, f in found]))
