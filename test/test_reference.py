"""docs/reference.md is what the code generates, and graph/topics.py is what the nodes do."""

from __future__ import annotations

import difflib
import importlib.util
import os
import uuid

import pytest
from conftest import needs_ros, wait_for

from vr_stream_ros.graph import launches as graph
from vr_stream_ros.graph import reference
from vr_stream_ros.graph.topics import CONDITIONS, NODE_TOPICS, NodeTopics

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
STANDARD = {"/rosout", "/parameter_events"}  # every rclpy node has these


def test_reference_md_is_what_the_code_generates() -> None:
    want = reference.generate(ROOT)
    with open(os.path.join(ROOT, "docs", "reference.md")) as f:
        have = f.read()
    if have != want:
        diff = list(difflib.unified_diff(have.splitlines(), want.splitlines(), "docs/reference.md",
                                         "generated", n=0, lineterm=""))
        pytest.fail(f"docs/reference.md differs from what the code generates: run "
                    f"`{reference.REGENERATE}` and commit it. First differences:\n"
                    + "\n".join(diff[:12]), pytrace=False)


def test_reference_names_every_parameter_argument_topic_and_field() -> None:
    text = reference.generate(ROOT)
    for _node, specs in graph.NODES:
        for spec in specs:
            assert f"| `{spec.name}` |" in text, spec.name
    for argument in graph.LAUNCH_ARGUMENTS:
        assert f"| `{argument.name}` |" in text, argument.name
    for node in NODE_TOPICS:
        for topic in node.topics:
            assert f"| `{topic.name}` | `{topic.type}` |" in text, topic.name
    assert "| `width` | integer | `1280` | an integer in 16..4096 | at start" in text
    assert "| `capture_mono_ns` | `uint64` | CLOCK_MONOTONIC at capture" in text
    assert "| `webrtc_port` | headset_bridge_node.`webrtc_port` | `8080` |" in text


def test_msg_comments_become_descriptions() -> None:
    intro, lines = reference.parse_msg(
        "# What it is.\n# Second line.\n\nuint32 a   # first\n# about b,\n# in two lines\n"
        "string[] b\n# a section\nuint8 c  # own\nuint8 d\n")
    assert intro == "What it is. Second line."
    assert [(m.type, m.name, m.comment) for m in lines] == [
        ("uint32", "a", "first"), ("string[]", "b", "about b, in two lines"),
        ("", "", "a section"), ("uint8", "c", "own"), ("uint8", "d", "")]


def test_check_mode_reports_a_stale_file(tmp_path, capsys) -> None:
    for sub in ("msg", "docs", "config"):
        os.symlink(os.path.join(ROOT, sub), tmp_path / sub) if sub != "docs" else \
            (tmp_path / sub).mkdir()
    assert reference.main(["--root", str(tmp_path), "--check"]) == 1
    assert "run `make reference`" in capsys.readouterr().err
    assert reference.main(["--root", str(tmp_path)]) == 0
    assert reference.main(["--root", str(tmp_path), "--check"]) == 0


# -- the topic spec against the real nodes ---------------------------------------------
def _holds(condition: str) -> bool:
    return {"send_detections:=true": True,  # the default, which the nodes below keep
            "vision_msgs is installed": importlib.util.find_spec("vision_msgs") is not None,
            "frame_source is the topic": False,  # the camera runs beside it: the ring
            "stereo:=false": True,  # the camera below is mono (the default)
            "stereo:=true": False,
            }[condition]


def test_every_topic_condition_is_decidable() -> None:
    used = {t.only_if for n in NODE_TOPICS for t in n.topics if t.only_if}
    assert used <= set(CONDITIONS)
    for condition in CONDITIONS:
        _holds(condition)  # a KeyError here: teach _holds the new condition


def _expected(node: NodeTopics) -> set[tuple[str, str, str]]:
    return {(t.name if t.name.startswith("/") else "/" + t.name, t.type, t.direction)
            for t in node.topics if not t.only_if or _holds(t.only_if)}


def _observed(probe, name: str) -> set[tuple[str, str, str]] | None:
    from rclpy.node import NodeNameNonExistentError
    try:
        pubs = probe.get_publisher_names_and_types_by_node(name, "/")
        subs = probe.get_subscriber_names_and_types_by_node(name, "/")
    except NodeNameNonExistentError:
        return None
    return {(topic, t, direction) for direction, found in (("pub", pubs), ("sub", subs))
            for topic, types in found for t in types if topic not in STANDARD}


def _start(procs, ring_name: str, node: NodeTopics, tmp_path) -> None:
    from vr_stream_ros.graph.runner import executable_path
    if node.executable == "dashboard":
        procs.start("dashboard", [executable_path("dashboard")])
        return
    procs.node("camera_node", f"ring_name:={ring_name}", "width:=320", "height:=240",
               "fps:=15.0")
    if node.executable == "headset_bridge_node":
        procs.node("headset_bridge_node", f"ring_name:={ring_name}",
                   f"sdp_path:={tmp_path / 's.sdp'}", "headset_port:=9")
    elif node.executable == "detector_node":
        procs.node("detector_node", f"ring_name:={ring_name}", "imgsz:=64")


@needs_ros
@pytest.mark.parametrize("node", NODE_TOPICS, ids=[n.executable for n in NODE_TOPICS])
def test_node_has_exactly_the_topics_and_qos_the_spec_states(procs, ring_name, tmp_path,
                                                             node) -> None:
    if node.executable == "detector_node" and importlib.util.find_spec("ultralytics") is None:
        pytest.skip("detector_node needs the YOLO extra (make test YOLO=1)")
    import rclpy
    from rclpy.qos import DurabilityPolicy, ReliabilityPolicy
    _start(procs, ring_name, node, tmp_path)
    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        probe = rclpy.create_node(f"reference_probe_{uuid.uuid4().hex[:8]}", context=context)
        want = _expected(node)
        # Discovery is gradual: wait until everything stated is there (or time runs out).
        def settled() -> set | None:
            found = _observed(probe, node.name)
            return found if found is not None and want <= found else None
        seen = wait_for(settled, 60, interval=0.5) or _observed(probe, node.name) or set()
        assert seen == want, (f"{node.name}: graph/topics.py and the running node differ\n"
                              f"  only in the spec: {sorted(want - seen)}\n"
                              f"  only in the node: {sorted(seen - want)}\n"
                              + procs.output(node.executable)[-2000:])
        # QoS as discovery reports it: reliability and durability (a remote endpoint's
        # history depth is not announced by DDS, so it cannot be checked this way).
        for topic in node.topics:
            if topic.only_if and not _holds(topic.only_if):
                continue
            full = topic.name if topic.name.startswith("/") else "/" + topic.name
            infos = (probe.get_publishers_info_by_topic(full) if topic.direction == "pub"
                     else probe.get_subscriptions_info_by_topic(full))
            mine = [i for i in infos if i.node_name == node.name]
            assert mine, f"{node.name} {full}: no endpoint info"
            for info in mine:
                assert info.qos_profile.reliability == {
                    "reliable": ReliabilityPolicy.RELIABLE,
                    "best_effort": ReliabilityPolicy.BEST_EFFORT}[topic.qos.reliability], full
                assert info.qos_profile.durability == DurabilityPolicy.VOLATILE, full
        probe.destroy_node()
    finally:
        rclpy.shutdown(context=context)
