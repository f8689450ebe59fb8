"""The launch file and `make run` start the graph the expectations below state.

Expectations are written out here (node names, executables, namespace, parameters from
config/stream.yaml read with plain YAML), not derived from vr_stream_ros.graph, so a
mistake there cannot hide behind a test that compares the code with itself.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import shutil
import signal
import subprocess
import time

import pytest
import yaml
from conftest import needs_ros

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


def _ros2_launch(*args: str, stop_after: float | None = None) -> tuple[int, str]:
    """Run the real `ros2 launch`; SIGINT it after ``stop_after`` s; (exit code, output)."""
    proc = subprocess.Popen(["ros2", "launch", "vr_stream_ros", "stream.launch.py", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    if stop_after is not None:
        time.sleep(stop_after)
        proc.send_signal(signal.SIGINT)
    try:
        out, _ = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
    return proc.returncode, out


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
