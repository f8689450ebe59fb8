"""Run the node graph with a local receiver standing in for the headset (`make run`).

It starts exactly the nodes of ``vr_stream_ros.graph.launches`` (the launch file's source too),
each in its own process, plus ``vr_stream_ros.tools.receiver``; prints the receiver's
per-second figures; and after ``--duration`` seconds (or Ctrl-C) stops everything and
prints a summary. Arguments use launch syntax: ``width:=640 transport:=tcp``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable

from vr_stream_ros.graph import launches as graph
from vr_stream_ros.graph.param_spec import ParameterError
from vr_stream_ros.graph.processes import ProcessGroup, executable_path


def node_commands(arguments: dict[str, str], config: str | None = None
                  ) -> list[tuple[str, list[str]]]:
    """(node name, argv) for every node of the graph."""
    return [(n.name, n.command(executable_path(n.executable)))
            for n in graph.node_launches(arguments, config)]


def optional_nodes(arguments: dict[str, str], config: str | None = None) -> set[str]:
    """Nodes whose exit does not end the run (the detector)."""
    return {n.name for n in graph.node_launches(arguments, config) if not n.essential}


def _printer(prefix: str, quiet_debug: bool) -> Callable[[str], None]:
    def echo(line: str) -> None:
        if not (quiet_debug and "[DEBUG]" in line):
            print(f"{prefix} {line}" if prefix else line, flush=True)
    return echo


def _parse(argv: list[str] | None) -> tuple[argparse.Namespace, dict[str, str]]:
    parser = argparse.ArgumentParser(
        prog="vr_stream_run", description=__doc__.splitlines()[0],
        epilog="Launch arguments: " + ", ".join(a.name for a in graph.LAUNCH_ARGUMENTS))
    parser.add_argument("--duration", type=float, default=0.0,
                        help="seconds to run, 0 = until Ctrl-C")
    parser.add_argument("--config", default=None, help="parameters file (config/stream.yaml)")
    parser.add_argument("--summary-json", default=None, help="write the receiver summary here")
    parser.add_argument("arguments", nargs="*", metavar="name:=value")
    ns = parser.parse_args(argv)
    arguments = {}
    for item in ns.arguments:
        name, sep, value = item.partition(":=")
        if not sep:
            parser.error(f"argument {item!r}: expected name:=value")
        arguments[name] = value
    return ns, arguments


def main(argv: list[str] | None = None) -> int:
    """Start receiver + graph, wait, stop, summarise; exit 0 when frames arrived."""
    ns, arguments = _parse(argv)
    try:
        commands = node_commands(arguments, ns.config)
        optional = optional_nodes(arguments, ns.config)
        values = {**graph.argument_defaults(graph.load_config(
            ns.config or graph.default_config_path())), **arguments}
    except ParameterError as exc:
        print(f"[vr_stream_run] {exc}", file=sys.stderr)
        return 2
    log_dir = tempfile.mkdtemp(prefix="vr_stream_run_")
    summary_path = ns.summary_json or os.path.join(log_dir, "receiver.json")
    receiver = [sys.executable, "-m", "vr_stream_ros.tools.receiver",
                "--port", values["headset_port"], "--summary-json", summary_path]
    if values["transport"] == "tcp":
        receiver.append("--tcp")
    if str(values["nack"]).lower() == "true":  # the headset asks for what it lost
        receiver.append("--nack")
    if str(values["jpeg_restart_interval"]) != "0":  # a lost stripe is concealed
        receiver.append("--conceal")
    webrtc = values["transport"] == "webrtc"
    if webrtc:  # the headset is a browser: open the page headset_bridge_node prints
        print(f"[vr_stream_run] transport:=webrtc: no local receiver; open the URL "
              f"headset_bridge_node prints in a browser; nodes: "
              f"{', '.join(n for n, _ in commands)}", flush=True)
    else:
        print(f"[vr_stream_run] receiver on port {values['headset_port']} "
              f"({values['transport']}) standing in for the headset; nodes: "
              f"{', '.join(n for n, _ in commands)}", flush=True)
    group = ProcessGroup(log_dir)
    stopping = threading.Event()

    def _stop(*_: object) -> None:
        stopping.set()

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    for name, cmd in [*([] if webrtc else [("receiver", receiver)]), *commands]:
        quiet = not (webrtc and name == "headset_bridge_node")  # its log has the URL
        group.start(name, cmd, echo=_printer("" if name == "receiver" else f"[{name}]", quiet))
        if name == "receiver":
            time.sleep(0.3)  # listening before the bridge sends (TCP connects at once)
    deadline = time.monotonic() + ns.duration if ns.duration > 0 else float("inf")
    failed = None
    gone: set[str] = set()
    while not stopping.is_set() and time.monotonic() < deadline:
        for name, proc, _log in group.procs:
            if proc.poll() is None or name in gone:
                continue
            if name in optional:  # the detector: the video path goes on without it
                print(f"[vr_stream_run] {name} exited with code {proc.returncode}; the "
                      "video path goes on", file=sys.stderr, flush=True)
                gone.add(name)
                continue
            failed = f"{name} exited with code {proc.returncode}"
            break
        if failed:
            break
        time.sleep(0.1)
    group.stop_all(timeout=5)  # bridge, camera, then receiver; their output drained
    if failed:
        print(f"[vr_stream_run] stopped early: {failed}", file=sys.stderr, flush=True)
        return 1
    if webrtc:
        print("[vr_stream_run] done (the browser's latency is on /latency)", flush=True)
        return 0
    try:
        with open(summary_path) as f:
            summary = json.load(f)
    except (OSError, ValueError):
        print("[vr_stream_run] the receiver wrote no summary", file=sys.stderr)
        return 1
    decoded = summary.get("frames_decoded", 0)
    print(f"[vr_stream_run] done: {decoded} frames decoded at the receiver "
          f"(summary: {summary_path}, logs: {log_dir})", flush=True)
    return 0 if decoded > 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
