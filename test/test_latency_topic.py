"""The latency topic and /diagnostics, read by a real rclpy subscriber from real nodes."""

from __future__ import annotations

import itertools
import socket
import time

import pytest
from conftest import needs_ros, read_json, wait_for

pytestmark = [needs_ros, pytest.mark.slow]


def _collect(topic_type, topic: str, count: int, timeout: float) -> list:
    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node("latency_reader", context=context)
    got = []
    node.create_subscription(topic_type, topic, got.append,
                             QoSProfile(depth=20, reliability=ReliabilityPolicy.RELIABLE))
    deadline = time.monotonic() + timeout
    executor = rclpy.executors.SingleThreadedExecutor(context=context)
    executor.add_node(node)
    while len(got) < count and time.monotonic() < deadline:
        executor.spin_once(timeout_sec=0.2)
    node.destroy_node()
    rclpy.shutdown(context=context)
    return got


def _graph(procs, ring_name, port, *bridge_params, receiver_args=()):
    procs.receiver("--port", str(port), "--duration", "60", "--quiet", *receiver_args)
    procs.node("camera_node", f"ring_name:={ring_name}")
    procs.node("headset_bridge_node", f"ring_name:={ring_name}", f"headset_port:={port}",
               "sdp_path:=''", *bridge_params)


def test_latency_topic_has_plausible_figures_every_second(procs, ring_name, port) -> None:
    from vr_stream_ros.msg import LatencyStats
    _graph(procs, ring_name, port)
    messages = _collect(LatencyStats, "/latency", 6, timeout=40)
    assert len(messages) == 6, procs.output("headset_bridge_node")
    stamps = [m.header.stamp.sec + m.header.stamp.nanosec / 1e9 for m in messages]
    periods = [b - a for a, b in itertools.pairwise(stamps)]
    assert all(0.5 < p < 2.0 for p in periods), periods  # the 1 Hz period, not a speed
    last = messages[-1]
    assert last.headset_feedback, "the receiver's RTCP reports should have arrived"
    assert 40 < last.fps < 70
    names = [s.name for s in last.stages]
    assert names == ["capture_to_ring", "ring_to_bridge", "encode", "send", "network",
                     "receive_decode"]
    for stage in [*last.stages, last.end_to_end]:
        assert stage.samples > 0, stage.name
        assert stage.min_ms <= stage.p50_ms <= stage.p95_ms <= stage.p99_ms <= stage.max_ms, \
            stage
    e2e = last.end_to_end
    assert 0 < e2e.p50_ms < 1000
    stage_sum = sum(s.mean_ms for s in last.stages)
    print(f"end-to-end mean {e2e.mean_ms:.2f} ms, sum of stage means {stage_sum:.2f} ms, "
          f"rtt {last.rtt_ms:.3f} ms")
    assert abs(stage_sum - e2e.mean_ms) < 1.0 + 0.2 * e2e.mean_ms
    assert 0 < last.rtt_ms < 50
    # frames_lost counts frames (a loopback receiver decodes nearly all), packets_lost packets
    assert last.frames_lost <= 0.05 * last.frames_sent, last
    assert abs(last.clock_offset_ms) < 2.0  # same host, same clock


def test_diagnostics_report_the_budget(procs, ring_name, port) -> None:
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
    _graph(procs, ring_name, port, "latency_budget_ms:=1.0")  # JPEG alone takes longer
    arrays = _collect(DiagnosticArray, "/diagnostics", 12, timeout=40)
    # /diagnostics also carries every node's '<node>: process' status: pick the bridge's.
    latency = [s for a in arrays for s in a.status
               if s.name == "/headset_bridge_node: end-to-end latency"]
    assert len(latency) >= 2, [s.name for a in arrays for s in a.status]
    status = latency[-1]
    assert status.level == DiagnosticStatus.ERROR, status
    assert "1 ms" in status.message
    values = {kv.key: kv.value for kv in status.values}
    assert values["measured_to"] == "decoded at the headset"
    assert values["budget_ms"] == "1"
    for key in ("frames_torn", "frames_lost", "packets_lost", "frames_dropped"):
        assert values[key].isdigit(), (key, values)


def test_bridge_estimates_headset_clock_offset(procs, ring_name, port, tmp_path) -> None:
    from vr_stream_ros.msg import LatencyStats
    summary = tmp_path / "receiver.json"
    procs.receiver("--port", str(port), "--duration", "12", "--quiet", "--clock-offset-ms",
                   "250", "--summary-json", str(summary))
    procs.node("camera_node", f"ring_name:={ring_name}")
    procs.node("headset_bridge_node", f"ring_name:={ring_name}", f"headset_port:={port}")
    messages = [m for m in _collect(LatencyStats, "/latency", 8, timeout=40)
                if m.headset_feedback]
    assert messages, procs.output("headset_bridge_node")
    wait_for(lambda: summary.exists(), 20)
    truth = read_json(summary)["latency_ms"]  # the receiver's own, on the true clock
    estimate = sorted(m.end_to_end.p50_ms for m in messages)[len(messages) // 2]
    offset = messages[-1].clock_offset_ms
    print(f"offset estimate {offset:.3f} ms (true 250), headset e2e p50 estimate "
          f"{estimate:.2f} ms vs true {truth['p50']:.2f} ms")
    assert abs(offset - 250.0) < 3.0
    assert abs(estimate - truth["p50"]) < 3.0


def test_malformed_reports_are_counted_and_bridge_keeps_going(procs, ring_name, port) -> None:
    from vr_stream_ros.msg import LatencyStats
    headset = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # stands in for the receiver
    headset.bind(("127.0.0.1", port))
    headset.settimeout(10)
    procs.node("camera_node", f"ring_name:={ring_name}")
    bridge = procs.node("headset_bridge_node", f"ring_name:={ring_name}",
                        f"headset_port:={port}")
    _, bridge_address = headset.recvfrom(65536)
    garbage = [b"\x80\xc9\x00\x07" + b"\x00" * 8,  # RR claiming more words than it has
               b"\x81\xc8\x00\x01\x00\x00", b"\xff" * 40, b"\x80\xcc\x00\x02VRFSxxxx"]
    for packet in garbage * 5:
        headset.sendto(packet, bridge_address)
    messages = _collect(LatencyStats, "/latency", 3, timeout=30)
    headset.close()
    assert messages[-1].reports_malformed >= 15, messages[-1]
    assert bridge.poll() is None
    assert "Traceback" not in procs.output("headset_bridge_node")
