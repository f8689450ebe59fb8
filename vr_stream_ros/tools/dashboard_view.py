"""The dashboard's screen, drawn with rich from plain data (no rclpy).

``render(state)`` returns one rich renderable: CPUs, the nodes' processes, network
interfaces, SoC temperature and throttling, the latency figures and a scrolling chart of
end-to-end p50/p99 against the budget. The same renderable is shown live or printed once.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from rich import box
from rich.console import Group
from rich.table import Table
from rich.text import Text

from vr_stream_ros.system.monitor import ProcessInfo, Snapshot


@dataclass(frozen=True)
class NodeRow:
    """A node of the ROS graph and, if it said so on /diagnostics, its process."""

    name: str
    pid: int | None = None
    host: str = ""


@dataclass(frozen=True)
class StageRow:
    """Percentiles of one stage, in ms."""

    name: str
    p50_ms: float
    p95_ms: float
    p99_ms: float
    samples: int


@dataclass(frozen=True)
class LatencyFigures:
    """The newest LatencyStats message, as plain numbers."""

    end_to_end: StageRow
    measured_to: str
    fps: float
    frames_sent: int
    frames_skipped: int
    frames_dropped: int
    frames_lost: int
    rtt_ms: float
    jitter_ms: float
    packet_loss: float
    stages: list[StageRow] = field(default_factory=list)


@dataclass
class DashboardState:
    """Everything one screen shows."""

    host: str
    snapshot: Snapshot
    nodes: list[NodeRow]
    latency: LatencyFigures | None
    history: Sequence[tuple[float, float]]
    """(p50, p99) of end-to-end, oldest first, one per latency message."""
    budget_ms: float
    latency_topic: str = "/latency"


def render(state: DashboardState, chart_width: int = 60) -> Group:
    """The whole screen."""
    snap = state.snapshot
    load = " ".join(f"{v:.2f}" for v in snap.load_avg)
    title = Text.assemble(("vr_stream_ros dashboard", "bold"),
                          f"  host {state.host}  {time.strftime('%H:%M:%S')}  load {load}")
    return Group(title, _cpu_table(snap), _process_table(state), _network_table(snap),
                 _soc_text(snap), _latency_table(state), _chart(state, chart_width))


def _cpu_table(snap: Snapshot) -> Table:
    table = Table(title="CPU per core", box=box.SIMPLE, title_justify="left", pad_edge=False)
    table.add_column("cpu", justify="right")
    table.add_column("use %", justify="right")
    table.add_column("", no_wrap=True)
    for cpu, pct in enumerate(snap.cpu_percent):
        bar = "#" * round(pct / 5)
        style = "red" if pct >= 90 else "yellow" if pct >= 60 else "green"
        table.add_row(str(cpu), f"{pct:5.1f}", Text(bar.ljust(20, "."), style=style))
    return table


def _process_table(state: DashboardState) -> Table:
    table = Table(title="Nodes (ROS graph) and their processes", box=box.SIMPLE,
                  title_justify="left", pad_edge=False)
    for name, justify in (("node", "left"), ("pid", "right"), ("cpu %", "right"),
                          ("rss MiB", "right"), ("threads", "right"), ("affinity", "left"),
                          ("sched", "left")):
        table.add_column(name, justify=justify)
    if not state.nodes:
        table.add_row(Text("no nodes in the ROS graph yet", style="yellow"), *[""] * 6)
    for row in state.nodes:
        info = state.snapshot.processes.get(row.name)
        if row.pid is None:
            table.add_row(row.name, "-", Text("no pid on /diagnostics (not a vr_stream_ros "
                                              "node, or not started yet)", style="dim"),
                          *[""] * 4)
        elif row.host and row.host != state.host:
            table.add_row(row.name, str(row.pid), Text(f"on host {row.host}", style="dim"),
                          *[""] * 4)
        elif info is None or info.error:
            table.add_row(row.name, str(row.pid),
                          Text(info.error if info else "not sampled", style="red"), *[""] * 4)
        else:
            table.add_row(row.name, str(info.pid), f"{info.cpu_percent:.1f}",
                          f"{info.rss_mib:.0f}", str(info.threads), info.affinity_text,
                          _sched_text(info))
    return table


def _sched_text(info: ProcessInfo) -> str:
    return f"{info.policy} {info.priority}" if info.policy in ("fifo", "rr") else info.policy


def _network_table(snap: Snapshot) -> Table:
    table = Table(title="Network interfaces (counters since boot)", box=box.SIMPLE,
                  title_justify="left", pad_edge=False)
    for name in ("iface", "rx Mbit/s", "tx Mbit/s", "packets in", "packets out", "bytes in",
                 "bytes out", "drops in/out", "errors in/out"):
        table.add_column(name, justify="left" if name == "iface" else "right")
    for n in snap.interfaces:
        drops = f"{n.drop_in}/{n.drop_out}"
        errors = f"{n.err_in}/{n.err_out}"
        table.add_row(n.name, f"{n.rx_mbps:.1f}", f"{n.tx_mbps:.1f}", str(n.packets_recv),
                      str(n.packets_sent), _bytes(n.bytes_recv), _bytes(n.bytes_sent),
                      Text(drops, style="red" if n.drop_in or n.drop_out else ""),
                      Text(errors, style="red" if n.err_in or n.err_out else ""))
    return table


def _bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _soc_text(snap: Snapshot) -> Text:
    soc = snap.soc
    text = Text("SoC  ", style="bold")
    if soc.temperature_c is None:
        text.append(f"temperature n/a ({soc.temperature_source})", style="dim")
    else:
        hot = soc.temperature_c >= 80
        text.append(f"temperature {soc.temperature_c:.1f} C", style="red" if hot else "green")
        text.append(f" [{soc.temperature_source}]", style="dim")
    text.append("  |  ")
    if soc.throttled is None:
        text.append(f"throttling n/a ({soc.throttled_source})", style="dim")
    else:
        flags = ", ".join(soc.throttle_flags) or "none"
        text.append(f"throttled=0x{soc.throttled:x} ({flags})",
                    style="red" if soc.throttled else "green")
        text.append(f" [{soc.throttled_source}]", style="dim")
    return text


def _latency_table(state: DashboardState) -> Group | Text:
    lat = state.latency
    if lat is None:
        return Text(f"Latency: no message on {state.latency_topic} yet "
                    "(is headset_bridge_node running?)", style="yellow")
    e = lat.end_to_end
    over = e.p99_ms > state.budget_ms
    head = Text.assemble(
        (f"Latency ({state.latency_topic})", "bold"),
        f"  end_to_end = capture -> {lat.measured_to}\n"
        f"{lat.fps:.1f} fps; frames sent {lat.frames_sent}, skipped {lat.frames_skipped}, "
        f"dropped {lat.frames_dropped}, lost {lat.frames_lost}; rtt {lat.rtt_ms:.2f} ms, "
        f"jitter {lat.jitter_ms:.2f} ms, packet loss {lat.packet_loss:.1%}")
    table = Table(box=box.SIMPLE, pad_edge=False)
    for name in ("stage", "p50 ms", "p95 ms", "p99 ms", "samples"):
        table.add_column(name, justify="left" if name == "stage" else "right")
    for s in lat.stages:
        table.add_row(s.name, f"{s.p50_ms:.2f}", f"{s.p95_ms:.2f}", f"{s.p99_ms:.2f}",
                      str(s.samples))
    table.add_row(Text("end_to_end", style="bold"), f"{e.p50_ms:.2f}", f"{e.p95_ms:.2f}",
                  Text(f"{e.p99_ms:.2f}", style="red bold" if over else "green bold"),
                  str(e.samples))
    return Group(head, table)


def latency_chart(history: Sequence[tuple[float, float]], budget_ms: float, width: int = 60,
                  height: int = 8) -> list[str]:
    """Rows of a text chart, top first: p99 '*', p50 'o', both '@', the budget '-'.

    One column per value (the newest on the right); the y axis runs from 0 to a bit
    above the larger of the budget and the highest p99 shown.
    """
    values = list(history)[-width:]
    top = max([budget_ms, *(p99 for _, p99 in values)]) * 1.1 or 1.0

    def row_of(ms: float) -> int:
        return min(height - 1, max(0, math.floor(ms / top * height)))

    grid = [[" "] * width for _ in range(height)]
    budget_row = row_of(budget_ms)
    for x in range(width):
        grid[budget_row][x] = "-"
    offset = width - len(values)
    for i, (p50, p99) in enumerate(values):
        r50, r99 = row_of(p50), row_of(p99)
        grid[r99][offset + i] = "*"
        grid[r50][offset + i] = "@" if r50 == r99 else "o"
    # The y labels (each row's lower bound, ms) go on the right: no line starts with
    # spaces, which some SVG renderers drop from the screenshot.
    rows = ["|" + "".join(grid[r]) + f"| {r * top / height:.1f}"
            for r in range(height - 1, -1, -1)]
    rows.append("+" + "-" * width + "+")
    return rows


def _chart(state: DashboardState, width: int) -> Group:
    head = Text.assemble(("End-to-end latency, ms", "bold"),
                         f"  (last {min(len(state.history), width)} s; * p99, o p50, "
                         f"- budget {state.budget_ms:g} ms)")
    rows = latency_chart(state.history, state.budget_ms, width)
    return Group(head, *(Text(r) for r in rows))
