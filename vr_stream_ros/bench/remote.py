"""Consumers on another host: what they cost the video path, what they get (root).

    python -m vr_stream_ros.bench.remote [--seconds 15] [--rounds 2]

Two network namespaces joined by a veth pair (graph/netns.py) stand in for two hosts:
camera_node + headset_bridge_node + receiver in one, consumers in the other (its own
/dev/shm, UDP-only Fast DDS profile). Variants, side by side in one run:

  video             the video path alone (1280x720 @ 30 fps): capture -> last datagram
                    sent (bridge recording) and capture -> decoded (receiver), p50/p99
  video+remote_sub  the same with a subscriber to image_raw/compressed on the other host
                    (rounds alternate the two, so drift in the machine's load hits both)
  jpeg_qNN          image_raw/compressed's bandwidth at a remote subscriber per quality
  detector_local    detection lag on /latency, detector on the camera's host (ring)
  detector_remote   the same detector and model on the other host (topic)

The machine is shared and noisy: read the differences within one run.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import tempfile
import time

from vr_stream_ros.graph.netns import TwoHosts
from vr_stream_ros.graph.processes import ProcessGroup, free_port, node_argv
from vr_stream_ros.latency.percentiles import summarize

W, H, FPS = 1280, 720, 30
WARMUP_S = 3.0
QUALITIES = (50, 80, 95)
DETECTOR = ("model:=yolo11n.yaml", "imgsz:=320", "threads:=1")
DETECTOR_LOAD_S = 25.0  # import torch, build and warm up the model, first frames


def _config(name: str) -> str:
    from vr_stream_ros.graph.launches import default_config_path
    return os.path.join(os.path.dirname(default_config_path()), name)


class Bench:
    """One pair of namespaces and a scratch directory; one method per variant."""

    def __init__(self, hosts: TwoHosts, tmp: str) -> None:
        self.hosts, self.tmp = hosts, tmp
        self.a_env = {"ROS_STATIC_PEERS": hosts.b.address}
        self.b_env = {"ROS_STATIC_PEERS": hosts.a.address,
                      "FASTRTPS_DEFAULT_PROFILES_FILE": _config("fastdds_lan_udp_only.xml")}
        self.runs = 0

    def _camera_host(self, group: ProcessGroup, label: str, *camera: str) -> tuple[str, str]:
        """camera + bridge (recording) + receiver in host a; (recording, receiver JSON)."""
        a, port, ring = self.hosts.a, free_port(), f"vr_bench_remote_{os.getpid()}"
        record = os.path.join(self.tmp, f"{label}.csv")
        summary = os.path.join(self.tmp, f"{label}_receiver.json")
        group.start("receiver", a.argv([sys.executable, "-m", "vr_stream_ros.tools.receiver",
                                        "--port", str(port), "--quiet", "--summary-json",
                                        summary]))
        group.start("camera_node", a.argv(node_argv(
            "camera_node", f"ring_name:={ring}", f"width:={W}", f"height:={H}", f"fps:={FPS}",
            *camera, ros_args=("--log-level", "warn")), self.a_env))
        group.start("headset_bridge_node", a.argv(node_argv(
            "headset_bridge_node", f"ring_name:={ring}", f"headset_port:={port}",
            f"record_path:={record}", "sdp_path:=''", ros_args=("--log-level", "warn")),
            self.a_env))
        return record, summary

    def _probe(self, group: ProcessGroup, host, env: dict, what: str, seconds: float
               ) -> dict:
        """topic_probe on ``host`` for ``seconds`` (after its first message); its JSON."""
        out = os.path.join(self.tmp, f"probe_{self.runs}_{what}.json")
        self.runs += 1
        proc = group.start(f"probe_{what}", host.argv(
            [sys.executable, "-m", "vr_stream_ros.ros.topic_probe", what, "--seconds",
             str(seconds), "--out", out], env))
        code = group.wait(proc, seconds + 60)
        if code != 0 or not os.path.exists(out):
            raise RuntimeError(f"topic_probe {what} exited with {code}:\n"
                               + group.output(f"probe_{what}")[-2000:])
        with open(out) as f:
            return json.load(f)

    def video(self, seconds: float, remote_sub: bool) -> dict:
        label = f"video{'_sub' if remote_sub else ''}_{self.runs}"
        self.runs += 1
        with ProcessGroup(os.path.join(self.tmp, label)) as group:
            record, summary = self._camera_host(group, label)
            if remote_sub:
                probe = self._probe(group, self.hosts.b, self.b_env, "compressed", seconds)
            else:
                probe = None
                time.sleep(seconds + WARMUP_S + 2)  # as long as the probe's start and run
            group.stop_all(timeout=20)
        with open(record) as f:
            rows = [r for r in csv.DictReader(f) if r.get("sent")]
        if probe:  # the frames sent while the remote subscriber was receiving
            first, last = probe["start_mono_ns"], probe["end_mono_ns"]
        else:
            first = int(rows[0]["capture"]) + WARMUP_S * 1e9 if rows else 0
            last = first + seconds * 1e9
        sent = [(int(r["sent"]) - int(r["capture"])) / 1e6 for r in rows
                if first <= int(r["capture"]) <= last]
        with open(summary) as f:
            rec = json.load(f)
        out = {"sent": summarize(sent).as_dict("_ms"), "frames_sent": len(sent),
               "decoded_p50_ms": rec["latency_ms"].get("p50"),
               "decoded_p99_ms": rec["latency_ms"].get("p99"),
               "frames_lost": rec["frames_lost"]}
        if probe:
            out["remote_sub"] = probe
        return out

    def bandwidth(self, quality: int, seconds: float) -> dict:
        label = f"jpeg_q{quality}"
        with ProcessGroup(os.path.join(self.tmp, label)) as group:
            self._camera_host(group, label, f"compressed_quality:={quality}")
            probe = self._probe(group, self.hosts.b, self.b_env, "compressed", seconds)
            group.stop_all(timeout=20)
        return probe

    def detector(self, where: str, seconds: float) -> dict:
        label = f"detector_{where}"
        host, env = ((self.hosts.a, self.a_env) if where == "local"
                     else (self.hosts.b, self.b_env))
        with ProcessGroup(os.path.join(self.tmp, label)) as group:
            self._camera_host(group, label)
            group.start("detector_node", host.argv(node_argv(
                "detector_node", f"ring_name:=vr_bench_remote_{os.getpid()}", *DETECTOR),
                env))
            time.sleep(DETECTOR_LOAD_S)
            probe = self._probe(group, self.hosts.a, self.a_env, "latency", seconds)
            group.stop_all(timeout=20)
            chose = [line for line in group.output("detector_node").splitlines()
                     if "frame source:" in line]
        stats = [s for s in probe["stats"] if "detection" in s["stages"]]
        lag_ms = [s["stages"]["detection"]["p50"] for s in stats]
        lag_frames = [s["detection_lag_frames"] for s in stats]
        return {"source": chose[0].split("frame source: ", 1)[1][:60] if chose else "?",
                "windows": len(stats),
                "detection_p50_ms": round(float(sorted(lag_ms)[len(lag_ms) // 2]), 1)
                if lag_ms else None,
                "lag_frames_mean": round(sum(lag_frames) / len(lag_frames), 2)
                if lag_frames else None}


def main(argv: list[str] | None = None) -> int:
    """Run every variant and print the tables and one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15.0, help="per variant (default 15)")
    parser.add_argument("--rounds", type=int, default=2, help="video / video+sub rounds")
    ns = parser.parse_args(argv)
    started = time.monotonic()
    figures: dict = {"video": [], "video+remote_sub": [], "bandwidth": {}, "detector": {}}
    with tempfile.TemporaryDirectory(prefix="vr_bench_remote_") as tmp, TwoHosts() as hosts:
        bench = Bench(hosts, tmp)
        print(f"[bench] {W}x{H} @ {FPS} fps; hosts {hosts.a.address} (camera) and "
              f"{hosts.b.address} (consumers); {ns.seconds:g} s per variant", flush=True)
        for _ in range(ns.rounds):
            for name, sub in (("video", False), ("video+remote_sub", True)):
                figures[name].append(bench.video(ns.seconds, remote_sub=sub))
                print(f"[bench] {name}: {json.dumps(figures[name][-1])}", flush=True)
        for q in QUALITIES:
            figures["bandwidth"][f"q{q}"] = bench.bandwidth(q, ns.seconds / 2)
            print(f"[bench] q{q}: {json.dumps(figures['bandwidth'][f'q{q}'])}", flush=True)
        for where in ("local", "remote"):
            figures["detector"][where] = bench.detector(where, ns.seconds)
            print(f"[bench] detector {where}: {json.dumps(figures['detector'][where])}",
                  flush=True)
    print(f"\n{'variant':18} {'round':>5} {'sent p50':>9} {'sent p99':>9} {'dec p50':>8} "
          f"{'dec p99':>8} {'lost':>5}  remote subscriber")
    for name in ("video", "video+remote_sub"):
        for i, r in enumerate(figures[name]):
            sub = r.get("remote_sub")
            got = (f"{sub['messages']} msgs, {sub['mbit_per_s']:.1f} Mbit/s" if sub else "")
            print(f"{name:18} {i:5} {r['sent']['p50_ms']:9.2f} {r['sent']['p99_ms']:9.2f} "
                  f"{r['decoded_p50_ms'] or 0:8.2f} {r['decoded_p99_ms'] or 0:8.2f} "
                  f"{r['frames_lost']:5}  {got}")
    print(f"\n{'JPEG quality':12} {'msgs/s':>7} {'KiB/frame':>10} {'Mbit/s':>7}")
    for q, b in figures["bandwidth"].items():
        rate = b["messages"] / b["seconds"] if b["seconds"] else 0.0
        print(f"{q:12} {rate:7.1f} {b['mean_kib']:10.1f} {b['mbit_per_s']:7.1f}")
    print(f"\n{'detector':8} {'windows':>7} {'lag p50 ms':>10} {'lag frames':>10}  source")
    for where, d in figures["detector"].items():
        print(f"{where:8} {d['windows']:7} {d['detection_p50_ms'] or 0:10.1f} "
              f"{d['lag_frames_mean'] or 0:10.2f}  {d['source']}")
    print(f"[bench] done in {time.monotonic() - started:.0f} s")
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
