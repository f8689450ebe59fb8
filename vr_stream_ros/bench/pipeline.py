"""`make bench`: the video path's variants side by side in one run, as ratios.

Variants (1280x720 rgb8, 60 fps, each in its own processes):
  ring          frame hand-off camera -> bridge through the shared-memory ring
  dds_reliable  the same as sensor_msgs/Image over Fast DDS defaults, reliable
  dds_best_effort                                      ... best effort
  dds_large_shm the same, reliable, with config/fastdds_large_shm.xml (32 MiB segment)
  ros_pipeline  camera_node + headset_bridge_node + receiver: capture -> last datagram sent
  floor         one process, same pattern, encoder and sender, no ROS: the floor
plus the seed's component checks (system configuration, copy methods, encode, UDP).
The machine is shared and noisy: compare the ratios, not the absolute numbers. The last
line printed is one JSON object with every figure (keys in the README).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import psutil
import simplejpeg

from vr_stream_ros.camera.base import FramePacer
from vr_stream_ros.camera.pattern import PatternGenerator
from vr_stream_ros.codecs.jpeg import JpegEncoder
from vr_stream_ros.graph.processes import ProcessGroup, free_port
from vr_stream_ros.latency.percentiles import summarize
from vr_stream_ros.net.senders import UdpRtpSender
from vr_stream_ros.ring.frame_ring import FrameRingReader, FrameRingWriter, FrameSpec
from vr_stream_ros.rtp.jpeg import JpegPacketizer
from vr_stream_ros.rtp.packet import rtp_timestamp

W, H, FPS = 1280, 720, 60.0
WARMUP = 30  # frames dropped from the start of every variant
DETECTOR_LOAD_S = 10.0  # detector_node: import torch + load the model, before the camera


@dataclass
class Result:
    """One variant's latency figures (ms) and costs."""

    name: str
    samples_ms: list[float]
    frames_expected: int
    frames_received: int
    cpu: dict[str, float] = field(default_factory=dict)  # process -> % of one core
    receiver_decoded: int | None = None  # frames the reference receiver decoded, if one ran

    def figures(self) -> dict:
        lost = max(0, self.frames_expected - self.frames_received)
        return {**summarize(self.samples_ms[WARMUP:] or self.samples_ms).as_dict("_ms"),
                "frames_lost": lost,
                "loss_pct": round(100 * lost / max(1, self.frames_expected), 1),
                "receiver_decoded": self.receiver_decoded,
                "cpu_pct": {k: round(v, 1) for k, v in self.cpu.items()}}


class CpuMeter:
    """CPU use of child processes, as % of one core over their lifetime."""

    def __init__(self) -> None:
        self.procs: dict[str, tuple[psutil.Process, float]] = {}

    def watch(self, name: str, pid: int) -> None:
        self.procs[name] = (psutil.Process(pid), time.monotonic())

    def sample(self) -> dict[str, float]:
        out = {}
        for name, (proc, started) in self.procs.items():
            try:
                t = proc.cpu_times()
                out[name] = 100 * (t.user + t.system) / max(1e-3, time.monotonic() - started)
            except psutil.Error:
                pass
        return out


def _python(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def _receiver_args(port: int, seconds: float, summary: str) -> tuple[str, ...]:
    return ("--port", str(port), "--quiet", "--duration", str(seconds), "--summary-json",
            summary)


def _decoded(summary: str) -> int | None:
    """Frames the receiver decoded, from its --summary-json (None if it wrote none)."""
    try:
        with open(summary) as f:
            return int(json.load(f)["frames_decoded"])
    except (OSError, ValueError, KeyError):
        return None


# -- ring -------------------------------------------------------------------------------
def ring_writer(name: str, frames: int) -> None:
    """Worker: renders straight into ring slots at 60 fps (what camera_node does)."""
    pattern = PatternGenerator(W, H)
    pacer = FramePacer(FPS)
    with FrameRingWriter(name, FrameSpec(W, H, 3)) as ring:
        time.sleep(1.0)  # let the reader attach
        for _ in range(frames):
            loan = ring.loan()
            capture = pacer.wait()
            pattern.render_into(loan.array, loan.seq, capture)
            ring.publish(loan, capture)
        time.sleep(0.5)


def ring_reader(name: str, frames: int, out: str) -> None:
    """Worker: publish -> holding a valid view, as the bridge does."""
    reader = FrameRingReader.wait_for(name, timeout=10)
    samples, seen, last = [], 0, -1
    deadline = time.monotonic() + frames / FPS + 5
    while seen < frames and time.monotonic() < deadline:
        seq = reader.wait_newer(last, timeout=1.0)
        if seq is None:
            continue
        view = reader.read(seq)
        now = time.monotonic_ns()
        if view is not None:
            samples.append(now - view.publish_ns)
            seen += 1
        last = seq
    reader.close()
    with open(out, "w") as f:
        json.dump({"latency_ns": samples, "received": seen}, f)


def _pair(tmp: str, name: str, writer: list[str], reader: list[str], out: str, frames: int,
          env: dict | None = None) -> Result:
    meter = CpuMeter()
    with ProcessGroup(os.path.join(tmp, name), env) as group:
        r = group.start("reader", reader)
        w = group.start("writer", writer)
        meter.watch("reader", r.pid)
        meter.watch("writer", w.pid)
        time.sleep(frames / FPS * 0.8)
        cpu = meter.sample()
        for p in (w, r):
            group.wait(p, timeout=frames / FPS + 30)
    with open(out) as f:
        data = json.load(f)
    return Result(name, [s / 1e6 for s in data["latency_ns"]], frames, data["received"], cpu)


def bench_ring(tmp: str, frames: int) -> Result:
    name = f"vr_bench_{os.getpid()}"
    out = os.path.join(tmp, "ring.json")
    me = "vr_stream_ros.bench.pipeline"
    return _pair(tmp, "ring", _python(me, "--worker", "ring-writer", name, str(frames)),
                 _python(me, "--worker", "ring-reader", name, str(frames), out), out, frames)


def bench_dds(tmp: str, frames: int, reliability: str, profile: str | None) -> Result:
    label = "dds_large_shm" if profile else f"dds_{reliability}"
    out = os.path.join(tmp, f"{label}.json")
    env = dict(os.environ)
    env["ROS_DOMAIN_ID"] = str(150 + os.getpid() % 50)
    if profile:
        env["FASTRTPS_DEFAULT_PROFILES_FILE"] = profile
    common = ["--reliability", reliability, "--frames", str(frames)]
    worker = "vr_stream_ros.ros.bench_dds"
    return _pair(tmp, label, _python(worker, "pub", *common),
                 _python(worker, "sub", *common, "--out", out), out, frames, env)


# -- whole pipeline vs the single-process floor ---------------------------------------------
def bench_ros_pipeline(tmp: str, seconds: float, camera_params: tuple[str, ...] = (),
                       bridge_params: tuple[str, ...] = (), label: str = "ros_pipeline",
                       detector_params: tuple[str, ...] | None = None) -> Result:
    """camera_node + headset_bridge_node + receiver (+ detector_node when
    ``detector_params`` is given); capture -> last datagram sent."""
    port, ring = free_port(), f"vr_bench_pipe_{os.getpid()}"
    record = os.path.join(tmp, f"{label}.csv")
    summary = os.path.join(tmp, f"{label}_receiver.json")
    env = dict(os.environ, ROS_DOMAIN_ID=str(200 + os.getpid() % 30))
    ros = ("--log-level", "warn")
    ring_param = f"ring_name:={ring}"
    meter = CpuMeter()
    with ProcessGroup(os.path.join(tmp, label), env) as group:
        receiver = group.receiver(*_receiver_args(port, seconds + 5, summary))
        detector = None
        if detector_params is not None:
            # Loaded first (importing torch is itself a CPU burst), then waiting for the
            # ring: the video path then runs beside a detector already flat out.
            detector = group.node("detector_node", ring_param, "ring_wait_s:=120",
                                  *detector_params, ros_args=ros)
            time.sleep(DETECTOR_LOAD_S)
        camera = group.node("camera_node", ring_param, *camera_params, ros_args=ros)
        bridge = group.node("headset_bridge_node", ring_param, f"headset_port:={port}",
                            f"record_path:={record}", "sdp_path:=''", *bridge_params,
                            ros_args=ros)
        for name, proc in (("camera_node", camera), ("headset_bridge_node", bridge),
                           ("receiver", receiver), ("detector_node", detector)):
            if proc is not None:
                meter.watch(name, proc.pid)
        time.sleep(seconds)
        cpu = meter.sample()
        group.stop_all(timeout=20)  # the bridge writes the recording as it exits
    with open(record) as f:
        rows = list(csv.DictReader(f))
    samples = [(int(r["sent"]) - int(r["capture"])) / 1e6 for r in rows if r.get("sent")]
    expected = int(rows[-1]["frame"]) - int(rows[0]["frame"]) + 1 if rows else 0
    return Result(label, samples, expected, len(samples), cpu, _decoded(summary))


def bench_floor(tmp: str, seconds: float) -> Result:
    """Render, encode, packetize, send in one process: what the nodes must not add to.

    Each frame carries its own 90 kHz RTP timestamp, as the bridge's do, so the receiver
    reassembles and decodes every frame (with one timestamp for all it took each new
    frame for a straggler of the first and dropped it: far less work beside the floor
    than beside the pipeline)."""
    port = free_port()
    summary = os.path.join(tmp, "floor_receiver.json")
    meter = CpuMeter()
    samples = []
    n = int(seconds * FPS)
    with ProcessGroup(os.path.join(tmp, "floor")) as group:
        receiver = group.receiver(*_receiver_args(port, seconds + 3, summary))
        time.sleep(0.5)
        pattern, pacer = PatternGenerator(W, H), FramePacer(FPS)
        encoder, packetizer = JpegEncoder(80, "420", "rgb8"), JpegPacketizer(ssrc=1)
        sender = UdpRtpSender("127.0.0.1", port)
        frame = np.empty((H, W, 3), np.uint8)
        meter.watch("floor", os.getpid())
        meter.watch("receiver", receiver.pid)
        for i in range(n):
            capture = pacer.wait()
            pattern.render_into(frame, i, capture)
            jpeg = encoder.encode(frame)
            packets = packetizer.packetize(jpeg, rtp_timestamp(capture), capture, i)
            samples.append((sender.send_frame(packets).done_ns - capture) / 1e6)
        cpu = meter.sample()
        sender.close()
        group.stop_all(timeout=20)
    return Result("floor", samples, n, len(samples), cpu, _decoded(summary))


# -- the seed's component checks -------------------------------------------------------------
def _time_ms(fn: Callable[[], object], repeat: int = 50) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter_ns()
        fn()
        times.append(time.perf_counter_ns() - t)
    return float(np.median(times)) / 1e6


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return "n/a"


def components() -> dict:
    """System configuration and per-component timings (medians, ms)."""
    frame = PatternGenerator(W, H).render(1, 1)
    dst = np.empty_like(frame)
    jpeg = simplejpeg.encode_jpeg(frame, 80, "RGB", "420")
    packets = JpegPacketizer(1).packetize(jpeg, 0, 0, 0)
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    rx.bind(("127.0.0.1", 0))
    tx = UdpRtpSender("127.0.0.1", rx.getsockname()[1])

    def udp_frame() -> None:
        tx.send_frame(packets)
        for _ in packets:
            rx.recv(65536)

    swap = _read("/proc/meminfo")
    swap_kb = next((int(line.split()[1]) for line in swap.splitlines()
                    if line.startswith("SwapTotal")), 0) if swap != "n/a" else -1
    result = {
        "system": {
            "cpus": os.cpu_count(), "isolated_cpus": _read("/sys/devices/system/cpu/isolated")
            or "none", "rtprio_limit": resource.getrlimit(resource.RLIMIT_RTPRIO)[0],
            "root": os.geteuid() == 0, "swap_kb": swap_kb,
            "governor": _read("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor"),
            "preempt_rt": _read("/sys/kernel/realtime") == "1"},
        "copy_ms": {"np_copyto": _time_ms(lambda: np.copyto(dst, frame)),
                    "tobytes": _time_ms(frame.tobytes),
                    "memoryview": _time_ms(lambda: memoryview(frame))},
        "encode_jpeg_ms": _time_ms(lambda: simplejpeg.encode_jpeg(frame, 80, "RGB", "420")),
        "decode_jpeg_ms": _time_ms(lambda: simplejpeg.decode_jpeg(jpeg)),
        "packetize_ms": _time_ms(lambda: JpegPacketizer(1).packetize(jpeg, 0, 0, 0)),
        "udp_loopback_frame_ms": _time_ms(udp_frame),
        "jpeg_bytes": len(jpeg), "packets_per_frame": len(packets),
    }
    tx.close()
    rx.close()
    return result


# -- report -----------------------------------------------------------------------------------
def _ratio(a: float, b: float) -> float:
    return round(a / b, 2) if b > 0 else float("nan")


def main(argv: list[str] | None = None) -> int:
    """Run every variant and print the table, the ratios and the JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=6.0, help="per variant (default 6)")
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    ns = parser.parse_args(argv)
    if ns.worker:
        kind, *rest = ns.worker
        if kind == "ring-writer":
            ring_writer(rest[0], int(rest[1]))
        else:
            ring_reader(rest[0], int(rest[1]), rest[2])
        return 0
    from vr_stream_ros.graph.launches import default_config_path
    profile = os.path.join(os.path.dirname(default_config_path()), "fastdds_large_shm.xml")
    frames = int(ns.seconds * FPS)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="vr_bench_") as tmp:
        print(f"[bench] {W}x{H} rgb8 @ {FPS:g} fps, {ns.seconds:g} s per variant, "
              f"{os.cpu_count()} CPUs (shared: read the ratios)", flush=True)
        results = [bench_ring(tmp, frames)]
        for reliability, prof in (("reliable", None), ("best_effort", None), ("reliable", profile)):
            results.append(bench_dds(tmp, frames, reliability, prof))
        results.append(bench_ros_pipeline(tmp, ns.seconds + 2))
        results.append(bench_floor(tmp, ns.seconds))
    comp = components()
    figures = {r.name: r.figures() for r in results}
    ring, floor, pipe = figures["ring"], figures["floor"], figures["ros_pipeline"]
    ratios = {
        "dds_reliable_vs_ring_p50": _ratio(figures["dds_reliable"]["p50_ms"], ring["p50_ms"]),
        "dds_best_effort_vs_ring_p50": _ratio(figures["dds_best_effort"]["p50_ms"],
                                              ring["p50_ms"]),
        "dds_large_shm_vs_ring_p50": _ratio(figures["dds_large_shm"]["p50_ms"], ring["p50_ms"]),
        "pipeline_vs_floor_p50": _ratio(pipe["p50_ms"], floor["p50_ms"]),
        "pipeline_vs_floor_p99": _ratio(pipe["p99_ms"], floor["p99_ms"]),
    }
    estimate = ring["p50_ms"] + comp["encode_jpeg_ms"] + comp["packetize_ms"] + \
        comp["udp_loopback_frame_ms"] + comp["decode_jpeg_ms"]
    print(f"\n{'variant':18} {'p50':>8} {'p95':>8} {'p99':>8} {'max':>8} {'lost':>7} "
          f"{'decoded':>8}  cpu % (of one core)")
    for name, f in figures.items():
        cpu = ", ".join(f"{k} {v:.0f}" for k, v in f["cpu_pct"].items())
        decoded = "" if f["receiver_decoded"] is None else f["receiver_decoded"]
        print(f"{name:18} {f['p50_ms']:8.3f} {f['p95_ms']:8.3f} {f['p99_ms']:8.3f} "
              f"{f['max_ms']:8.3f} {f['loss_pct']:6.1f}% {decoded:>8}  {cpu}")
    print("\nratios: " + ", ".join(f"{k} {v}" for k, v in ratios.items()))
    print(f"components (median ms): encode {comp['encode_jpeg_ms']:.2f}, decode "
          f"{comp['decode_jpeg_ms']:.2f}, packetize {comp['packetize_ms']:.3f}, UDP loopback "
          f"frame {comp['udp_loopback_frame_ms']:.3f}, np.copyto {comp['copy_ms']['np_copyto']:.2f}"
          f", tobytes {comp['copy_ms']['tobytes']:.2f}; system {comp['system']}")
    print(f"estimated capture->decoded on this machine, without the camera's own latency: "
          f"{estimate:.2f} ms")
    print(f"[bench] done in {time.monotonic() - started:.0f} s")
    print(json.dumps({"variants": figures, "ratios": ratios, "components": comp,
                      "estimated_total_ms": round(estimate, 3),
                      "resolution": [W, H], "fps": FPS}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
