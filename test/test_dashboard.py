"""The dashboard against the real graph, and its text chart and machine readings."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from conftest import needs_ros, wait_for

from vr_stream_ros.system.monitor import SystemMonitor
from vr_stream_ros.system.realtime import online_cpus
from vr_stream_ros.system.thermal import read_temperature, read_throttled
from vr_stream_ros.tools.dashboard_view import latency_chart

LAST_CPU = online_cpus()[-1]


def _dashboard(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    from vr_stream_ros.graph.processes import executable_path
    return subprocess.run([executable_path("dashboard"), *args], capture_output=True,
                          text=True, timeout=timeout)


def _row(text: str, first_cell: str) -> list[str]:
    for line in text.splitlines():
        cells = line.split()
        if cells and cells[0] == first_cell:
            return cells
    raise AssertionError(f"no row starting with {first_cell!r} in:\n{text}")


@needs_ros
@pytest.mark.slow
def test_once_finds_every_node_its_process_and_the_latency(procs, ring_name, port, tmp_path):
    procs.receiver("--port", str(port), "--duration", "60", "--quiet")
    camera = procs.node("camera_node", f"ring_name:={ring_name}", f"cpu_affinity:={LAST_CPU}")
    bridge = procs.node("headset_bridge_node", f"ring_name:={ring_name}",
                        f"headset_port:={port}", "sdp_path:=''")
    assert wait_for(lambda: "RTP/UDP" in procs.output("headset_bridge_node"), 20)
    svg = tmp_path / "dash.svg"
    result = _dashboard("--once", "--timeout", "30", "--svg", str(svg))
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    cam = _row(out, "/camera_node")
    assert cam[1] == str(camera.pid), cam
    assert cam[5] == str(LAST_CPU), f"camera pinned to CPU {LAST_CPU}, dashboard says {cam}"
    assert cam[6] == "other"
    br = _row(out, "/headset_bridge_node")
    assert br[1] == str(bridge.pid), br
    assert float(br[2]) > 0, f"the bridge encodes 60 frames/s; its CPU % cannot be 0: {br}"
    assert "end_to_end = capture -> decoded at the headset" in out, out
    e2e = _row(out, "end_to_end")
    p50, p95, p99, samples = float(e2e[1]), float(e2e[2]), float(e2e[3]), int(e2e[4])
    assert 0 < p50 <= p95 <= p99 and samples > 0, e2e
    for stage in ("capture_to_ring", "ring_to_bridge", "encode", "send", "network",
                  "receive_decode"):
        _row(out, stage)
    assert re.search(r"^\s*\d+ +\d+\.\d +#*\.*\s*$", out, re.M), "per-core CPU rows"
    assert _row(out, "lo")[3].isdigit(), "loopback packet counter"
    assert "End-to-end latency, ms" in out and "*" in out.split("End-to-end latency")[1]
    assert svg.read_text().startswith("<svg"), "the --svg screenshot"


@needs_ros
def test_once_without_a_graph_says_what_is_missing_and_fails():
    result = _dashboard("--once", "--timeout", "3", timeout=30)
    assert result.returncode == 1
    assert "still missing" in result.stderr
    assert "pid on /diagnostics" in result.stderr
    assert "LatencyStats message on /latency" in result.stderr


@needs_ros
@pytest.mark.parametrize(("args", "needle"), [
    (["--timeout", "0"], "--timeout: got 0.0"),
    (["--width", "20"], "--width: got 20"),
])
def test_bad_arguments_are_named(args, needle):
    result = _dashboard("--once", *args, timeout=30)
    assert result.returncode == 2
    assert needle in result.stderr


def test_chart_draws_budget_and_both_percentiles():
    rows = latency_chart([(5.0, 8.0)] * 3 + [(20.0, 40.0)], budget_ms=30.0, width=10,
                         height=8)
    body = [r.split("|")[1] for r in rows[:-1]]
    assert len(body) == 8 and all(len(b) == 10 for b in body)
    top = 40.0 * 1.1  # the highest p99 sets the scale

    def row_index(ms):  # body is top row first
        return 7 - min(7, int(ms / top * 8))

    assert body[row_index(30.0)].count("-") >= 6, "the budget line"
    assert body[row_index(40.0)][-1] == "*" and body[row_index(20.0)][-1] == "o"
    assert body[row_index(8.0)][6:9] == "***"
    assert body[row_index(5.0)][6:9] == "ooo"
    assert all(b[:6].strip(" -") == "" for b in body), "no points before the first value"


def test_temperature_and_throttling_read_from_a_pi5_tree(tmp_path):
    zone = tmp_path / "sys/class/thermal/thermal_zone0"
    zone.mkdir(parents=True)
    (zone / "temp").write_text("61850\n")
    (zone / "type").write_text("cpu-thermal\n")
    fw = tmp_path / "sys/devices/platform/soc/soc:firmware"
    fw.mkdir(parents=True)
    (fw / "get_throttled").write_text("50005\n")
    temperature, where = read_temperature(str(tmp_path))
    assert temperature == pytest.approx(61.85)
    assert where == "/sys/class/thermal/thermal_zone0 (cpu-thermal)"
    value, source = read_throttled(str(tmp_path))
    assert value == 0x50005 and source.endswith("soc:firmware/get_throttled")


def test_machine_without_sensors_says_so(tmp_path):
    assert read_temperature(str(tmp_path))[0] is None
    value, why = read_throttled(str(tmp_path))
    assert value is None and "Raspberry Pi" in why


def test_monitor_reads_this_process_and_reports_a_gone_one():
    monitor = SystemMonitor()
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    monitor.sample({"me": os.getpid()})
    snap = monitor.sample({"me": os.getpid(), "gone": gone.pid})
    me = snap.processes["me"]
    assert me.error == "" and me.rss_mib > 1 and me.threads >= 1
    assert me.affinity and me.policy in ("other", "fifo", "rr", "batch", "idle")
    assert snap.processes["gone"].error
    assert len(snap.cpu_percent) == len(online_cpus())
    assert any(n.name == "lo" for n in snap.interfaces)
