"""dashboard: a live terminal view of the graph (the seed's monitor_dashboard.py).

    ros2 run vr_stream_ros dashboard            # refreshes every second, Ctrl-C ends it
    ros2 run vr_stream_ros dashboard --once     # one plain-text frame, for scripts and tests

Nodes are found by their ROS names (the graph), and their processes by the pid each
vr_stream_ros node publishes on /diagnostics (vr_stream_ros.ros.process_status).
Latency comes from the bridge's ``latency`` topic.
"""

from __future__ import annotations

import argparse
import io
import socket
import sys
import time
from collections import deque

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rich.console import Console, Group
from rich.live import Live

from vr_stream_ros.msg import LatencyStats, StageLatency
from vr_stream_ros.ros.process_status import STATUS_SUFFIX
from vr_stream_ros.system.monitor import SystemMonitor
from vr_stream_ros.tools.dashboard_view import (
    DashboardState,
    LatencyFigures,
    NodeRow,
    StageRow,
    render,
)

NODE_NAME = "vr_stream_dashboard"
HISTORY_S = 120
GRAPH_SETTLE_S = 2.0


def _stage(s: StageLatency) -> StageRow:
    return StageRow(s.name, s.p50_ms, s.p95_ms, s.p99_ms, s.samples)


def _measured_to(msg: LatencyStats) -> str:
    if not msg.headset_feedback:
        return "sent (no headset reports)"
    if any(s.name.startswith("browser_") for s in msg.stages):
        return "displayed in the browser (WebRTC)"
    return "decoded at the headset"


class DashboardNode(Node):
    """Collects the graph's node names, their pids, and the latency stats."""

    def __init__(self, latency_topic: str = "latency", budget_ms: float = 0.0) -> None:
        super().__init__(NODE_NAME)
        self.pids: dict[str, tuple[int, str]] = {}
        self.latency: LatencyFigures | None = None
        self.history: deque[tuple[float, float]] = deque(maxlen=HISTORY_S)
        self.budget_ms = budget_ms
        self._budget_from_bridge = budget_ms <= 0
        if self._budget_from_bridge:
            self.budget_ms = 30.0  # the bridge's default until its diagnostics say otherwise
        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        sub = self.create_subscription(LatencyStats, latency_topic, self._on_latency, reliable)
        self.latency_topic = sub.topic_name
        self.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 50)

    def _on_latency(self, msg: LatencyStats) -> None:
        e = _stage(msg.end_to_end)
        self.latency = LatencyFigures(
            end_to_end=e, measured_to=_measured_to(msg), fps=msg.fps,
            frames_sent=msg.frames_sent,
            frames_skipped=msg.frames_skipped, frames_dropped=msg.frames_dropped,
            frames_lost=msg.frames_lost, rtt_ms=msg.rtt_ms, jitter_ms=msg.jitter_ms,
            packet_loss=msg.packet_loss, stages=[_stage(s) for s in msg.stages])
        if e.samples:
            self.history.append((e.p50_ms, e.p99_ms))

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            values = {kv.key: kv.value for kv in status.values}
            if status.name.endswith(STATUS_SUFFIX) and values.get("pid", "").isdigit():
                self.pids[values.get("node", status.name[:-len(STATUS_SUFFIX)])] = (
                    int(values["pid"]), values.get("host", ""))
            elif self._budget_from_bridge and "budget_ms" in values:
                try:
                    self.budget_ms = float(values["budget_ms"])
                except ValueError:
                    self.get_logger().warn(f"/diagnostics '{status.name}': budget_ms "
                                           f"{values['budget_ms']!r} is not a number")

    def graph_nodes(self) -> list[NodeRow]:
        """Every node in the graph but this one, with its pid when it published one."""
        me = self.get_fully_qualified_name()
        rows = []
        for name, namespace in sorted(self.get_node_names_and_namespaces(),
                                      key=lambda n: (n[1], n[0])):
            fqn = (namespace.rstrip("/") + "/" + name) if namespace != "/" else "/" + name
            if fqn == me:
                continue
            pid, host = self.pids.get(fqn, (None, ""))
            rows.append(NodeRow(fqn, pid, host))
        return rows


class Dashboard:
    """Samples the machine and the node, and builds the screen's state."""

    def __init__(self, node: DashboardNode) -> None:
        self.node = node
        self.monitor = SystemMonitor()
        self.host = socket.gethostname()

    def state(self) -> DashboardState:
        nodes = self.node.graph_nodes()
        local = {r.name: r.pid for r in nodes
                 if r.pid is not None and r.host in ("", self.host)}
        return DashboardState(host=self.host, snapshot=self.monitor.sample(local), nodes=nodes,
                              latency=self.node.latency, history=list(self.node.history),
                              budget_ms=self.node.budget_ms,
                              latency_topic=self.node.latency_topic)

    def missing(self) -> list[str]:
        """What --once still waits for."""
        out = []
        nodes = self.node.graph_nodes()
        if not any(r.pid for r in nodes):
            out.append("a vr_stream_ros node in the ROS graph with its pid on /diagnostics "
                       f"(graph has: {', '.join(r.name for r in nodes) or 'no nodes'})")
        else:
            out += [f"pid of {r.name} on /diagnostics" for r in nodes
                    if r.pid is None and _ours(r.name)]
        if self.node.latency is None:
            out.append(f"a LatencyStats message on {self.node.latency_topic} "
                       "(is headset_bridge_node running?)")
        return out


def _ours(name: str) -> bool:
    return name.rsplit("/", 1)[-1] in ("camera_node", "headset_bridge_node", "detector_node")


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="dashboard", description=__doc__.splitlines()[0])
    parser.add_argument("--once", action="store_true",
                        help="wait for the data, print one plain-text frame and exit")
    parser.add_argument("--timeout", type=float, default=20.0,
                        help="--once: seconds to wait for the nodes and latency (default 20)")
    parser.add_argument("--latency-topic", default="latency",
                        help="LatencyStats topic (default: latency, in the node's namespace)")
    parser.add_argument("--budget-ms", type=float, default=0.0,
                        help="latency budget drawn on the chart (default: the bridge's "
                             "latency_budget_ms from /diagnostics, else 30)")
    parser.add_argument("--width", type=int, default=120, help="--once: text width")
    parser.add_argument("--svg", default="",
                        help="also save the last frame as an SVG image (screenshots)")
    args = parser.parse_args(argv)
    if args.timeout <= 0:
        parser.error(f"--timeout: got {args.timeout}, expected seconds > 0")
    if args.width < 60:
        parser.error(f"--width: got {args.width}, expected at least 60 columns")
    return args


def _spin_for(executor: SingleThreadedExecutor, seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        executor.spin_once(timeout_sec=max(0.0, min(0.1, end - time.monotonic())))


def run_once(dash: Dashboard, executor: SingleThreadedExecutor, args: argparse.Namespace
             ) -> int:
    """Wait (at least 2 samples, for rates) until nothing is missing, then print one frame."""
    deadline = time.monotonic() + args.timeout
    dash.state()  # the first sample starts the CPU and network intervals
    _spin_for(executor, 1.0)
    # DDS discovers the nodes one by one (~1 s here): wait until the graph has not
    # changed for GRAPH_SETTLE_S and nothing is missing.
    names, changed = set(), time.monotonic()
    while time.monotonic() < deadline:
        now_names = {r.name for r in dash.node.graph_nodes()}
        if now_names != names:
            names, changed = now_names, time.monotonic()
        if not dash.missing() and time.monotonic() - changed >= GRAPH_SETTLE_S:
            break
        _spin_for(executor, 0.25)
    dash.state()  # starts the CPU interval of every process found meanwhile
    _spin_for(executor, 1.0)
    console = Console(width=args.width, no_color=True, highlight=False, force_terminal=False)
    screen = render(dash.state())
    console.print(screen)
    if args.svg:
        save_svg(args.svg, screen, args.width)
    missing = dash.missing()
    if missing:
        print(f"dashboard: after {args.timeout:g} s still missing: " + "; ".join(missing),
              file=sys.stderr)
        return 1
    return 0


def run_live(dash: Dashboard, executor: SingleThreadedExecutor, args: argparse.Namespace
             ) -> int:
    """Redraw every second until Ctrl-C (then --svg saves the last frame)."""
    screen = render(dash.state())
    try:
        with Live(screen, refresh_per_second=4, screen=False) as live:
            while True:
                _spin_for(executor, 1.0)
                screen = render(dash.state())
                live.update(screen)
    finally:
        if args.svg:
            save_svg(args.svg, screen, args.width)


def save_svg(path: str, screen: Group, width: int) -> None:
    """The frame as a terminal would show it, in colour, as an SVG image."""
    console = Console(record=True, width=width, file=io.StringIO(), force_terminal=True,
                      color_system="truecolor")
    console.print(screen)
    console.save_svg(path, title="vr_stream_ros dashboard")


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``ros2 run vr_stream_ros dashboard``."""
    argv = sys.argv[1:] if argv is None else argv
    ros_args = []
    if "--ros-args" in argv:
        i = argv.index("--ros-args")
        argv, ros_args = argv[:i], argv[i:]
    args = _parse(argv)
    rclpy.init(args=["dashboard", *ros_args])
    node = DashboardNode(args.latency_topic, args.budget_ms)
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        dash = Dashboard(node)
        return run_once(dash, executor, args) if args.once else run_live(dash, executor, args)
    except (KeyboardInterrupt, ExternalShutdownException):
        return 0
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    raise SystemExit(main())
