"""The launch file and `make run` start the graph the expectations below state.

Expectations are written out here (node names, executables, namespace, parameters from
config/stream.yaml read with plain YAML), not derived from vr_stream_ros.graph, so a
mistake there cannot hide behind a test that compares the code with itself.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable

import pytest
import yaml
from conftest import needs_ros, wait_for

from vr_stream_ros.graph.processes import ProcessGroup

LAUNCH_FILE = os.path.join(os.path.dirname(__file__), "..", "launch", "stream.launch.py")
CONFIG = os.path.join(os.path.dirname(__file__), "..", "config", "stream.yaml")
ARGUMENTS = {"width": "640", "height": "480", "transport": "tcp", "namespace": "robot2",
             "large_shm": "true", "webrtc_port": "8443", "yolo": "true"}


def _shipped(node: str) -> dict:
    """config/stream.yaml's parameters of ``node`` ('/**' ones included), read directly."""
    with open(CONFIG) as f:
        data = yaml.safe_load(f)
    return {**data["/**"]["ros__parameters"], **data[f"/**/{node}"]["ros__parameters"]}


def _expected(node: str) -> dict:
    """What ARGUMENTS should make of ``node``'s parameters."""
    values = _shipped(node)
    changed = {"camera_node": {"width": 640, "height": 480},
               "headset_bridge_node": {"transport": "tcp", "webrtc_port": 8443},
               "detector_node": {}}[node]
    return {**values, **changed}


def _check_env(env: dict[str, str]) -> None:
    path = env["FASTRTPS_DEFAULT_PROFILES_FILE"]
    assert path.endswith(os.path.join("config", "fastdds_large_shm.xml")) and os.path.isfile(path)


def test_launch_file_names_no_node_itself() -> None:
    with open(LAUNCH_FILE) as f:
        tree = ast.parse(f.read())
    strings = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant)
               and isinstance(n.value, str)}
    for node in ("camera_node", "headset_bridge_node", "detector_node"):
        assert node not in strings, f"launch file names {node!r} itself: it must come from graph"


@needs_ros
def test_make_run_commands_start_the_expected_nodes() -> None:
    from vr_stream_ros.graph.runner import node_commands
    commands = dict(node_commands(ARGUMENTS))
    assert list(commands) == ["camera_node", "headset_bridge_node", "detector_node"]
    for name, argv in commands.items():
        assert argv[0] == "env"
        _check_env(dict(a.split("=", 1) for a in argv[1:] if "=" in a and ":=" not in a))
        exe = next(a for a in argv if a.endswith(os.path.join("lib", "vr_stream_ros", name)))
        ros_args = argv[argv.index(exe) + 1:]
        assert ros_args[:5] == ["--ros-args", "-r", f"__node:={name}", "-r", "__ns:=/robot2"]
        params = {ros_args[i + 1].split(":=", 1)[0]: yaml.safe_load(ros_args[i + 1].split(
            ":=", 1)[1]) for i, a in enumerate(ros_args) if a == "-p"}
        assert params == _expected(name), name



def _needs_launch_ros() -> None:
    pytest.importorskip(
        "launch_ros", reason="launch_ros has no PyPI wheel; this runs on a robot with "
        "ros-jazzy-launch-ros from apt (or with launch/launch_ros built from source)")


def _nodes_of_launch_file(arguments: dict[str, str]):
    """Execute the launch file's description as `ros2 launch` would, up to its Node actions."""
    from launch import LaunchContext
    from launch.actions import DeclareLaunchArgument, OpaqueFunction, RegisterEventHandler
    from launch_ros.actions import Node
    spec = importlib.util.spec_from_file_location("stream_launch", LAUNCH_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    description = module.generate_launch_description()
    context = LaunchContext()
    declared = [e for e in description.entities if isinstance(e, DeclareLaunchArgument)]
    context.launch_configurations.update(
        {e.name: "".join(s.perform(context) for s in e.default_value) for e in declared})
    context.launch_configurations.update(arguments)
    opaque = next(e for e in description.entities if isinstance(e, OpaqueFunction))
    entities = opaque.execute(context)
    nodes = [e for e in entities if isinstance(e, Node)]
    handlers = [e for e in entities if isinstance(e, RegisterEventHandler)]
    return {e.name for e in declared}, nodes, handlers, context


def test_launch_description_builds_the_expected_node_actions() -> None:
    _needs_launch_ros()
    from launch.utilities import perform_substitutions
    declared, nodes, handlers, context = _nodes_of_launch_file(ARGUMENTS)
    assert {"config", "headset_ip", "width", "namespace", "large_shm", "webrtc_port",
            "webrtc_bind", "webrtc_token", "yolo", "rt_profile"} <= declared
    assert len(handlers) == len(nodes), "every node has an exit handler"
    seen = {}
    for node in nodes:
        node._perform_substitutions(context)  # what Node.execute does before starting it
        assert node.node_package == "vr_stream_ros"
        assert node.expanded_node_namespace == "/robot2"
        files = [p for p, is_file in node._Node__expanded_parameter_arguments if is_file]
        assert len(files) == 1
        with open(files[0]) as f:
            params = next(iter(yaml.safe_load(f).values()))["ros__parameters"]
        os.unlink(files[0])
        env = {perform_substitutions(context, k): perform_substitutions(context, v)
               for k, v in node.additional_env}
        _check_env(env)
        seen[node.node_executable] = (node.node_name, params)
    assert list(seen) == ["camera_node", "headset_bridge_node", "detector_node"]
    for executable, (name, params) in seen.items():
        assert name == f"/robot2/{executable}"
        assert params == _expected(executable), executable


def test_launch_description_refuses_a_misspelled_argument() -> None:
    _needs_launch_ros()
    with pytest.raises(RuntimeError, match="'widht' is not known; did you mean 'width'"):
        _nodes_of_launch_file({"widht": "640"})


def _ros2_launch(*args: str, stop_after: float | None = None,
                 during: Callable[[subprocess.Popen, Callable[[], str]], None] | None = None,
                 timeout: float = 60) -> tuple[int, str]:
    """Run the real `ros2 launch` in its own process group; (exit code, output).

    ``during(proc, output)`` runs while it does (``output()``: what it printed so far);
    then it is SIGINTed after ``stop_after`` s, or left to end by itself within
    ``timeout`` s. Nothing it started outlives this, even when ``during`` fails."""
    with tempfile.TemporaryDirectory(prefix="vrtest_ros2_launch_") as logs, \
            ProcessGroup(logs) as group:
        proc = group.start("launch", ["ros2", "launch", "vr_stream_ros", "stream.launch.py",
                                      *args])
        if during is not None:
            during(proc, lambda: group.output("launch"))
        if stop_after is not None:
            time.sleep(stop_after)
            proc.send_signal(signal.SIGINT)
        code = group.wait(proc, timeout)  # past timeout: SIGINT, then SIGKILL, to the group
        return code, group.output("launch")


_STARTED = re.compile(r"\[(\w+)-\d+\]: process started with pid \[(\d+)\]")


def _started_pids(out: str) -> dict[str, list[int]]:
    """Each node's pids, in the order launch's "process started" lines gave them."""
    pids: dict[str, list[int]] = {}
    for name, pid in _STARTED.findall(out):
        pids.setdefault(name, []).append(int(pid))
    return pids


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


needs_ros2_launch = pytest.mark.skipif(
    shutil.which("ros2") is None or importlib.util.find_spec("ros2launch") is None,
    reason="needs ROS 2's `ros2 launch` (ros-jazzy-ros2launch from apt, or built from source)")


@needs_ros
@needs_ros2_launch
def test_ros2_launch_refuses_misspelled_argument_in_one_line(ring_name) -> None:
    code, out = _ros2_launch("widht:=640", f"ring_name:={ring_name}")
    assert code == 1, out
    errors = [line for line in out.splitlines() if "[ERROR]" in line]
    assert len(errors) == 1 and "did you mean 'width'?" in errors[0], out
    assert "process started" not in out


@needs_ros
@needs_ros2_launch
def test_ros2_launch_crash_is_visible_and_clean_stop_is_quiet(ring_name, tmp_path, port) -> None:
    common = (f"ring_name:={ring_name}", f"sdp_path:={tmp_path / 's.sdp'}",
              f"headset_port:={port}")
    broken = tmp_path / "no_camera.yaml"  # camera_node starts, finds no device, exits 2
    broken.write_text("/**/camera_node:\n  ros__parameters:\n    camera: v4l2\n"
                      "    device: /dev/video77\n")
    code, out = _ros2_launch(*common, f"config:={broken}")
    assert code == 1, out
    assert "camera_node exited with code 2: the stream cannot go on without it" in out, out
    code, out = _ros2_launch(*common, stop_after=8)
    assert code == 0, out
    assert out.count("process has finished cleanly") == 2, out
    assert "was required" not in out and "[ERROR]" not in out, out


@needs_ros
@needs_ros2_launch
def test_ros2_launch_respawns_a_killed_camera_and_respawn_false_ends(ring_name, tmp_path, port,
                                                                     procs) -> None:
    """SIGKILL camera_node under the real `ros2 launch`: with respawn:=false the launch ends
    by itself (exit 1, saying why; the bridge stopped cleanly); with respawn (the default) launch
    starts the camera again (new pid, its respawn lines), the bridge keeps its pid and the
    receiver decodes the new camera's frames. The first run's killed camera leaves its ring
    behind (SIGKILL cannot be caught); the second run's camera replaces it (frame_ring.py's
    stale-writer rule), so the ring fixture's /dev/shm check covers both runs."""
    common = (f"ring_name:={ring_name}", f"sdp_path:={tmp_path / 's.sdp'}",
              f"headset_port:={port}")
    ring_path = os.path.join("/dev/shm", ring_name)
    seen: dict[str, float] = {}  # what the callbacks below did, and when

    def started(output: Callable[[], str]) -> dict[str, list[int]]:
        pids = wait_for(lambda: (p := _started_pids(output())) and len(p) == 2 and p, 30)
        assert pids, output()
        return pids

    def kill_camera_once_ring_exists(proc, output) -> None:
        pids = started(output)
        assert wait_for(lambda: os.path.exists(ring_path), 30), output()
        seen["killed_at"] = time.monotonic()
        os.kill(pids["camera_node"][0], signal.SIGKILL)

    code, out = _ros2_launch(*common, "respawn:=false", during=kill_camera_once_ring_exists,
                             timeout=15)
    assert time.monotonic() - seen["killed_at"] < 15, out  # it ended by itself
    assert code == 1, out
    assert "camera_node exited with code -9: the stream cannot go on without it" in out, out
    assert len(_started_pids(out)["camera_node"]) == 1, out  # not started again
    bridge = _started_pids(out)["headset_bridge_node"][0]
    assert f"process has finished cleanly [pid {bridge}]" in out, out
    assert os.path.exists(ring_path)  # the killed camera's; the next camera replaces it

    summary = tmp_path / "receiver.json"
    receiver = procs.receiver("--port", str(port), "--bind", "127.0.0.1",
                              "--summary-json", str(summary))

    def kill_camera_see_it_back(proc, output) -> None:
        pids = started(output)
        camera, bridge = pids["camera_node"][0], pids["headset_bridge_node"][0]
        assert procs.wait_for_output("receiver", r"decoded [1-9]", 30), output()
        seen["killed_ns"] = time.monotonic_ns()
        os.kill(camera, signal.SIGKILL)
        back = wait_for(lambda: _started_pids(output()).get("camera_node", [])[1:], 15)
        assert back, output()
        assert back[0] != camera and "__node:=camera_node" in _cmdline(back[0]), output()
        assert "__node:=headset_bridge_node" in _cmdline(bridge), output()  # still running
        seen["killed"], seen["respawned"], seen["bridge"] = camera, back[0], bridge
        time.sleep(3)  # the new camera's frames reach the receiver

    code, out = _ros2_launch(*common, during=kill_camera_see_it_back, stop_after=0.5)
    procs.stop(receiver)
    assert code == 0, out
    assert "removed a stale segment left by a camera_node" in out, out  # the first run's ring
    assert f"process has died [pid {seen['killed']}, exit code -9" in out, out
    assert "camera_node was killed (signal 9); starting it again in 0.1 s" in out, out
    pids = _started_pids(out)
    assert pids["camera_node"][1:] == [seen["respawned"]], out
    assert pids["headset_bridge_node"] == [seen["bridge"]], out  # never restarted
    for pid in (seen["respawned"], seen["bridge"]):
        assert f"process has finished cleanly [pid {pid}]" in out, out
    assert "Caught exception" not in out, out
    with open(summary) as f:
        rx = json.load(f)
    decoded_ns = [rx["decoded_origin_mono_ns"] + ms * 1e6 for ms in rx["decoded_at_ms"]]
    after = [t for t in decoded_ns if t > seen["killed_ns"] + 100e6]  # the respawned camera's
    assert len(after) >= 30, (len(after), procs.output("receiver"), out)
