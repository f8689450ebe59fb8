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
from dataclasses import dataclass

from vr_stream_ros.graph import launches as graph
from vr_stream_ros.graph.dds_shm import SHM_DIR, dds_files_held, remove_zombies
from vr_stream_ros.graph.param_spec import ParameterError, parse_cpu_list
from vr_stream_ros.graph.processes import ProcessGroup, executable_path
from vr_stream_ros.system.realtime import RtConfig
from vr_stream_ros.system.realtime import apply as apply_rt


def node_commands(arguments: dict[str, str], config: str | None = None
                  ) -> list[tuple[str, list[str]]]:
    """(node name, argv) for every node of the graph."""
    return [(n.name, n.command(executable_path(n.executable)))
            for n in graph.node_launches(arguments, config)]


def optional_nodes(arguments: dict[str, str], config: str | None = None) -> set[str]:
    """Nodes whose exit does not end the run (the detector)."""
    return {n.name for n in graph.node_launches(arguments, config) if not n.essential}


def receiver_command(values: dict[str, str], summary_path: str, *extra: str) -> list[str]:
    """argv of the reference receiver matching the graph's transport, NACK and concealment."""
    cmd = [sys.executable, "-m", "vr_stream_ros.tools.receiver",
           "--port", values["headset_port"], "--summary-json", summary_path, *extra]
    if values["transport"] == "tcp":
        cmd.append("--tcp")
    if str(values["nack"]).lower() == "true":  # the headset asks for what it lost
        cmd.append("--nack")
    if str(values["jpeg_restart_interval"]) != "0":  # a lost stripe is concealed
        cmd.append("--conceal")
    return cmd


def argument_values(arguments: dict[str, str], config: str | None = None) -> dict[str, str]:
    """Every launch argument's value: the given ones over the config file's."""
    return {**graph.argument_defaults(graph.load_config(config or graph.default_config_path())),
            **arguments}


ORPHAN_WATCH_S = 30.0
"""How long a dead node's Fast DDS files are watched for their lock to go."""


@dataclass(frozen=True)
class Respawn:
    """One node a signal killed and the supervisor started again."""

    name: str
    signal: int
    old_pid: int
    new_pid: int
    died_at: float  # time.monotonic() when the supervisor saw it gone
    started_at: float


class Supervisor:
    """Watches the graph's processes in a ProcessGroup, as launch does for `ros2 launch`.

    An essential node killed by a signal is started again after RESPAWN_DELAY_S (at most
    RESPAWN_MAX times) when the graph has respawn:=true; the detector's exit is reported
    once and the video path goes on; any other exit of an essential node fails the run.
    A node that died leaves no Fast DDS files in /dev/shm: those it held open and nobody
    holds any more are removed (graph/dds_shm.py) before it is started again.
    """

    def __init__(self, group: ProcessGroup, launches: list[graph.NodeLaunch],
                 say: Callable[[str], None] | None = None) -> None:
        self.group = group
        self.launches = {n.name: n for n in launches}
        self.respawns: list[Respawn] = []
        self.gone: set[str] = set()
        self._due: dict[str, tuple[float, float, int, int]] = {}
        self._held: dict[str, set[str]] = {}  # Fast DDS lock files each node holds open
        self._orphans: dict[str, tuple[set[str], float]] = {}  # a dead node's, until when
        self.ever_held: set[str] = set()
        """Fast DDS lock files any process of the group held open at some check."""
        self.shm_removed: dict[str, list[str]] = {}
        """Zombie Fast DDS files removed after each node's death, by node name."""
        self._say = say or (lambda text: print(f"[vr_stream_run] {text}", file=sys.stderr,
                                               flush=True))

    def _remove_orphans(self, now: float) -> None:
        """Remove the zombie Fast DDS files of dead nodes. A lock can outlive its node for a
        while (a child process it forked still holds the file), so each dead node's files
        are looked at again on every check for ORPHAN_WATCH_S."""
        for name, (locks, until) in list(self._orphans.items()):
            removed = remove_zombies(locks)
            if removed:
                self.shm_removed.setdefault(name, []).extend(removed)
                self._say(f"{name}: removed {len(removed)} Fast DDS shared-memory files it "
                          "left in /dev/shm")
            left = {lock for lock in locks if lock not in removed
                    and os.path.exists(os.path.join(SHM_DIR, lock))}
            if left and now < until:
                self._orphans[name] = (left, until)
            else:
                del self._orphans[name]

    def tidy(self) -> None:
        """After the run: a last look at dead nodes' Fast DDS files (see _remove_orphans)."""
        self._remove_orphans(time.monotonic())

    def _start_at_own_priority(self, name: str, pid: int) -> None:
        """Give a respawned node its own CPUs and scheduling from its first instruction.

        The node applies them itself once its imports and DDS set-up are done; on a loaded
        machine those took 2.7 s at normal priority (measured), the stream down meanwhile.
        Whatever the kernel refuses here the node reports when it applies them itself."""
        p = self.launches[name].parameters
        try:
            config = RtConfig(cpu_affinity=parse_cpu_list(p.get("cpu_affinity", "")),
                              sched_policy=p.get("sched_policy", "other"),
                              rt_priority=p.get("rt_priority", 0))
            apply_rt(config, pid=pid)
        except (ValueError, OSError):
            pass

    def check(self) -> str | None:
        """One look at every process; why the run must stop, or None."""
        now = time.monotonic()
        self._remove_orphans(now)
        for name, proc, _log in list(self.group.procs):
            if name in self._due:
                due, died_at, sig, old_pid = self._due[name]
                if now >= due:
                    del self._due[name]
                    new = self.group.restart(name)
                    self._start_at_own_priority(name, new.pid)
                    self.respawns.append(Respawn(name, sig, old_pid, new.pid, died_at,
                                                 time.monotonic()))
                continue
            node = self.launches.get(name)
            if proc.poll() is None:
                self._held[name] = dds_files_held(proc.pid)
                self.ever_held |= self._held[name]
                continue
            if name in self.gone:
                continue
            code = proc.returncode
            # Before any respawn: the new process may take the same DDS port numbers.
            if node is not None:
                self._orphans[name] = (self._held.pop(name, set()), now + ORPHAN_WATCH_S)
            self._remove_orphans(now)
            if node is None:  # the receiver (or another helper the caller started)
                return f"{name} exited with code {code}"
            if not node.essential:  # the detector: the video path goes on without it
                self._say(f"{name} exited with code {code}; the video path goes on")
                self.gone.add(name)
                continue
            restarts = sum(r.name == name for r in self.respawns)
            if node.respawn and code < 0 and restarts < graph.RESPAWN_MAX:
                self._say(f"{name} was killed (signal {-code}); starting it again in "
                          f"{graph.RESPAWN_DELAY_S} s (respawn:=false turns this off)")
                self._due[name] = (now + graph.RESPAWN_DELAY_S, now, -code, proc.pid)
                continue
            return f"{name} exited with code {code}"
        return None


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
        launches = graph.node_launches(arguments, ns.config)
        values = argument_values(arguments, ns.config)
    except ParameterError as exc:
        print(f"[vr_stream_run] {exc}", file=sys.stderr)
        return 2
    commands = [(n.name, n.command(executable_path(n.executable))) for n in launches]
    log_dir = tempfile.mkdtemp(prefix="vr_stream_run_")
    summary_path = ns.summary_json or os.path.join(log_dir, "receiver.json")
    receiver = receiver_command(values, summary_path)
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
    supervisor = Supervisor(group, launches)
    failed = None
    while not stopping.is_set() and time.monotonic() < deadline and not failed:
        failed = supervisor.check()
        time.sleep(0.1)
    group.stop_all(timeout=5)  # bridge, camera, then receiver; their output drained
    supervisor.tidy()
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
