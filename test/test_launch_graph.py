"""The launch file and `make run` start the same graph, both from vr_stream_ros.graph."""

from __future__ import annotations

import ast
import os

import pytest

from vr_stream_ros.graph import launches as graph

LAUNCH_FILE = os.path.join(os.path.dirname(__file__), "..", "launch", "stream.launch.py")


def _launch_tree() -> ast.Module:
    with open(LAUNCH_FILE) as f:
        return ast.parse(f.read())


def test_launch_file_builds_nodes_only_from_graph() -> None:
    tree = _launch_tree()
    strings = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant)
               and isinstance(n.value, str)}
    for node, _specs in graph.NODES:
        assert node not in strings, f"launch file names {node!r} itself: it must come from graph"
    attributes = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)
                  and isinstance(n.value, ast.Name) and n.value.id == "graph"}
    assert {"node_launches", "LAUNCH_ARGUMENTS", "argument_defaults"} <= attributes
    node_calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call)
                  and getattr(n.func, "id", None) == "Node"]
    assert len(node_calls) == 1, "exactly one Node(...) built in a loop over graph.node_launches"
    keywords = {k.arg: ast.unparse(k.value) for k in node_calls[0].keywords}
    assert keywords["executable"] == "n.executable" and keywords["name"] == "n.name"
    assert keywords["parameters"] == "[n.parameters]"


def test_make_run_starts_the_graph_nodes_with_the_same_parameters() -> None:
    pytest.importorskip("ament_index_python")
    from vr_stream_ros.graph.runner import node_commands
    arguments = {"width": "640", "height": "480", "headset_ip": "127.0.0.1", "transport": "tcp"}
    commands = node_commands(arguments)
    launches = graph.node_launches(arguments)
    assert [name for name, _ in commands] == [n.name for n in launches]
    for (name, argv), launch in zip(commands, launches, strict=True):
        assert argv[0].endswith(os.path.join("lib", "vr_stream_ros", launch.executable))
        params = dict(argv[i + 1].split(":=", 1) for i, a in enumerate(argv) if a == "-p")
        assert params == {k: graph._ros_literal(v) for k, v in launch.parameters.items()}, name
        assert set(params) == {s.name for s in dict(graph.NODES)[name]}, "every parameter set"


def test_launch_description_with_real_launch_ros() -> None:
    pytest.importorskip(
        "launch_ros", reason="launch_ros has no PyPI wheel; this runs on a robot with "
        "ros-jazzy-launch-ros from apt (or a venv with launch/launch_ros built from source)")
    import importlib.util

    from launch import LaunchContext
    from launch.actions import DeclareLaunchArgument, OpaqueFunction
    spec = importlib.util.spec_from_file_location("stream_launch", LAUNCH_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    description = module.generate_launch_description()
    declared = {e.name for e in description.entities if isinstance(e, DeclareLaunchArgument)}
    assert declared == {a.name for a in graph.LAUNCH_ARGUMENTS} | {"config"}
    context = LaunchContext()
    context.launch_configurations.update(
        {e.name: "".join(s.perform(context) for s in e.default_value)
         for e in description.entities if isinstance(e, DeclareLaunchArgument)})
    context.launch_configurations["width"] = "640"
    opaque = next(e for e in description.entities if isinstance(e, OpaqueFunction))
    nodes = opaque.execute(context)
    assert [n.node_executable for n in nodes] == [
        n.executable for n in graph.node_launches({"width": "640"})]
