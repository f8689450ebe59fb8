"""headset_bridge_node: newest ring frame -> a sink (RTP/JPEG over UDP or TCP, or WebRTC).

The node is a shell: parameters, the sink for ``transport``, the video thread (one
VideoLoop, sinks/video_loop.py), the detections subscription, and once per period the
LatencyStats on ``latency`` and a status on /diagnostics (ros/latency_stats.py).
"""

from __future__ import annotations

import os
import random
import time

from diagnostic_msgs.msg import DiagnosticArray
from rclpy.qos import QoSProfile, ReliabilityPolicy

from vr_stream_ros.codecs.jpeg import JpegEncoder
from vr_stream_ros.graph.node_params import BRIDGE_PARAMS
from vr_stream_ros.graph.param_spec import ParameterError
from vr_stream_ros.latency.profiler import LatencyProfiler
from vr_stream_ros.msg import DetectionArray, LatencyStats
from vr_stream_ros.net.senders import open_sender, resolve_ipv4
from vr_stream_ros.ring.frame_ring import FrameRingReader, FrameSpec
from vr_stream_ros.ring.newest import NewestFrames
from vr_stream_ros.ros.latency_stats import latency_diagnostic, latency_stats
from vr_stream_ros.ros.ring_node import RingNode
from vr_stream_ros.ros.runner import run_node
from vr_stream_ros.rtp.adapt import LinkAdapter
from vr_stream_ros.rtp.packet import FRAME_EXTMAP
from vr_stream_ros.rtp.sdp import make_sdp
from vr_stream_ros.sinks.base import FrameSink
from vr_stream_ros.sinks.rtp import NackConfig, RtpJpegSink, TcpRtpJpegSink
from vr_stream_ros.sinks.stream_stats import StreamStats
from vr_stream_ros.sinks.video_loop import VideoLoop

NODE_NAME = "headset_bridge_node"
FALLBACK_FPS = 60.0
"""H.264 rate control's frame rate when the ring does not say (a camera_node before
the ring carried its fps)."""


class HeadsetBridgeNode(RingNode):
    """Streams the newest frame of the ring to the headset and reports latency."""

    def __init__(self) -> None:
        super().__init__(NODE_NAME, BRIDGE_PARAMS)
        p = self.p
        self.get_logger().info(f"waiting up to {p['ring_wait_s']:g} s for ring "
                               f"'{p['ring_name']}' (started by camera_node)")
        self._reader = FrameRingReader.wait_for(p["ring_name"], timeout=p["ring_wait_s"])
        try:
            spec = self._check_ring(self._reader.spec)
            profiler = LatencyProfiler() if p["record_path"] else None
            self._sink = self._open_sink(spec, profiler)
        except BaseException:
            self._reader.close()
            raise
        self._loop = VideoLoop(NewestFrames(self._reader), self._sink, self._stats,
                               self.between_frames)
        self._stats_pub = self.create_publisher(
            LatencyStats, "latency", QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.create_timer(p["stats_period_s"], self._publish_stats)
        if p["send_detections"]:  # detector_node's boxes go to the headset with the video
            self.create_subscription(DetectionArray, "detections", self._on_detections,
                                     QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE))
        self.start_worker("video", lambda: self._loop.run(self._stop))
        self.get_logger().info(self._describe(spec))
        if p["transport"] == "webrtc":  # the token on this terminal only: log lines also
            # go out on /rosout, which every participant of the DDS domain can read
            print(f"[headset_bridge_node] open {self._sink.server.url}", flush=True)

    def _check_ring(self, spec: FrameSpec) -> FrameSpec:
        name = self.p["ring_name"]
        webrtc = self.p["transport"] == "webrtc"
        if spec.layout != "mono" and not webrtc and max(spec.width, spec.height) > 2040:
            side = "width" if spec.layout == "side_by_side" else "height"
            raise ParameterError(
                f"camera_node parameters 'stereo_layout'/'{side}': ring '{name}' holds a "
                f"{spec.layout} pair of {spec.width}x{spec.height}, over RTP/JPEG's 2040 px; "
                f"use stereo_layout:={'top_bottom' if side == 'width' else 'side_by_side'} "
                "or transport:=webrtc")
        stereo_h264 = webrtc and spec.layout != "mono"  # H.264 has no 2040 px limit
        if spec.width % 8 or spec.height % 8 or (
                not stereo_h264 and (spec.width > 2040 or spec.height > 2040)):
            raise ParameterError(
                f"ring '{name}' holds {spec.width}x{spec.height} frames; RTP/JPEG carries "
                "widths and heights that are multiples of 8 up to 2040 (set camera_node "
                "width/height)")
        if spec.channels != 3:
            raise ParameterError(f"ring '{name}' holds {spec.channels}-channel frames; "
                                 "the bridge encodes rgb8/bgr8 only")
        return spec

    def _open_sink(self, spec: FrameSpec, profiler: LatencyProfiler | None) -> FrameSink:
        p = self.p
        if p["transport"] == "webrtc":
            return self._open_webrtc(spec, profiler)
        self._stats = StreamStats(RtpJpegSink.stages, profiler, stereo=spec.layout != "mono")
        encoder = JpegEncoder(p["jpeg_quality"], p["chroma_subsampling"], spec.pixel_format,
                              p["jpeg_restart_interval"], p["jpeg_threads"])
        plan = encoder.bands(spec.height, spec.width)
        self._jpeg_bands = len(plan[0]) if plan else 1
        pacing = {"max_rate_bps": p["max_rate_mbps"] * 1e6,
                  "burst_bytes": p["burst_kib"] * 1024} if p["transport"] == "udp" else \
            {"congestion_control": p["tcp_congestion"]}
        sender = open_sender(p["transport"], p["headset_ip"], p["headset_port"],
                             dscp=p["dscp"], sndbuf=p["sndbuf_kib"] * 1024, **pacing)
        cls = TcpRtpJpegSink if p["transport"] == "tcp" else RtpJpegSink
        nack = NackConfig(p["nack"] and p["transport"] == "udp", p["nack_history_ms"],
                          p["nack_deadline_ms"], p["nack_max_resend_per_s"])
        adapter = LinkAdapter(p["jpeg_quality"], min_quality=p["adapt_min_quality"],
                              log=self.get_logger().info,
                              halve=spec.width % 16 == 0 and spec.height % 16 == 0) \
            if p["adapt"] else None
        sink = cls(sender, encoder, ssrc=random.getrandbits(32), mtu=p["mtu"],
                   rtcp_interval_s=p["rtcp_interval_s"], stats=self._stats, nack=nack,
                   adapter=adapter, fec=p["fec"])
        if p["sdp_path"]:
            self._write_sdp(spec.layout)
        return sink

    def _open_webrtc(self, spec: FrameSpec, profiler: LatencyProfiler | None) -> FrameSink:
        p = self.p
        try:
            from vr_stream_ros.codecs.h264 import H264Encoder
            from vr_stream_ros.sinks.webrtc import WebRtcSink
            from vr_stream_ros.webrtc.server import WebRtcConfig
        except ImportError as exc:
            raise ParameterError(f"parameter 'transport': webrtc needs aiortc and aiohttp "
                                 f"({exc}); pip install aiortc aiohttp") from None
        if p["min_bitrate_mbps"] > p["bitrate_mbps"]:
            raise ParameterError(f"parameter 'min_bitrate_mbps': {p['min_bitrate_mbps']:g} "
                                 f"exceeds bitrate_mbps {p['bitrate_mbps']:g}; expected <= it")
        if bool(p["webrtc_cert"]) != bool(p["webrtc_key"]):
            raise ParameterError("parameters 'webrtc_cert' and 'webrtc_key': give both "
                                 "(PEM files) or neither (a self-signed certificate)")
        fps = spec.fps
        if not fps:
            fps = FALLBACK_FPS
            self.get_logger().warn(f"ring '{p['ring_name']}' does not carry its frame rate "
                                   f"(an older camera_node): H.264 rate control assumes "
                                   f"{fps:g} fps")
        self._fps = fps
        self._stats = StreamStats(WebRtcSink.stages, profiler, stereo=spec.layout != "mono")
        encoder = H264Encoder(spec.width, spec.height, fps, int(p["bitrate_mbps"] * 1e6),
                              p["keyframe_interval"], spec.pixel_format)
        config = WebRtcConfig(bind=p["webrtc_bind"], port=p["webrtc_port"],
                              token=p["webrtc_token"], max_viewers=p["max_viewers"],
                              quad=p["vr_quad"], tls=p["webrtc_tls"],
                              cert_file=p["webrtc_cert"], key_file=p["webrtc_key"],
                              max_playout_delay_ms=p["webrtc_max_playout_delay_ms"],
                              frame_layout=spec.layout)
        try:
            return WebRtcSink(encoder, config, self._stats, log=self.get_logger().info,
                              min_bitrate_bps=int(p["min_bitrate_mbps"] * 1e6))
        except OSError as exc:
            raise ParameterError(str(exc)) from None

    def _write_sdp(self, layout: str) -> None:
        p = self.p
        nack = p["nack"] and p["transport"] == "udp"
        sdp = make_sdp(resolve_ipv4(p["headset_ip"]), p["headset_port"], extmap=FRAME_EXTMAP,
                       transport=p["transport"], nack=nack, frame_layout=layout,
                       fec=bool(p["fec"]) and p["transport"] == "udp")
        tmp = p["sdp_path"] + ".tmp"
        with open(tmp, "w") as f:
            f.write(sdp)
        os.replace(tmp, p["sdp_path"])
        self.get_logger().info(f"SDP for receivers written to {p['sdp_path']}")

    def _describe(self, spec: FrameSpec) -> str:
        p = self.p
        stereo = "" if spec.layout == "mono" else f" (stereo {spec.layout})"
        if p["transport"] == "webrtc":
            return (f"ring {spec.width}x{spec.height}{stereo} @ {self._fps:g} fps -> H.264 "
                    f"(ultrafast, zerolatency, {p['bitrate_mbps']:g} Mbit/s) -> WebRTC, up to "
                    f"{p['max_viewers']} viewers on {self._sink.server.url.split('?')[0]} "
                    "(URL with its token printed on this terminal)")
        bands = f" in {self._jpeg_bands} parallel bands" if self._jpeg_bands > 1 else ""
        return (f"ring {spec.width}x{spec.height}{stereo} -> JPEG q{p['jpeg_quality']}{bands} -> "
                f"RTP/{p['transport'].upper()} {p['headset_ip']}:{p['headset_port']} "
                f"(mtu {p['mtu']}, dscp {p['dscp']}"
                + (f", paced {p['max_rate_mbps']:g} Mbit/s"
                   if p["max_rate_mbps"] and p["transport"] == "udp" else "") + ")")

    def _on_detections(self, msg: DetectionArray) -> None:
        if msg.capture_mono_ns:  # this host's clock: the camera's, from any detector's host
            self._stats.detections_arrived(msg.capture_mono_ns, time.monotonic_ns())
        self._loop.offer_detections(msg.frame_seq, [
            (d.center_x, d.center_y, d.size_x, d.size_y, d.class_name, d.score)
            for d in msg.detections])

    # -- executor: stats and diagnostics ------------------------------------------------
    def _publish_stats(self) -> None:
        window = self._loop.take_window()
        msg = latency_stats(window)
        msg.header.stamp = self.get_clock().now().to_msg()
        self._stats_pub.publish(msg)
        status = latency_diagnostic(
            msg, node=self.get_fully_qualified_name(),
            measured_to=window.headset.measured_to, budget_ms=self.p["latency_budget_ms"],
            hardware_id=f"{self.p['headset_ip']}:{self.p['headset_port']}")
        array = DiagnosticArray(status=[status])
        array.header.stamp = msg.header.stamp
        self._diag_pub.publish(array)

    def close(self) -> None:
        """Stop every producer (video thread, then the sink's threads), then write the
        recording, then release the ring."""
        self.stop_worker(timeout=2.0)
        self._sink.close()
        if self.p["record_path"]:
            frames = self._stats.export(self.p["record_path"])
            self.get_logger().info(f"{frames} frames' stage times written "
                                   f"to {self.p['record_path']}")
        self._reader.close()


def main(args: list[str] | None = None) -> int:
    """Entry point of ``ros2 run vr_stream_ros headset_bridge_node``."""
    return run_node(NODE_NAME, HeadsetBridgeNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
