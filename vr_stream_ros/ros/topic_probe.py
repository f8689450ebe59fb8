"""A probe for benches and two-host checks: what arrives on a topic, as JSON.

    python -m vr_stream_ros.ros.topic_probe compressed --seconds 10 --out c.json
    python -m vr_stream_ros.ros.topic_probe latency --seconds 10 --out l.json

``compressed`` subscribes to ``image_raw/compressed`` as a remote consumer does (best
effort, keep last 1) and counts messages and bytes; ``latency`` records each
LatencyStats on ``latency`` (its detection figures and stage p50/p99s).
"""

from __future__ import annotations

import argparse
import json
import time

import rclpy
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage

from vr_stream_ros.msg import LatencyStats
from vr_stream_ros.ros.frame_source import NEWEST_ONLY


def _latency(msg: LatencyStats) -> dict:
    return {"mono_ns": time.monotonic_ns(), "fps": msg.fps, "frames_sent": msg.frames_sent,
            "frames_skipped": msg.frames_skipped, "frames_dropped": msg.frames_dropped,
            "frames_torn": msg.frames_torn, "frames_lost": msg.frames_lost,
            "detections_sent": msg.detections_sent,
            "detection_lag_frames": msg.detection_lag_frames,
            "eye_skew_p50_ms": msg.eye_skew_p50_ms, "eye_skew_p99_ms": msg.eye_skew_p99_ms,
            "stereo_pairs_dropped": msg.stereo_pairs_dropped,
            "stages": {s.name: {"p50": s.p50_ms, "p99": s.p99_ms, "samples": s.samples}
                       for s in [*msg.stages, msg.end_to_end]}}


def main(argv: list[str] | None = None) -> int:
    """Command line: probe for --seconds, then write --out."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("compressed", "latency"))
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--out", required=True)
    parser.add_argument("--lines", action="store_true",
                        help="also print each message as a JSON line as it comes (soak, chaos)")
    ns = parser.parse_args(argv)
    rclpy.init()
    node = rclpy.create_node("topic_probe")
    got: list = []
    if ns.what == "compressed":
        node.create_subscription(CompressedImage, "image_raw/compressed",
                                 lambda m: got.append(len(m.data)), NEWEST_ONLY)
    else:
        def on_latency(msg: LatencyStats) -> None:
            got.append(_latency(msg))
            if ns.lines:
                print(json.dumps(got[-1]), flush=True)
        node.create_subscription(LatencyStats, "latency", on_latency,
                                 QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
    first_by = time.monotonic() + 30.0
    while not got and time.monotonic() < first_by:  # counted from the first message:
        rclpy.spin_once(node, timeout_sec=0.1)     # discovery is not the topic's rate
    got.clear()
    start, start_ns = time.monotonic(), time.monotonic_ns()
    while time.monotonic() - start < ns.seconds:
        rclpy.spin_once(node, timeout_sec=0.1)
    elapsed = time.monotonic() - start
    span = {"start_mono_ns": start_ns, "end_mono_ns": time.monotonic_ns()}
    out = ({**span, "messages": len(got), "seconds": elapsed, "bytes": sum(got),
            "mbit_per_s": sum(got) * 8 / 1e6 / elapsed,
            "mean_kib": sum(got) / len(got) / 1024 if got else 0.0}
           if ns.what == "compressed" else {**span, "stats": got})
    with open(ns.out, "w") as f:
        json.dump(out, f)
    node.destroy_node()
    rclpy.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
