"""headset_bridge_node: newest ring frame -> JPEG -> RTP -> UDP/TCP to the headset.

The video path runs on its own thread and never queues: it waits on the ring's
doorbell, takes the newest frame (counting the ones it skipped), encodes straight
from the shared-memory view, checks the slot was not overwritten meanwhile, and
sends. Between frames the same thread sends RTCP sender reports and reads the
headset's reports (round trip, clock offset, loss, per-frame decode times). The ROS
executor only publishes the latency stats and /diagnostics once per period.
"""

from __future__ import annotations

import os
import random
import threading
import time

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy

from vr_stream_ros.codecs.jpeg import JpegEncoder
from vr_stream_ros.graph.node_params import BRIDGE_PARAMS
from vr_stream_ros.graph.param_spec import ParameterError
from vr_stream_ros.latency.profiler import LatencyProfiler
from vr_stream_ros.latency.stages import PipelineStats, StageSummary
from vr_stream_ros.msg import DetectionArray, LatencyStats, StageLatency
from vr_stream_ros.net.senders import open_sender, resolve_ipv4
from vr_stream_ros.ring.frame_ring import FrameRingReader
from vr_stream_ros.ros.params import declare_and_validate
from vr_stream_ros.ros.process_status import ProcessStatus
from vr_stream_ros.ros.realtime import setup_realtime
from vr_stream_ros.ros.runner import run_node
from vr_stream_ros.rtp.feedback import HeadsetFeedback
from vr_stream_ros.rtp.jpeg import JpegPacketizer
from vr_stream_ros.rtp.packet import (
    ABS_CAPTURE_TIME_URI,
    EXT_ABS_CAPTURE_TIME,
    EXT_FRAME_SEQ,
    FRAME_SEQ_URI,
)
from vr_stream_ros.rtp.rtcp import DetectionsMeta, detections_app, is_rtcp, sender_report
from vr_stream_ros.rtp.sdp import make_sdp
from vr_stream_ros.system.realtime import collect_garbage, set_thread_name

NODE_NAME = "headset_bridge_node"
SENDER_STAGES = ("capture_to_ring", "ring_to_bridge", "encode", "send")
HEADSET_STAGES = ("network", "receive_decode")
WEBRTC_NOMINAL_FPS = 60.0  # H.264 rate control's frame rate (the ring does not carry one)
BROWSER_STAGE = "browser_displayed"  # transport:=webrtc: capture -> shown by the page
STAGES = (*SENDER_STAGES, *HEADSET_STAGES, "capture_to_sent", "capture_to_decoded",
          BROWSER_STAGE)


def rtp_timestamp(capture_ns: int) -> int:
    """90 kHz RTP timestamp of a capture time."""
    return (capture_ns * 9 // 100_000) & 0xFFFFFFFF


def diagnostic_level(end_to_end: StageSummary, budget_ms: float) -> tuple[bytes, str]:
    """OK when p99 is within the budget, WARN when only p50 is, ERROR otherwise."""
    if end_to_end.samples == 0:
        return DiagnosticStatus.ERROR, "no frames reached the headset in the last period"
    if end_to_end.p99_ms <= budget_ms:
        return DiagnosticStatus.OK, f"p99 {end_to_end.p99_ms:.1f} ms within {budget_ms:g} ms"
    if end_to_end.p50_ms <= budget_ms:
        return DiagnosticStatus.WARN, (f"p99 {end_to_end.p99_ms:.1f} ms over the "
                                       f"{budget_ms:g} ms budget (p50 within)")
    return DiagnosticStatus.ERROR, f"p50 {end_to_end.p50_ms:.1f} ms over {budget_ms:g} ms"


class HeadsetBridgeNode(Node):
    """Streams the newest frame of the ring to the headset and reports latency."""

    def __init__(self) -> None:
        super().__init__(NODE_NAME)
        p = declare_and_validate(self, BRIDGE_PARAMS)
        self.fatal_error: str | None = None
        self.executor_kind = p["executor"]
        self.rt_report = setup_realtime(self, p)  # before any thread of ours exists
        self._manual_gc = p["gc_mode"] == "manual"
        self._p = p
        self.get_logger().info(f"waiting up to {p['ring_wait_s']:g} s for ring "
                               f"'{p['ring_name']}' (started by camera_node)")
        self._reader = FrameRingReader.wait_for(p["ring_name"], timeout=p["ring_wait_s"])
        spec = self._reader.spec
        if spec.width % 8 or spec.height % 8 or spec.width > 2040 or spec.height > 2040:
            self._reader.close()
            raise ParameterError(
                f"ring '{p['ring_name']}' holds {spec.width}x{spec.height} frames; RTP/JPEG "
                "carries widths and heights that are multiples of 8 up to 2040 (set camera_node "
                "width/height)")
        if spec.channels != 3:
            self._reader.close()
            raise ParameterError(f"ring '{p['ring_name']}' holds {spec.channels}-channel frames; "
                                 "the bridge encodes rgb8/bgr8 only")
        self._encoder = JpegEncoder(p["jpeg_quality"], p["chroma_subsampling"],
                                    self._reader.pixel_format)
        ssrc = random.getrandbits(32)
        self._packetizer = JpegPacketizer(ssrc=ssrc, mtu=p["mtu"])
        self._feedback = HeadsetFeedback(ssrc)
        self._profiler = LatencyProfiler() if p["record_path"] else None
        self._stats = PipelineStats(STAGES)
        self._lock = threading.Lock()
        self._webrtc = None
        self._browser_report_ns = 0
        if p["transport"] == "webrtc":
            self._sender = None
            self._start_webrtc(p, spec)
        else:
            self._sender = open_sender(
                p["transport"], p["headset_ip"], p["headset_port"], dscp=p["dscp"],
                sndbuf=p["sndbuf_kib"] * 1024, **self._udp_pacing(p))
            self._headset_address = resolve_ipv4(p["headset_ip"])
            if p["sdp_path"]:
                self._write_sdp(p)
        self.frames_sent = self.frames_skipped = self.frames_dropped = self.frames_torn = 0
        self._window_start = time.monotonic()
        self._window_frames = 0
        self._stats_pub = self.create_publisher(
            LatencyStats, "latency", QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._process_status = ProcessStatus(self)
        self.create_timer(p["stats_period_s"], self._publish_stats)
        # Detections (detector_node) go to the headset with the video; the newest wins.
        self._detections: DetectionArray | None = None
        self._detections_sent_frame = 0
        self.detections_sent = 0
        self._lag_window: list[int] = []
        if p["send_detections"]:
            self.create_subscription(DetectionArray, "detections", self._on_detections,
                                     QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._video_loop, name="video", daemon=True)
        self._thread.start()
        if self._webrtc is not None:
            self.get_logger().info(
                f"ring {spec.width}x{spec.height} -> H.264 (ultrafast, zerolatency, "
                f"{p['bitrate_mbps']:g} Mbit/s) -> WebRTC, up to {p['max_viewers']} viewers; "
                f"open {self._webrtc.url}")
            return
        self.get_logger().info(
            f"ring {spec.width}x{spec.height} -> JPEG q{p['jpeg_quality']} -> RTP/"
            f"{p['transport'].upper()} {p['headset_ip']}:{p['headset_port']} "
            f"(mtu {p['mtu']}, dscp {p['dscp']}"
            + (f", paced {p['max_rate_mbps']:g} Mbit/s" if p["max_rate_mbps"] else "") + ")")

    def _start_webrtc(self, p: dict, spec) -> None:
        try:
            from vr_stream_ros.codecs.h264 import H264Encoder
            from vr_stream_ros.webrtc.server import WebRtcConfig, WebRtcServer
        except ImportError as exc:
            self._reader.close()
            raise ParameterError(f"parameter 'transport': webrtc needs aiortc and aiohttp "
                                 f"({exc}); pip install aiortc aiohttp") from None
        self._h264 = H264Encoder(spec.width, spec.height, WEBRTC_NOMINAL_FPS,
                                 int(p["bitrate_mbps"] * 1e6), p["keyframe_interval"],
                                 self._reader.pixel_format)
        config = WebRtcConfig(bind=p["webrtc_bind"], port=p["webrtc_port"],
                              token=p["webrtc_token"], max_viewers=p["max_viewers"],
                              quad=p["vr_quad"], tls=p["webrtc_tls"],
                              cert_file=p["webrtc_cert"], key_file=p["webrtc_key"])
        if bool(p["webrtc_cert"]) != bool(p["webrtc_key"]):
            self._reader.close()
            raise ParameterError("parameters 'webrtc_cert' and 'webrtc_key': give both "
                                 "(PEM files) or neither (a self-signed certificate)")
        self._webrtc = WebRtcServer(config, on_display=self._on_browser_frame,
                                    on_keyframe=self._keyframe_wanted,
                                    log=self.get_logger().info)
        try:
            self._webrtc.start()
        except OSError as exc:
            self._reader.close()
            raise ParameterError(str(exc)) from None

    def _keyframe_wanted(self) -> None:
        self._h264.force_keyframe = True  # read by the video thread before its next frame

    def _on_browser_frame(self, frame: int, capture_ns: int, displayed_ns: int) -> None:
        """The page showed ``frame``: capture -> displayed, in this host's clock."""
        with self._lock:
            self._stats.add(BROWSER_STAGE, displayed_ns - capture_ns)
            self._browser_report_ns = time.monotonic_ns()
        if self._profiler is not None:
            self._profiler.record(frame, {"browser_displayed": displayed_ns})

    @staticmethod
    def _udp_pacing(p: dict) -> dict:
        if p["transport"] != "udp":
            return {}
        return {"max_rate_bps": p["max_rate_mbps"] * 1e6, "burst_bytes": p["burst_kib"] * 1024}

    def _write_sdp(self, p: dict) -> None:
        sdp = make_sdp(self._headset_address, p["headset_port"],
                       extmap={EXT_ABS_CAPTURE_TIME: ABS_CAPTURE_TIME_URI,
                               EXT_FRAME_SEQ: FRAME_SEQ_URI})
        tmp = p["sdp_path"] + ".tmp"
        with open(tmp, "w") as f:
            f.write(sdp)
        os.replace(tmp, p["sdp_path"])
        self.get_logger().info(f"SDP for receivers written to {p['sdp_path']}")

    # -- video thread ----------------------------------------------------------------
    def _video_loop(self) -> None:
        set_thread_name("video")
        try:
            self._stream()
        except Exception as exc:  # never a silent dead thread in a live-looking node
            self.fatal_error = f"video thread failed: {exc!r}"

    def _stream(self) -> None:
        reader = self._reader
        last = reader.latest_seq()
        next_sr = 0.0
        while not self._stop.is_set():
            seq = reader.wait_newer(last, timeout=0.25)
            if seq is not None:
                # seq < last: the camera restarted and counts from 0 again.
                skipped = seq - last - 1 if 0 <= last < seq else 0
                last = seq
                self._send_frame(seq, skipped)
            now = time.monotonic()
            if self._sender is not None:  # webrtc: aiortc runs its own RTCP
                if now >= next_sr:  # RTCP between frames, on this thread: TCP stays whole
                    next_sr = now + self._p["rtcp_interval_s"]
                    self._send_sender_report()
                self._read_feedback()
            if self._manual_gc:
                collect_garbage()

    def _send_frame(self, seq: int, skipped: int) -> None:
        reader = self._reader
        view = reader.read(seq)
        pickup_ns = time.monotonic_ns()
        if view is None:  # overwritten between the doorbell and the read
            with self._lock:
                self.frames_torn += 1
            return
        if self._webrtc is not None:
            self._send_frame_webrtc(seq, skipped, view, pickup_ns)
            return
        jpeg = self._encoder.encode(view.array)
        encoded_ns = time.monotonic_ns()
        if not reader.is_intact(view):  # the writer lapped us while we encoded
            with self._lock:
                self.frames_torn += 1
            return
        packets = self._packetizer.packetize(
            jpeg, rtp_timestamp(view.capture_ns), view.capture_ns, seq)
        result = self._sender.send_frame(packets)
        with self._lock:
            self.frames_skipped += skipped
            if result.dropped:
                self.frames_dropped += 1
                return
            self.frames_sent += 1
            self._window_frames += 1
            stats = self._stats
            stats.add("capture_to_ring", view.publish_ns - view.capture_ns)
            stats.add("ring_to_bridge", pickup_ns - view.publish_ns)
            stats.add("encode", encoded_ns - pickup_ns)
            stats.add("send", result.done_ns - encoded_ns)
            stats.add("capture_to_sent", result.done_ns - view.capture_ns)
            self._feedback.frame_sent(seq, view.capture_ns, result.done_ns)
        self._send_detections(seq)
        if self._profiler is not None:
            self._profiler.record(seq, {"capture": view.capture_ns, "ring_write": view.publish_ns,
                                        "bridge_pickup": pickup_ns, "encoded": encoded_ns,
                                        "sent": result.done_ns})

    def _send_frame_webrtc(self, seq: int, skipped: int, view, pickup_ns: int) -> None:
        """H.264 straight from the ring view, then to every viewer (never waits)."""
        packets = self._h264.encode(view.array, view.capture_ns)
        encoded_ns = time.monotonic_ns()
        if not self._reader.is_intact(view):
            with self._lock:
                self.frames_torn += 1
            self._h264.force_keyframe = True  # the torn frame was encoded: start clean
            return
        for packet in packets:
            self._webrtc.push(packet, seq, view.capture_ns)
        done_ns = time.monotonic_ns()
        with self._lock:
            self.frames_skipped += skipped
            self.frames_sent += 1
            self._window_frames += 1
            stats = self._stats
            stats.add("capture_to_ring", view.publish_ns - view.capture_ns)
            stats.add("ring_to_bridge", pickup_ns - view.publish_ns)
            stats.add("encode", encoded_ns - pickup_ns)
            stats.add("send", done_ns - encoded_ns)
            stats.add("capture_to_sent", done_ns - view.capture_ns)
        if self._profiler is not None:
            self._profiler.record(seq, {"capture": view.capture_ns, "ring_write": view.publish_ns,
                                        "bridge_pickup": pickup_ns, "encoded": encoded_ns,
                                        "sent": done_ns})
        self._send_detections(seq)

    def _on_detections(self, msg: DetectionArray) -> None:
        with self._lock:
            self._detections = msg

    def _send_detections(self, sent_seq: int) -> None:
        """After frame ``sent_seq``: the newest detections, once each, as RTCP APP 'VRDT'."""
        with self._lock:
            det = self._detections
            if det is None or det.frame_seq == self._detections_sent_frame:
                return
            self._detections_sent_frame = det.frame_seq
        boxes = [(d.center_x, d.center_y, d.size_x, d.size_y, d.class_name, d.score)
                 for d in det.detections]
        if self._webrtc is not None:  # the page's data channel, same JSON as APP 'VRDT'
            self._webrtc.send_json({"type": "detections", "frame": det.frame_seq,
                                    "sent_with": sent_seq,
                                    "boxes": [[*b[:4], b[4], b[5]] for b in boxes]})
            sent = True
        else:
            sent = self._sender.send_control(detections_app(
                self._packetizer.ssrc, DetectionsMeta(det.frame_seq, sent_seq, boxes)))
        if sent:
            with self._lock:
                self.detections_sent += 1
                self._lag_window.append(max(0, sent_seq - det.frame_seq))

    def _send_sender_report(self) -> None:
        st = self._sender.stats
        now = time.monotonic_ns()
        packet = sender_report(self._packetizer.ssrc, now, rtp_timestamp(now),
                               st.packets_sent, st.bytes_sent)
        if self._sender.send_control(packet):
            with self._lock:
                self._feedback.sender_report_sent(now)

    def _read_feedback(self) -> None:
        for packet, arrived in self._sender.poll_feedback_stamped():
            if not is_rtcp(packet):
                with self._lock:
                    self._feedback.malformed += 1
                continue
            with self._lock:
                frames = self._feedback.on_packet(packet, arrived)
                for f in frames:
                    self._stats.add("network", f.last_packet_ns - f.sent_ns)
                    self._stats.add("receive_decode", f.decoded_ns - f.last_packet_ns)
                    self._stats.add("capture_to_decoded", f.decoded_ns - f.capture_ns)
            if self._profiler is not None:
                for f in frames:
                    self._profiler.record(f.frame_seq, {"headset_last_packet": f.last_packet_ns,
                                                        "headset_decoded": f.decoded_ns})

    # -- executor: stats and diagnostics ------------------------------------------------
    def _publish_stats(self) -> None:
        now = time.monotonic()
        with self._lock:
            summaries = {s.name: s for s in self._stats.summaries()}
            self._stats.clear()
            window = now - self._window_start
            frames, self._window_frames, self._window_start = self._window_frames, 0, now
            fb = self._feedback
            if self._webrtc is not None:  # the page's reports, at most 3 s old
                headset = (time.monotonic_ns() - self._browser_report_ns < 3e9
                           and summaries[BROWSER_STAGE].samples)
            else:
                headset = (fb.fresh(time.monotonic_ns())
                           and summaries["capture_to_decoded"].samples)
            msg = LatencyStats(
                window_s=window, fps=frames / window if window > 0 else 0.0,
                frames_sent=self.frames_sent, frames_skipped=self.frames_skipped,
                frames_dropped=self.frames_dropped, frames_lost=max(0, fb.cumulative_lost),
                headset_feedback=bool(headset),
                rtt_ms=fb.clock.rtt_ns / 1e6 if fb.clock else 0.0,
                clock_offset_ms=fb.clock.offset_ns / 1e6 if fb.clock else 0.0,
                jitter_ms=fb.jitter_ms, packet_loss=fb.fraction_lost,
                reports_malformed=fb.malformed, detections_sent=self.detections_sent,
                detection_frame=self._detections_sent_frame)
            if self._lag_window:
                msg.detection_lag_frames = sum(self._lag_window) / len(self._lag_window)
                msg.detection_lag_frames_max = max(self._lag_window)
                self._lag_window.clear()
        msg.header.stamp = self.get_clock().now().to_msg()
        if self._webrtc is not None:
            end = summaries[BROWSER_STAGE if headset else "capture_to_sent"]
            stage_names = SENDER_STAGES + ((BROWSER_STAGE,) if headset else ())
        else:
            end = summaries["capture_to_decoded" if headset else "capture_to_sent"]
            stage_names = SENDER_STAGES + (HEADSET_STAGES if headset else ())
        msg.end_to_end = _stage_msg(end, "end_to_end")
        msg.stages = [_stage_msg(summaries[n], n) for n in stage_names]
        self._stats_pub.publish(msg)
        self._publish_diagnostics(end, msg)

    def _publish_diagnostics(self, end: StageSummary, stats: LatencyStats) -> None:
        level, text = diagnostic_level(end, self._p["latency_budget_ms"])
        where = ("displayed in the browser" if self._webrtc is not None else
                 "decoded at the headset") if stats.headset_feedback else \
            "sent (no headset reports)"
        status = DiagnosticStatus(
            level=level, name=f"{self.get_fully_qualified_name()}: end-to-end latency",
            message=text, hardware_id=f"{self._p['headset_ip']}:{self._p['headset_port']}",
            values=[KeyValue(key=k, value=v) for k, v in (
                ("measured_to", where), ("p50_ms", f"{end.p50_ms:.2f}"),
                ("p99_ms", f"{end.p99_ms:.2f}"), ("fps", f"{stats.fps:.1f}"),
                ("rtt_ms", f"{stats.rtt_ms:.2f}"), ("frames_skipped", str(stats.frames_skipped)),
                ("frames_dropped", str(stats.frames_dropped)),
                ("budget_ms", f"{self._p['latency_budget_ms']:g}"))])
        array = DiagnosticArray(status=[status])
        array.header.stamp = stats.header.stamp
        self._diag_pub.publish(array)

    def close(self) -> None:
        """Stop the video thread, write the recording, release the ring and the socket."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2.0)
        if self._profiler is not None:
            self._profiler.export(self._p["record_path"])
            self.get_logger().info(f"{len(self._profiler.frames)} frames' stage times written "
                                   f"to {self._p['record_path']}")
        if self._webrtc is not None:
            self._webrtc.close()
        else:
            self._sender.close()
        self._reader.close()


def _stage_msg(s: StageSummary, name: str) -> StageLatency:
    return StageLatency(name=name, p50_ms=s.p50_ms, p95_ms=s.p95_ms, p99_ms=s.p99_ms,
                        max_ms=s.max_ms, mean_ms=s.mean_ms, samples=s.samples)


def main(args: list[str] | None = None) -> int:
    """Entry point of ``ros2 run vr_stream_ros headset_bridge_node``."""
    return run_node(NODE_NAME, HeadsetBridgeNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
