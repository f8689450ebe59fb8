"""headset_bridge_node: newest ring frame -> JPEG -> RTP -> UDP/TCP to the headset.

The video path runs on its own thread and never queues: it waits on the ring's
doorbell, takes the newest frame (counting the ones it skipped), encodes straight
from the shared-memory view, checks the slot was not overwritten meanwhile, and
sends. The ROS executor only publishes the latency stats once per period.
"""

from __future__ import annotations

import os
import random
import threading
import time

from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy

from vr_stream_ros.frame_ring import FrameRingReader
from vr_stream_ros.jpeg_encoder import JpegEncoder
from vr_stream_ros.msg import LatencyStats, StageLatency
from vr_stream_ros.node_params import BRIDGE_PARAMS
from vr_stream_ros.param_spec import ParameterError
from vr_stream_ros.ros.params import declare_and_validate
from vr_stream_ros.ros.runner import run_node
from vr_stream_ros.rtp import (
    ABS_CAPTURE_TIME_URI,
    EXT_ABS_CAPTURE_TIME,
    EXT_FRAME_SEQ,
    FRAME_SEQ_URI,
)
from vr_stream_ros.rtp_jpeg import JpegPacketizer
from vr_stream_ros.sdp import make_sdp
from vr_stream_ros.stage_stats import PipelineStats
from vr_stream_ros.transport import open_sender

NODE_NAME = "headset_bridge_node"
STAGES = ("capture_to_ring", "ring_to_bridge", "encode", "send", "end_to_end")


def rtp_timestamp(capture_ns: int) -> int:
    """90 kHz RTP timestamp of a capture time."""
    return (capture_ns * 9 // 100_000) & 0xFFFFFFFF


class HeadsetBridgeNode(Node):
    """Streams the newest frame of the ring to the headset and reports latency."""

    def __init__(self) -> None:
        super().__init__(NODE_NAME)
        p = declare_and_validate(self, BRIDGE_PARAMS)
        self.fatal_error: str | None = None
        self._p = p
        self.get_logger().info(f"waiting up to {p['ring_wait_s']:g} s for ring "
                               f"'{p['ring_name']}' (started by camera_node)")
        self._reader = FrameRingReader.wait_for(p["ring_name"], timeout=p["ring_wait_s"])
        spec = self._reader.spec
        if spec.channels != 3:
            self._reader.close()
            raise ParameterError(f"ring '{p['ring_name']}' holds {spec.channels}-channel frames; "
                                 "the bridge encodes rgb8/bgr8 only")
        self._encoder = JpegEncoder(p["jpeg_quality"], p["chroma_subsampling"],
                                    self._reader.pixel_format or "rgb8")
        self._packetizer = JpegPacketizer(ssrc=random.getrandbits(32), mtu=p["mtu"])
        self._sender = open_sender(
            p["transport"], p["headset_ip"], p["headset_port"], dscp=p["dscp"],
            sndbuf=p["sndbuf_kib"] * 1024, **self._udp_pacing(p))
        if p["sdp_path"]:
            self._write_sdp(p)
        self._stats = PipelineStats(STAGES)
        self._lock = threading.Lock()
        self.frames_sent = self.frames_skipped = self.frames_dropped = self.frames_torn = 0
        self._window_start = time.monotonic()
        self._window_frames = 0
        self._stats_pub = self.create_publisher(
            LatencyStats, "latency", QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
        self.create_timer(p["stats_period_s"], self._publish_stats)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._video_loop, name="video", daemon=True)
        self._thread.start()
        self.get_logger().info(
            f"ring {spec.width}x{spec.height} -> JPEG q{p['jpeg_quality']} -> RTP/"
            f"{p['transport'].upper()} {p['headset_ip']}:{p['headset_port']} "
            f"(mtu {p['mtu']}, dscp {p['dscp']}"
            + (f", paced {p['max_rate_mbps']:g} Mbit/s" if p["max_rate_mbps"] else "") + ")")

    @staticmethod
    def _udp_pacing(p: dict) -> dict:
        if p["transport"] != "udp":
            return {}
        return {"max_rate_bps": p["max_rate_mbps"] * 1e6, "burst_bytes": p["burst_kib"] * 1024}

    def _write_sdp(self, p: dict) -> None:
        sdp = make_sdp(p["headset_ip"], p["headset_port"],
                       extmap={EXT_ABS_CAPTURE_TIME: ABS_CAPTURE_TIME_URI,
                               EXT_FRAME_SEQ: FRAME_SEQ_URI})
        tmp = p["sdp_path"] + ".tmp"
        with open(tmp, "w") as f:
            f.write(sdp)
        os.replace(tmp, p["sdp_path"])
        self.get_logger().info(f"SDP for receivers written to {p['sdp_path']}")

    def _video_loop(self) -> None:
        reader, stats = self._reader, self._stats
        last = reader.latest_seq()
        while not self._stop.is_set():
            seq = reader.wait_newer(last, timeout=0.25)
            if seq is None:
                continue
            view = reader.read(seq)
            pickup_ns = time.monotonic_ns()
            # seq < last: the camera restarted and counts from 0 again.
            skipped = seq - last - 1 if 0 <= last < seq else 0
            last = seq
            if view is None:  # overwritten between the doorbell and the read
                with self._lock:
                    self.frames_torn += 1
                continue
            jpeg = self._encoder.encode(view.array)
            encoded_ns = time.monotonic_ns()
            if not reader.is_intact(view):  # the writer lapped us while we encoded
                with self._lock:
                    self.frames_torn += 1
                continue
            packets = self._packetizer.packetize(
                jpeg, rtp_timestamp(view.capture_ns), view.capture_ns, seq)
            result = self._sender.send_frame(packets)
            with self._lock:
                self.frames_skipped += skipped
                if result.dropped:
                    self.frames_dropped += 1
                    continue
                self.frames_sent += 1
                self._window_frames += 1
                stats.add("capture_to_ring", view.publish_ns - view.capture_ns)
                stats.add("ring_to_bridge", pickup_ns - view.publish_ns)
                stats.add("encode", encoded_ns - pickup_ns)
                stats.add("send", result.done_ns - encoded_ns)
                stats.add("end_to_end", result.done_ns - view.capture_ns)

    def _publish_stats(self) -> None:
        now = time.monotonic()
        with self._lock:
            summaries = self._stats.summaries()
            self._stats.clear()
            window = now - self._window_start
            frames, self._window_frames, self._window_start = self._window_frames, 0, now
            msg = LatencyStats(
                window_s=window, fps=frames / window if window > 0 else 0.0,
                frames_sent=self.frames_sent, frames_skipped=self.frames_skipped,
                frames_dropped=self.frames_dropped, frames_lost=0)
        msg.header.stamp = self.get_clock().now().to_msg()
        stages = [StageLatency(name=s.name, p50_ms=s.p50_ms, p95_ms=s.p95_ms, p99_ms=s.p99_ms,
                               max_ms=s.max_ms, mean_ms=s.mean_ms, samples=s.samples)
                  for s in summaries]
        msg.end_to_end, msg.stages = stages[-1], stages[:-1]
        self._stats_pub.publish(msg)

    def close(self) -> None:
        """Stop the video thread and release the ring and the socket."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2.0)
        self._sender.close()
        self._reader.close()


def main(args: list[str] | None = None) -> int:
    """Entry point of ``ros2 run vr_stream_ros headset_bridge_node``."""
    return run_node(NODE_NAME, HeadsetBridgeNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
