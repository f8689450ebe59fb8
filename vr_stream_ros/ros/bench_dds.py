"""Benchmark worker: 1280x720 rgb8 sensor_msgs/Image between two processes over DDS.

    python -m vr_stream_ros.ros.bench_dds pub|sub --reliability reliable|best_effort ...

The publisher stamps each Image with CLOCK_MONOTONIC before filling it (the copy into
the message is part of what DDS costs); the subscriber records now - stamp when its
callback holds the message: the same hand-off the ring does with one write.
"""

from __future__ import annotations

import argparse
import json
import time

import rclpy
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image

from vr_stream_ros.camera.pattern import PatternGenerator


def _qos(reliability: str) -> QoSProfile:
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1 if reliability == "best_effort"
                      else 5, reliability=ReliabilityPolicy.BEST_EFFORT
                      if reliability == "best_effort" else ReliabilityPolicy.RELIABLE)


def publish(args: argparse.Namespace) -> None:
    node = rclpy.create_node("bench_image_pub")
    pub = node.create_publisher(Image, "bench_image", _qos(args.reliability))
    frame = PatternGenerator(args.width, args.height).render(0, 0)
    deadline = time.monotonic() + args.wait
    while pub.get_subscription_count() == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    period = 1.0 / args.fps
    start = time.monotonic()
    for n in range(args.frames):
        msg = Image(height=args.height, width=args.width, encoding="rgb8",
                    step=args.width * 3)
        t = time.monotonic_ns()
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(t, 1_000_000_000)
        msg.header.frame_id = str(n)
        msg.data = frame.tobytes()
        pub.publish(msg)
        time.sleep(max(0.0, start + (n + 1) * period - time.monotonic()))
    time.sleep(0.5)
    node.destroy_node()


def subscribe(args: argparse.Namespace) -> None:
    node = rclpy.create_node("bench_image_sub")
    samples: list[int] = []
    frames: set[int] = set()

    def on_image(msg: Image) -> None:
        now = time.monotonic_ns()
        samples.append(now - (msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec))
        frames.add(int(msg.header.frame_id))

    node.create_subscription(Image, "bench_image", on_image, _qos(args.reliability))
    deadline = time.monotonic() + args.wait + args.frames / args.fps + 3.0
    while time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.1)
    with open(args.out, "w") as f:
        json.dump({"latency_ns": samples, "received": len(frames)}, f)
    node.destroy_node()


def main(argv: list[str] | None = None) -> int:
    """Run the publisher or the subscriber side."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("role", choices=("pub", "sub"))
    parser.add_argument("--reliability", choices=("reliable", "best_effort"), default="reliable")
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--fps", type=float, default=60.0)
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=720)
    parser.add_argument("--wait", type=float, default=10.0, help="seconds to wait for the peer")
    parser.add_argument("--out", default="")
    args = parser.parse_args(argv)
    rclpy.init()
    try:
        (publish if args.role == "pub" else subscribe)(args)
    finally:
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
