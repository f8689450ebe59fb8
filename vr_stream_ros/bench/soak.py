"""``make soak``: the whole graph for a long time; what it sent, lost and leaked.

camera_node at 1280x720 60 fps, headset_bridge_node sending RTP/JPEG over UDP to the
reference receiver, detector_node (YOLO) and ``rt_profile:=two_core``, as ``make run``
starts them (graph/runner.py's Supervisor, respawn included), plus a second bridge on the
same ring serving WebRTC to a headless Chromium viewer (tools/chromium.py). Every
``--interval`` s it samples each process's RSS, open fds, threads and CPU % (psutil,
already a dependency for the dashboard's monitor) and the frames sent/skipped/lost
(/latency and the receiver). At the end: a sample table, the memory budget (RSS, VmLck,
pinned, VmSize per node: system/realtime.py's read_memory), and the last line is JSON
with frames sent/received/lost (and why), the longest pause between decoded frames,
RSS and fd growth per process after the warm-up, and /dev/shm entries left behind.

    python -m vr_stream_ros.bench.soak --seconds 600
    python -m vr_stream_ros.bench.soak --memory-matrix     # RSS/VmLck per node and profile
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import socket
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import psutil

from vr_stream_ros.bench.live_graph import LiveGraph, decode_gaps
from vr_stream_ros.graph.processes import ProcessGroup, free_port, wait_for
from vr_stream_ros.system.realtime import read_memory
from vr_stream_ros.tools.apt import PackagesMissing

WARMUP_FRACTION = 0.2
"""Growth is counted from the first sample after this share of the run (at most 60 s):
start-up (imports, model load, DDS discovery, the browser's first frames) is not a leak."""
WARMUP_MAX_S = 60.0
VIEWER_TOKEN = "soak"
RECEIVER_FIFO = 50
"""SCHED_FIFO priority of the reference receiver (below the video nodes' 85/90): the
headset stand-in shares this machine with the detector and Chromium (see LiveGraph)."""


def yolo_available() -> bool:
    """The detector can run: YOLO not turned off (YOLO=0) and Ultralytics installed."""
    return (os.environ.get("YOLO", "1") != "0"
            and importlib.util.find_spec("ultralytics") is not None)


@dataclass
class ProcessSample:
    """One process at one time."""

    pid: int
    rss_mib: float
    fds: int
    threads: int
    cpu_pct: float


@dataclass
class Sampler:
    """psutil handles by process name (a respawned node gets a new handle)."""

    handles: dict[str, psutil.Process] = field(default_factory=dict)
    restarts: dict[str, int] = field(default_factory=dict)

    def sample(self, pids: dict[str, int], extra: dict[str, list[int]]) -> dict[str, ProcessSample]:
        """Every named pid, plus ``extra`` groups of pids summed (the browser's processes)."""
        out = {}
        for name, pid in pids.items():
            got = self._one(name, pid)
            if got is not None:
                out[name] = got
        for name, group in extra.items():
            parts = [s for s in (self._one(f"{name}:{p}", p) for p in group) if s is not None]
            if parts:
                out[name] = ProcessSample(parts[0].pid, round(sum(s.rss_mib for s in parts), 1),
                                          sum(s.fds for s in parts),
                                          sum(s.threads for s in parts),
                                          round(sum(s.cpu_pct for s in parts), 1))
        return out

    def _one(self, name: str, pid: int) -> ProcessSample | None:
        handle = self.handles.get(name)
        if handle is None or handle.pid != pid:
            if handle is not None:
                self.restarts[name] = self.restarts.get(name, 0) + 1
            try:
                handle = self.handles[name] = psutil.Process(pid)
                handle.cpu_percent(None)  # primes the counter: the next call covers the interval
            except psutil.Error:
                return None
        try:
            with handle.oneshot():
                return ProcessSample(pid, round(handle.memory_info().rss / 2**20, 1),
                                     handle.num_fds(), handle.num_threads(),
                                     round(handle.cpu_percent(None), 1))
        except psutil.Error:
            return None


def memory_budget(live: LiveGraph) -> dict[str, dict[str, float]]:
    """Per node: RSS, VmLck, pinned (smaps Locked) and VmSize, MiB."""
    out = {}
    for name in live.node_names():
        try:
            out[name] = read_memory(live.pid(name)).as_mb()
        except OSError:
            continue
    return out


def print_budget(title: str, budget: dict[str, dict[str, float]]) -> None:
    """The memory budget table."""
    print(f"\nmemory budget, {title} (MiB; VmLck counts the locked address space, pinned is "
          "what mlock holds in RAM)")
    print(f"{'process':22} {'RSS':>8} {'VmLck':>8} {'pinned':>8} {'VmSize':>8}")
    for name, m in budget.items():
        print(f"{name:22} {m['rss_mib']:8.1f} {m['vmlck_mib']:8.1f} {m['locked_mib']:8.1f} "
              f"{m['size_mib']:8.1f}")
    video = [budget[n] for n in ("camera_node", "headset_bridge_node") if n in budget]
    if len(video) == 2:
        print(f"{'camera + bridge':22} {sum(m['rss_mib'] for m in video):8.1f} "
              f"{sum(m['vmlck_mib'] for m in video):8.1f} "
              f"{sum(m['locked_mib'] for m in video):8.1f} "
              f"{sum(m['size_mib'] for m in video):8.1f}")


def graph_arguments(ring: str, out_dir: str, *, fps: int, width: int, height: int,
                    yolo: bool, rt_profile: str) -> dict[str, str]:
    """Launch arguments for one soak graph with its own ring, SDP file and port."""
    return {"ring_name": ring, "sdp_path": os.path.join(out_dir, "stream.sdp"),
            "headset_port": str(free_port()), "headset_ip": "127.0.0.1", "width": str(width),
            "height": str(height), "fps": str(fps), "yolo": str(yolo).lower(),
            "rt_profile": rt_profile}


class Viewer:
    """A second bridge on the ring serving WebRTC, and headless Chromium watching it."""

    def __init__(self, live: LiveGraph, profile_dir: str) -> None:
        from vr_stream_ros.tools.chromium import Chromium
        self.port = free_port(socket.SOCK_STREAM)
        live.group.node("headset_bridge_node", f"ring_name:={live.ring}", "transport:=webrtc",
                        f"webrtc_port:={self.port}", "webrtc_bind:=127.0.0.1",
                        f"webrtc_token:={VIEWER_TOKEN}", "sdp_path:=''",
                        name="bridge_webrtc",
                        ros_args=("-r", "__node:=bridge_webrtc", "-r", "latency:=latency_webrtc"))
        if not wait_for(lambda: _listening(self.port), 60, 0.5):
            raise RuntimeError("the WebRTC bridge is not listening on port "
                               f"{self.port}:\n{live.group.output('bridge_webrtc')[-2000:]}")
        self.browser = Chromium(profile_dir)
        self.browser.open_viewer(f"https://127.0.0.1:{self.port}/?token={VIEWER_TOKEN}")

    def pids(self) -> list[int]:
        """chromedriver and every browser process under it."""
        root = self.browser.driver.service.process.pid
        try:
            return [root, *(p.pid for p in psutil.Process(root).children(recursive=True))]
        except psutil.Error:
            return []

    def frames(self) -> dict[str, int]:
        """Frames the browser decoded and dropped so far (getStats)."""
        from selenium.common.exceptions import WebDriverException
        try:
            got = self.browser.inbound_video() or {}
        except WebDriverException as exc:  # a dead page is a figure, not a crash
            return {"error": str(exc).splitlines()[0][:120]}
        return {"decoded": int(got.get("framesDecoded", 0)),
                "dropped": int(got.get("framesDropped", 0))}

    def close(self) -> None:
        """Close the browser (the bridge stops with the graph)."""
        self.browser.quit()


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1.0).close()
        return True
    except OSError:
        return False


def _growth(series: list[dict[str, ProcessSample]], warm: int, key: str) -> dict[str, float]:
    """Per process: last sample minus the first after warm-up (same pid only)."""
    out = {}
    for name in series[-1]:
        base = next((s[name] for s in series[warm:] if name in s), None)
        last = series[-1][name]
        if base is not None and base.pid == last.pid:
            out[name] = round(getattr(last, key) - getattr(base, key), 1)
    return out


def run(seconds: float, interval: float, *, fps: int = 60, width: int = 1280,
        height: int = 720, yolo: bool = True, rt_profile: str = "two_core",
        webrtc: bool = True, out_dir: str | None = None, ring: str | None = None,
        group: ProcessGroup | None = None, say=print) -> dict[str, Any]:
    """One soak; the JSON result (also the figures the table is printed from).

    ``ring`` and ``group``: a test's own ring name and harness (test/conftest.py)."""
    out_dir = out_dir or tempfile.mkdtemp(prefix="vr_soak_")
    ring = ring or f"vr_soak_{uuid.uuid4().hex[:8]}"
    args = graph_arguments(ring, out_dir, fps=fps, width=width, height=height, yolo=yolo,
                           rt_profile=rt_profile)
    live = LiveGraph(out_dir, args, group, receiver_fifo=RECEIVER_FIFO)
    viewer = None
    series: list[dict[str, ProcessSample]] = []
    rows: list[dict[str, Any]] = []
    sampler = Sampler()
    budget: dict[str, dict[str, float]] = {}
    webrtc_note = None
    with live:
        if not live.wait_decoding(90):
            raise RuntimeError(f"the receiver decoded nothing in 90 s; logs: {out_dir}/logs")
        if webrtc:
            try:
                viewer = Viewer(live, os.path.join(out_dir, "chromium"))
            except PackagesMissing as exc:
                webrtc_note = f"no WebRTC viewer: {exc}"
                say(f"[soak] {webrtc_note}")
        start = time.monotonic()
        next_at = start
        while time.monotonic() - start < seconds and live.failed is None:
            next_at += interval
            time.sleep(max(0.0, next_at - time.monotonic()))
            extra = {"chromium": viewer.pids()} if viewer else {}
            snap = sampler.sample(live.pids(), extra)
            series.append(snap)
            lat = live.latency()
            rx = live.receiver_totals()
            rx["socket_drops"] = live.receiver_drops()
            row = {"t_s": round(time.monotonic() - start), "receiver": rx,
                   "latency": {k: lat[-1][k] for k in ("frames_sent", "frames_skipped",
                                                       "frames_dropped", "frames_torn",
                                                       "frames_lost")} if lat else None,
                   "browser": viewer.frames() if viewer else None,
                   "processes": {n: s.__dict__ for n, s in snap.items()}}
            rows.append(row)
            say(_row_line(row))
        budget = memory_budget(live)
        socket_drops = live.receiver_drops()
        last_latency = live.latency()[-1] if live.latency() else {}
        browser_end = viewer.frames() if viewer else None
        if viewer:
            viewer.close()
    summary = live.summary
    warm_s = min(WARMUP_MAX_S, seconds * WARMUP_FRACTION)
    warm = next((i for i, r in enumerate(rows) if r["t_s"] >= warm_s), max(0, len(rows) - 1))
    gaps = decode_gaps(summary)
    sent = last_latency.get("frames_sent", 0)
    result = {
        "seconds": round(seconds), "fps": fps, "size": f"{width}x{height}",
        "rt_profile": rt_profile, "detector": yolo, "webrtc_viewer": bool(viewer),
        "failed": live.failed, "respawns": [r.__dict__ for r in live.supervisor.respawns],
        # The bridge's count as of its last /latency message (once a second, the probe stops
        # first); the receiver's counts run to the end: frame_numbers_missing compares
        # like with like (the camera's frame numbers stamped in the pixels).
        "frames_sent": sent,
        "frames_received": summary.get("frames_received", 0),
        "frames_decoded": summary.get("frames_decoded", 0),
        "frames_lost": {
            "incomplete_at_receiver": summary.get("frames_lost", 0),
            "never_decoded_per_rtcp": last_latency.get("frames_lost", 0),
            "skipped_newer_ready": last_latency.get("frames_skipped", 0),
            "dropped_by_transport": last_latency.get("frames_dropped", 0),
            "torn_in_ring": last_latency.get("frames_torn", 0),
            "decode_errors": summary.get("decode_errors", 0),
            "packets_lost": summary.get("packets_lost", 0),
            "receiver_socket_drops": socket_drops,
        },
        "frame_numbers_missing": _missing(summary),
        "longest_decode_gap_ms": round(gaps[0][1], 1) if gaps else None,
        "browser": browser_end,
        "warmup_samples": warm,
        "rss_growth_mib": _growth(series, warm, "rss_mib") if series else {},
        "fd_growth": _growth(series, warm, "fds") if series else {},
        "thread_growth": _growth(series, warm, "threads") if series else {},
        "memory_budget_mib": budget,
        "shm_left": live.shm_left,
        "notes": [n for n in [webrtc_note] if n],
        "logs": out_dir,
    }
    print_table(rows)
    print_budget(f"rt_profile:={rt_profile}, detector {'on' if yolo else 'off'}", budget)
    return result


def _missing(summary: dict[str, Any]) -> int | None:
    """Frame numbers (stamped in the pixels) between the first and the last decoded that the
    receiver never decoded: lost on the way or skipped by the bridge."""
    st = summary.get("stamps") or {}
    if st.get("first") is None:
        return None
    return (st["last"] - st["first"] + 1) - len(set(st.get("frames", [])))


def _row_line(row: dict[str, Any]) -> str:
    rx, lat = row["receiver"], row["latency"] or {}
    procs = " ".join(f"{n}={p['rss_mib']:.0f}M/{p['fds']}fd/{p['threads']}t/{p['cpu_pct']:.0f}%"
                     for n, p in row["processes"].items())
    return (f"[soak] {row['t_s']:5d} s sent {lat.get('frames_sent', '?')} skipped "
            f"{lat.get('frames_skipped', '?')} decoded {rx['decoded']} lost {rx['lost']} "
            f"browser {row['browser']} | {procs}")


def print_table(rows: list[dict[str, Any]]) -> None:
    """Per sample and process: RSS MiB, fds, threads, CPU %; then the frame counters."""
    if not rows:
        return
    names = list(rows[-1]["processes"])
    print("\nper process every sample: RSS MiB / fds / threads / CPU %")
    print(f"{'t s':>5} " + " ".join(f"{n[:22]:>24}" for n in names))
    for row in rows:
        cells = []
        for n in names:
            p = row["processes"].get(n)
            cells.append(f"{p['rss_mib']:7.1f}/{p['fds']:3d}/{p['threads']:3d}/{p['cpu_pct']:5.1f}"
                         if p else "-")
        print(f"{row['t_s']:5d} " + " ".join(f"{c:>24}" for c in cells))
    print(f"\n{'t s':>5} {'sent':>8} {'skipped':>8} {'torn':>6} {'rtcp lost':>9} "
          f"{'decoded':>8} {'rx lost':>8} {'rx drops':>8} {'browser decoded':>16}")
    for row in rows:
        lat, rx, br = row["latency"] or {}, row["receiver"], row["browser"] or {}
        print(f"{row['t_s']:5d} {lat.get('frames_sent', '-'):>8} "
              f"{lat.get('frames_skipped', '-'):>8} {lat.get('frames_torn', '-'):>6} "
              f"{lat.get('frames_lost', '-'):>9} {rx['decoded']:>8} {rx['lost']:>8} "
              f"{rx.get('socket_drops', '-')!s:>8} {br.get('decoded', '-'):>16}")


def memory_matrix(seconds: float) -> dict[str, Any]:
    """RSS/VmLck/pinned per node, each rt_profile, detector off and on (if installed)."""
    results = {}
    for yolo in ([False, True] if yolo_available() else [False]):
        for profile in ("none", "pi5", "two_core"):
            out_dir = tempfile.mkdtemp(prefix=f"vr_soak_mem_{profile}_")
            ring = f"vr_soak_mem_{uuid.uuid4().hex[:8]}"
            budget: dict[str, dict[str, float]] = {}
            live = LiveGraph(out_dir, graph_arguments(ring, out_dir, fps=60, width=1280,
                                                      height=720, yolo=yolo,
                                                      rt_profile=profile))
            title = f"rt_profile:={profile}, detector {'on' if yolo else 'off'}"
            with live:
                if live.wait_decoding(90):
                    time.sleep(seconds)
                    budget = memory_budget(live)
            if not budget:  # e.g. pi5's CPU 2 on a 2-CPU machine: the node says so
                results[title] = {"failed": live.failed or "no frames decoded",
                                  "log": _last_error(live)}
                print(f"\n{title}: could not run: {results[title]}")
                continue
            print_budget(title, budget)
            results[title] = budget
    return results


def _last_error(live: LiveGraph) -> str:
    """The first FATAL/ERROR line any node logged (why a graph did not start)."""
    for name in live.node_names():
        for line in live.group.output(name).splitlines():
            if "[FATAL]" in line or "[ERROR]" in line:
                return line.strip()[:200]
    return ""


def main(argv: list[str] | None = None) -> int:
    """Command line; the last line printed is JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float,
                        default=float(os.environ.get("SOAK_S") or 600.0))
    parser.add_argument("--interval", type=float, default=10.0, help="seconds between samples")
    parser.add_argument("--fps", type=int, default=60)
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=720)
    parser.add_argument("--rt-profile", default="two_core", choices=("none", "pi5", "two_core"))
    parser.add_argument("--no-webrtc", action="store_true", help="no Chromium viewer")
    parser.add_argument("--memory-matrix", action="store_true",
                        help="only the memory budget per rt_profile, detector off/on")
    ns = parser.parse_args(argv)
    if ns.seconds <= 0 or ns.interval <= 0:
        parser.error("--seconds and --interval (SOAK_S) must be positive")
    if ns.memory_matrix:
        print(json.dumps(memory_matrix(min(ns.seconds, 20.0))))
        return 0
    yolo = yolo_available()
    if not yolo:
        print("[soak] the detector is off: YOLO=0 or Ultralytics is not installed",
              file=sys.stderr)
    result = run(ns.seconds, ns.interval, fps=ns.fps, width=ns.width, height=ns.height,
                 yolo=yolo, rt_profile=ns.rt_profile, webrtc=not ns.no_webrtc)
    print(json.dumps(result))
    return 0 if result["failed"] is None else 1


if __name__ == "__main__":
    raise SystemExit(main())
