"""Generate docs/reference.md from the code: nodes, topics, parameters, launch arguments, messages.

    python -m vr_stream_ros.graph.reference            # (re)write docs/reference.md
    python -m vr_stream_ros.graph.reference --check    # exit 1 if it is out of date

Sources: graph/node_params.py (parameters), graph/topics.py (topics), graph/launches.py
and config/stream.yaml (launch arguments), msg/*.msg and their comments (messages).
No rclpy here.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass

from vr_stream_ros.graph import launches as graph
from vr_stream_ros.graph.param_spec import ParamSpec, Value
from vr_stream_ros.graph.topics import NODE_TOPICS, NodeTopics

REGENERATE = "make reference"
"""The command that rewrites docs/reference.md (python -m vr_stream_ros.graph.reference)."""

_ROS_TYPE = {bool: "bool", int: "integer", float: "double", str: "string", list: "integer array"}


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _default(value: Value) -> str:
    if isinstance(value, bool):
        return "`true`" if value else "`false`"
    if value == "":
        return "`''`"
    return f"`{value}`"


def _table(header: tuple[str, ...], rows: list[tuple[object, ...]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return lines


def _parameter_rows(specs: tuple[ParamSpec, ...]) -> list[tuple[object, ...]]:
    return [(f"`{s.name}`", _ROS_TYPE[s.kind], _default(s.default), s.allowed(),
             "at start (read-only)" if s.read_only else "at run time", s.description)
            for s in specs]


def _node_section(node: NodeTopics, specs: tuple[ParamSpec, ...] | None) -> list[str]:
    title = node.name if node.name == node.executable else \
        f"{node.executable} (node `{node.name}`)"
    lines = [f"### {title}", "", node.summary, "", "Topics:", ""]
    lines += _table(("topic", "type", "direction", "QoS", "when"), [
        (f"`{t.name}`", f"`{t.type}`", "publishes" if t.direction == "pub" else "subscribes",
         t.qos.describe(), t.when + (f" (only if {t.only_if})" if t.only_if else ""))
        for t in node.topics])
    lines.append("")
    if specs:
        lines += ["Parameters (set in config/stream.yaml, by a launch argument, or "
                  "`--ros-args -p name:=value`):", ""]
        lines += _table(("parameter", "type", "default", "allowed", "changeable",
                         "description"), _parameter_rows(specs))
        lines.append("")
    return lines


def _launch_section(config_path: str) -> list[str]:
    shipped = graph.argument_defaults(graph.load_config(config_path))
    rows: list[tuple[object, ...]] = [
        (f"`{graph.CONFIG_ARGUMENT}`", "which parameters file", "share/vr_stream_ros/config/"
         "stream.yaml", "a path", "Parameters file with every node parameter; the "
         "arguments below override single values.")]
    for a in graph.LAUNCH_ARGUMENTS:
        sets = ("every node's `" + a.spec.name + "`" if a.node == graph.EVERY_NODE
                else f"{a.node}.`{a.spec.name}`" if a.node else "the graph")
        rows.append((f"`{a.name}`", sets, f"`{shipped[a.name]}`", a.spec.allowed(),
                     a.spec.description))
    return [
        "## Launch arguments", "",
        "`ros2 launch vr_stream_ros stream.launch.py name:=value ...` and "
        "`make run ARGS=\"name:=value ...\"` take the same arguments. One left unset takes "
        "its value from the `config` file (shipped default shown); an unknown name is "
        "refused with the closest known one.", "",
        *_table(("argument", "sets", "shipped default", "allowed", "description"), rows), ""]


@dataclass(frozen=True)
class MsgLine:
    """One line of a .msg file: a field (type, name) or a comment between fields."""

    type: str
    name: str
    comment: str


def parse_msg(text: str) -> tuple[str, list[MsgLine]]:
    """(the leading comment block, the fields and the comments between them).

    A comment block right above a field that has no comment of its own describes that
    field; any other comment between fields stays a note of its own.
    """
    intro: list[str] = []
    lines: list[MsgLine] = []
    pending: list[str] = []
    for raw in text.splitlines():
        code, _, comment = raw.partition("#")
        code, comment = code.strip(), comment.strip()
        if not code:
            if comment and (lines or pending):
                pending.append(comment)
            elif comment:
                intro.append(comment)
            elif not lines:  # the blank line that ends the leading block
                intro, pending = intro + pending, []
            else:
                lines += [MsgLine("", "", c) for c in pending]
                pending = []
            continue
        type_, name = code.split()[:2]
        if pending and not comment:
            comment, pending = " ".join(pending), []
        lines += [MsgLine("", "", c) for c in pending]
        pending = []
        lines.append(MsgLine(type_, name, comment))
    lines += [MsgLine("", "", c) for c in pending]
    return " ".join(intro), lines


def _message_section(msg_dir: str) -> list[str]:
    out = ["## Messages", "",
           "Field by field, from msg/*.msg and their comments.", ""]
    for file in sorted(f for f in os.listdir(msg_dir) if f.endswith(".msg")):
        with open(os.path.join(msg_dir, file)) as f:
            intro, lines = parse_msg(f.read())
        out += [f"### vr_stream_ros/msg/{file[:-4]}", ""]
        if intro:
            out += [intro, ""]
        rows = [(f"`{m.name}`", f"`{m.type}`", m.comment) if m.name else
                ("", "", f"*{m.comment}*") for m in lines]
        out += [*_table(("field", "type", "description"), rows), ""]
    return out


def generate(root: str) -> str:
    """The text of docs/reference.md for the repository at ``root``."""
    specs = dict(graph.NODES)
    lines = [
        "# vr_stream_ros reference", "",
        f"Generated from the code by `{REGENERATE}` (`python -m vr_stream_ros.graph.reference`)"
        ": parameters from `vr_stream_ros/graph/node_params.py`, topics from "
        "`vr_stream_ros/graph/topics.py`, launch arguments from "
        "`vr_stream_ros/graph/launches.py` and `config/stream.yaml`, messages from `msg/`. "
        "Do not edit by hand: a test fails when this file and the code differ.", "",
        "Every parameter is read once at start (read-only): change it by restarting the node "
        "with another value; `ros2 param describe /camera_node width` shows the same "
        "constraints. Topic names without a leading `/` are relative: with "
        "`namespace:=robot2` they become `/robot2/...`.", "",
        "## Nodes", ""]
    for node in NODE_TOPICS:
        lines += _node_section(node, specs.get(node.executable))
    lines += _launch_section(os.path.join(root, "config", "stream.yaml"))
    lines += _message_section(os.path.join(root, "msg"))
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    """Write docs/reference.md (or, with --check, say whether it is up to date)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=".", help="repository root (has msg/ and docs/)")
    parser.add_argument("--check", action="store_true", help="only compare, exit 1 if stale")
    ns = parser.parse_args(argv)
    path = os.path.join(ns.root, "docs", "reference.md")
    text = generate(ns.root)
    if ns.check:
        try:
            with open(path) as f:
                current = f.read()
        except FileNotFoundError:
            current = ""
        if current != text:
            print(f"{path} is out of date: run `{REGENERATE}`", file=sys.stderr)
            return 1
        return 0
    with open(path, "w") as f:
        f.write(text)
    print(f"wrote {path} ({len(text)} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
