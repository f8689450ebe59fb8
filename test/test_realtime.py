"""RT set-up from parameters, read back from /proc, and its refusal paths."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import needs_ros, wait_for

from vr_stream_ros.system.realtime import (
    RtConfig,
    format_cpu_ranges,
    known_cpus,
    online_cpus,
    read_proc_status,
)

LAST_CPU = online_cpus()[-1]
DROP_RT_CAPS = ["setpriv", "--bounding-set=-sys_nice,-ipc_lock"]  # a root that may not do RT
needs_setpriv = pytest.mark.skipif(shutil.which("setpriv") is None or os.geteuid() != 0,
                                   reason="needs root and util-linux setpriv to make the "
                                   "kernel refuse RT settings (CI runs as root)")


def _child(config: str, *prefix: str) -> subprocess.Popen:
    code = ("import sys, time\nfrom vr_stream_ros.system.realtime import RtConfig, apply\n"
            f"report = apply({config})\nprint(report.summary(), flush=True)\ntime.sleep(30)")
    return subprocess.Popen([*prefix, sys.executable, "-c", code], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


@needs_setpriv
@pytest.mark.parametrize("policy", ["fifo", "rr"])
def test_library_applies_affinity_policy_priority_and_memory_lock(policy) -> None:
    child = _child(f"RtConfig(cpu_affinity=({LAST_CPU},), sched_policy='{policy}', "
                   "rt_priority=42, lock_memory=True, gc_mode='freeze')")
    try:
        line = child.stdout.readline()
        status = read_proc_status(child.pid)
        assert status["cpus"] == str(LAST_CPU), line
        assert (status["policy"], status["priority"]) == (policy, 42), line
        assert status["vmlck_kb"] > 0, line
    finally:
        child.kill()
        child.wait()


@needs_setpriv
def test_refused_policy_is_reported_with_the_fix_or_fails_when_required() -> None:
    child = _child("RtConfig(sched_policy='fifo', rt_priority=80)", *DROP_RT_CAPS)
    try:
        line = child.stdout.readline()
        assert "REFUSED" in line and "rtprio 99" in line and "limits.conf" in line, line
        assert read_proc_status(child.pid)["policy"] == "other"
    finally:
        child.kill()
        child.wait()
    child = _child("RtConfig(sched_policy='fifo', rt_priority=80, require_realtime=True)",
                   *DROP_RT_CAPS)
    _, err = child.communicate(timeout=30)
    assert child.returncode == 1, err  # the uncaught RealtimeRefused
    last = err.strip().splitlines()[-1]
    assert last.startswith("vr_stream_ros.system.realtime.RealtimeRefused: require_realtime "
                           "is set and the kernel refused: sched_policy=fifo prio 80 refused"), err
    assert "rtprio 99" in last, last


@pytest.mark.parametrize(("config", "message"), [
    (RtConfig(cpu_affinity=(99,)), "parameter 'cpu_affinity': CPU 99 does not exist; this "
                                   f"machine has CPUs {format_cpu_ranges(known_cpus())}"),
    (RtConfig(sched_policy="fifo", rt_priority=0),
     "parameter 'rt_priority': got 0, expected 1..99 with sched_policy 'fifo'"),
    (RtConfig(sched_policy="other", rt_priority=5),
     "parameter 'rt_priority': got 5, expected 0 with sched_policy 'other'"),
    (RtConfig(sched_policy="deadline"),
     "parameter 'sched_policy': got 'deadline', expected one of 'other', 'fifo', 'rr'"),
    (RtConfig(gc_mode="off"),
     "parameter 'gc_mode': got 'off', expected one of 'default', 'freeze', 'manual'"),
])
def test_bad_rt_config_names_the_parameter_and_what_is_allowed(config, message) -> None:
    with pytest.raises(ValueError) as err:
        config.validate()
    assert str(err.value).startswith(message), str(err.value)


@needs_ros
@needs_setpriv
def test_node_applies_rt_parameters_before_its_threads(procs, ring_name) -> None:
    camera = procs.node("camera_node", f"ring_name:={ring_name}", f"cpu_affinity:={LAST_CPU}",
                        "sched_policy:=fifo", "rt_priority:=50", "lock_memory:=true",
                        "gc_mode:=freeze")
    assert wait_for(lambda: "RT:" in procs.output("camera_node"), 20), procs.output("camera_node")
    time.sleep(1.0)  # the capture thread is running
    status = read_proc_status(camera.pid)
    assert (status["cpus"], status["policy"], status["priority"]) == (str(LAST_CPU), "fifo", 50)
    assert status["vmlck_kb"] > 0
    threads = os.listdir(f"/proc/{camera.pid}/task")
    capture = [t for t in threads
               if Path(f"/proc/{camera.pid}/task/{t}/comm").read_text().strip() == "capture"]
    assert capture, "the capture thread should exist"
    assert os.sched_getscheduler(int(capture[0])) == os.SCHED_FIFO  # inherited
    line = next(x for x in procs.output("camera_node").splitlines() if "RT:" in x)
    assert "sched_policy=fifo prio 50" in line and "REFUSED" not in line


@needs_ros
@pytest.mark.parametrize(("params", "message"), [
    (["cpu_affinity:=99"], "parameter 'cpu_affinity': CPU 99 does not exist; this machine "
                           f"has CPUs {format_cpu_ranges(known_cpus())}"),
    (["sched_policy:=fifo", "rt_priority:=0"],
     "parameter 'rt_priority': got 0, expected 1..99 with sched_policy 'fifo'"),
    (["executor:=turbo"], "parameter 'executor': got 'turbo', expected one of "
                          "'single_threaded', 'multi_threaded', 'events'"),
])
def test_node_refuses_bad_rt_parameters(procs, ring_name, params, message) -> None:
    proc = procs.node("camera_node", f"ring_name:={ring_name}", *params)
    assert proc.wait(timeout=30) == 2
    fatal = [x for x in procs.output("camera_node").splitlines() if "FATAL" in x]
    assert len(fatal) == 1 and message in fatal[0], procs.output("camera_node")


@needs_ros
@needs_setpriv
def test_node_with_require_realtime_exits_when_refused(procs, ring_name) -> None:
    from vr_stream_ros.graph.processes import executable_path
    proc = procs.start("camera_node", [*DROP_RT_CAPS, executable_path("camera_node"),
                                       "--ros-args", "-p", f"ring_name:={ring_name}", "-p",
                                       "sched_policy:=fifo", "-p", "rt_priority:=90", "-p",
                                       "require_realtime:=true"])
    assert proc.wait(timeout=30) == 2
    fatal = [x for x in procs.output("camera_node").splitlines() if "FATAL" in x]
    assert len(fatal) == 1 and "require_realtime is set and the kernel refused: " \
        "sched_policy=fifo prio 90 refused" in fatal[0] and "rtprio 99" in fatal[0], fatal


@needs_ros
def test_multi_threaded_executor_runs_the_graph(procs, ring_name, port) -> None:
    procs.receiver("--port", str(port), "--duration", "20", "--quiet")
    procs.node("camera_node", f"ring_name:={ring_name}", "executor:=multi_threaded")
    procs.node("headset_bridge_node", f"ring_name:={ring_name}", f"headset_port:={port}",
               "executor:=multi_threaded", "gc_mode:=manual", "sdp_path:=''")
    from test_latency_topic import _collect

    from vr_stream_ros.msg import LatencyStats
    messages = _collect(LatencyStats, "/latency", 2, timeout=30)
    assert messages and messages[-1].frames_sent > 0
