"""Short versions of ``make soak`` and ``make chaos`` (issue 16): the real graph, supervised
as ``make run`` supervises it, on this test's own ring, ports and SDP file.

The long runs (10 minutes, every node killed and frozen, the detector and a WebRTC
viewer on) are make targets; these keep the same code honest in CI in ~35 s."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import needs_ros

from vr_stream_ros.graph import launches as graph
from vr_stream_ros.graph.runner import Supervisor

pytestmark = needs_ros


def test_short_soak_loses_no_frame_and_leaks_no_fd(procs, ring_name, tmp_path) -> None:
    from vr_stream_ros.bench import soak
    result = soak.run(12, 3, fps=30, width=640, height=480, yolo=False, rt_profile="none",
                      webrtc=False, out_dir=str(tmp_path), ring=ring_name, group=procs,
                      say=lambda _line: None)
    assert result["failed"] is None, result
    assert result["frames_decoded"] > 150, result  # 12 s at 30 fps, start-up aside
    lost = result["frames_lost"]
    assert (lost["incomplete_at_receiver"], lost["never_decoded_per_rtcp"],
            lost["decode_errors"]) == (0, 0, 0), result
    for name in ("camera_node", "headset_bridge_node", "receiver"):
        assert result["fd_growth"][name] == 0, result
    assert result["memory_budget_mib"]["camera_node"]["rss_mib"] > 0, result
    assert result["shm_left"] == [], result


def test_chaos_camera_killed_respawns_and_bridge_survives_a_freeze(procs, ring_name,
                                                                    tmp_path) -> None:
    from vr_stream_ros.bench import chaos
    result = chaos.run(1, 60, 2.0, 1.5, fps=30, width=640, height=480, yolo=False,
                       rt_profile="none", out_dir=str(tmp_path), ring=ring_name, group=procs,
                       events_plan=[("kill", "camera_node"), ("stop", "headset_bridge_node")],
                       say=lambda _line: None)
    assert result["failed"] is None, result
    kill, stop = result["events"]
    assert kill["respawned"] and kill["others_same_pid"], kill
    assert kill["decode_resumed_s"] is not None and kill["outage_ms"] > 0, kill
    assert [r["name"] for r in result["respawns"]] == ["camera_node"], result
    assert not stop["respawned"] and stop["others_same_pid"], stop
    assert stop["after_cont_s"] is not None and stop["outage_ms"] >= 1500, stop
    # The killed participant's segment and ports went (the Supervisor or the surviving
    # Fast DDS participants removed them, whoever came first): none left while it ran on.
    assert kill["shm_unused"] == [], kill
    assert result["shm_left"] == [], result


def _sleeper(group, name: str) -> None:
    group.start(name, [sys.executable, "-c", "import time; time.sleep(60)"])


def test_supervisor_respawns_only_what_a_signal_killed(procs) -> None:
    cpu = max(os.sched_getaffinity(0))
    launches = [graph.NodeLaunch("camera_node", "camera_node", {"cpu_affinity": str(cpu)},
                                 respawn=True),
                graph.NodeLaunch("headset_bridge_node", "headset_bridge_node", respawn=False),
                graph.NodeLaunch("detector_node", "detector_node", essential=False)]
    for n in launches:
        _sleeper(procs, n.name)
    said: list[str] = []
    supervisor = Supervisor(procs, launches, say=said.append)
    camera = procs.process("camera_node").pid
    os.kill(camera, signal.SIGKILL)
    os.kill(procs.process("detector_node").pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while not supervisor.respawns and time.monotonic() < deadline:
        assert supervisor.check() is None
        time.sleep(0.05)
    assert [(r.name, r.signal, r.old_pid) for r in supervisor.respawns] == [
        ("camera_node", signal.SIGKILL, camera)]
    assert procs.process("camera_node").poll() is None, "the new camera_node runs"
    # ... on its own CPUs from the start, not only once it applies them itself
    assert os.sched_getaffinity(procs.process("camera_node").pid) == {cpu}
    assert any("detector_node exited" in s for s in said), said
    os.kill(procs.process("headset_bridge_node").pid, signal.SIGKILL)  # respawn:=false
    failed = None
    while failed is None and time.monotonic() < deadline:
        failed = supervisor.check()
        time.sleep(0.05)
    assert failed == f"headset_bridge_node exited with code {-signal.SIGKILL}", failed


def test_supervisor_does_not_respawn_an_exit_with_a_code(procs) -> None:
    launches = [graph.NodeLaunch("camera_node", "camera_node", respawn=True)]
    procs.start("camera_node", [sys.executable, "-c", "raise SystemExit(2)"])
    supervisor = Supervisor(procs, launches, say=lambda _s: None)
    procs.process("camera_node").wait(timeout=10)
    assert supervisor.check() == "camera_node exited with code 2"
    assert supervisor.respawns == []


@pytest.mark.parametrize("value, expected", [("false", False), ("true", True)])
def test_respawn_argument_reaches_essential_nodes_only(value, expected) -> None:
    launches = graph.node_launches({"respawn": value, "yolo": "true"})
    assert {n.name: n.respawn for n in launches} == {
        "camera_node": expected, "headset_bridge_node": expected, "detector_node": False}


def test_dds_zombie_is_only_a_file_whose_owner_died(tmp_path) -> None:
    """graph/dds_shm.py on real flocks: a live holder's files stay, a dead one's go."""
    from vr_stream_ros.graph.dds_shm import SHM_DIR, remove_zombies, zombies
    base = f"fastrtps_{os.urandom(8).hex()}"
    lock, segment = f"{base}_el", base
    for name in (lock, segment):
        open(os.path.join(SHM_DIR, name), "wb").close()
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, sys, time; f = open(sys.argv[1], 'ab'); fcntl.flock(f, fcntl.LOCK_EX); "
        "print('locked', flush=True); time.sleep(60)"), os.path.join(SHM_DIR, lock)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert zombies({lock}) == [], "a live owner's segment is not a zombie"
        holder.kill()
        holder.wait()
        assert zombies({lock}) == sorted([lock, segment])
        assert remove_zombies({lock}) == sorted([lock, segment])
        assert not any(base in n for n in os.listdir(SHM_DIR))
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
        for name in (lock, segment):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(SHM_DIR, name))
