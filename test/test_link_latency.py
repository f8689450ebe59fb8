"""/latency on an impaired link: real camera and bridge nodes, the impairment relay with
3 % loss, and the reference receiver asking for repairs and concealing stripes."""

from __future__ import annotations

import statistics
import sys

import pytest
from conftest import free_port, needs_ros, read_json
from test_latency_topic import _collect

pytestmark = [needs_ros, pytest.mark.slow]


def test_latency_reports_loss_repairs_and_the_clock_bound(procs, ring_name, port,
                                                          tmp_path) -> None:
    from vr_stream_ros.msg import LatencyStats
    relay_port = free_port()
    summary = tmp_path / "receiver.json"
    procs.receiver("--port", str(port), "--bind", "127.0.0.1", "--duration", "25", "--quiet",
                   "--nack", "--conceal", "--summary-json", str(summary))
    procs.start("relay", [sys.executable, "-m", "vr_stream_ros.net.impairment", "--listen",
                          str(relay_port), "--to", f"127.0.0.1:{port}", "--delay-ms", "5",
                          "--loss", "0.03", "--seed", "5", "--duration", "30"])
    procs.node("camera_node", f"ring_name:={ring_name}")
    procs.node("headset_bridge_node", f"ring_name:={ring_name}", f"headset_port:={relay_port}",
               "sdp_path:=''", "nack:=true", "jpeg_restart_interval:=40")
    messages = _collect(LatencyStats, "/latency", 8, timeout=50)
    assert len(messages) == 8, procs.output("headset_bridge_node")
    last = messages[-1]
    print(f"\n/latency under 3 % loss: packets_lost {last.packets_lost}, frames_lost "
          f"{last.frames_lost}, packets_retransmitted {last.packets_retransmitted}, "
          f"nacks_refused {last.nacks_refused}, packet_loss {last.packet_loss:.3f}, "
          f"jitter {last.jitter_ms:.2f} ms, rtt {last.rtt_ms:.2f} ms, clock offset "
          f"{last.clock_offset_ms:.3f} +- {last.clock_offset_error_ms:.3f} ms, "
          f"frames_sent {last.frames_sent}")
    assert last.headset_feedback
    assert last.packets_lost > 0  # the relay drops 3 % of the packets ...
    assert last.packets_retransmitted > 0  # ... the headset asks, the bridge resends
    assert last.frames_lost < last.packets_lost  # frames, not packets, and most repaired
    assert last.rtt_ms >= 10.0  # 5 ms each way through the relay
    assert last.clock_offset_error_ms == pytest.approx(last.rtt_ms / 2, rel=0.5)
    procs.stop_all()
    rx = read_json(summary)
    assert rx["nack"]["recovered"] > 0 and rx["packets_reordered"] <= rx["nack"]["nacks_sent"]


def test_adaptation_follows_a_narrow_link_and_says_so(procs, ring_name, port) -> None:
    """8 Mbit/s through the relay for a stream that needs ~15: quality comes down (logged,
    and on /latency), and the frames get through again."""
    from vr_stream_ros.msg import LatencyStats
    relay_port = free_port()
    procs.receiver("--port", str(port), "--bind", "127.0.0.1", "--duration", "40", "--quiet")
    procs.start("relay", [sys.executable, "-m", "vr_stream_ros.net.impairment", "--listen",
                          str(relay_port), "--to", f"127.0.0.1:{port}", "--delay-ms", "5",
                          "--rate-mbps", "8", "--duration", "45"])
    procs.node("camera_node", f"ring_name:={ring_name}")
    procs.node("headset_bridge_node", f"ring_name:={ring_name}", f"headset_port:={relay_port}",
               "sdp_path:=''", "adapt:=true")
    messages = _collect(LatencyStats, "/latency", 10, timeout=60)
    assert len(messages) == 10, procs.output("headset_bridge_node")
    levels = [(m.jpeg_quality, m.adapt_level, round(m.target_rate_mbps, 1), round(m.fps, 1))
              for m in messages]
    print(f"\n(quality, level, target Mbit/s, fps) per second: {levels}")
    assert "adapt: down to JPEG quality 65" in procs.output("headset_bridge_node")
    assert all(m.jpeg_quality < 80 and m.adapt_level > 0 for m in messages[3:])
    # What the levels send fits the link most of the time: the adapter probes a level up
    # now and then (hysteresis), so one second's rate may touch the cap.
    assert statistics.median(m.target_rate_mbps for m in messages[3:]) < 8.0
    assert messages[-1].fps > 15
