"""The graph as `make run` starts it, instrumented for ``make soak`` and ``make chaos``.

    with LiveGraph(out_dir, {"ring_name": ring, "fps": "60", ...}) as live:
        live.wait_decoding(30)
        live.pid("camera_node"); live.latency(); live.receiver_totals()
    live.summary            # the reference receiver's --summary-json
    live.shm_left           # /dev/shm entries this run left behind

The nodes come from ``graph.launches`` and run under ``graph.runner.Supervisor`` (the
respawn policy of ``make run``) in a ``graph.processes.ProcessGroup``; beside them the
reference receiver (``runner.receiver_command``) and a /latency probe
(``ros.topic_probe --lines``). No rclpy here: the probe is its own process.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from vr_stream_ros.graph import launches as graph
from vr_stream_ros.graph.dds_shm import zombies
from vr_stream_ros.graph.processes import ProcessGroup, executable_path, wait_for
from vr_stream_ros.graph.runner import Supervisor, argument_values, receiver_command
from vr_stream_ros.ring.frame_ring import SHM_DIR

_RECEIVER_LINE = re.compile(r"recv (\d+) lost (\d+) \| decoded (\d+)")
SUPERVISE_S = 0.05
"""How often the supervisor looks at the processes (a respawn waits RESPAWN_DELAY_S more)."""


def shm_entries() -> set[str]:
    """Names in /dev/shm now."""
    return set(os.listdir(SHM_DIR))


def shm_in_use() -> set[str]:
    """/dev/shm names some live process maps or holds open (any user /proc lets us read)."""
    used: set[str] = set()
    prefix = SHM_DIR + "/"
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/maps") as f:
                for line in f:
                    at = line.find(prefix)
                    if at >= 0:
                        used.add(line[at + len(prefix):].split(" (deleted)")[0].strip())
            for fd in os.listdir(f"/proc/{pid}/fd"):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith(prefix):
                    used.add(target[len(prefix):])
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return used


def shm_left_behind(ours: set[str], ring: str) -> list[str]:
    """This run's files in /dev/shm whose owner is gone: zombie Fast DDS segments and ports
    of the lock files its processes held (``ours``; graph/dds_shm.py says what a zombie
    is) and the ring's files when no process maps them.

    /dev/shm is shared with every other program on the host (another engineer's DDS
    participants among them): only this run's own files are judged."""
    rings = {e for e in shm_entries() if ring in e}
    return sorted(set(zombies(ours)) | (rings - shm_in_use()))


def udp_drops(port: int) -> int | None:
    """Datagrams the kernel dropped at the UDP socket bound to ``port`` (its receive buffer
    was full: the reader did not get the CPU in time): /proc/net/udp's ``drops`` column.
    None when no socket is bound to it."""
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    cols = line.split()
                    if int(cols[1].rsplit(":", 1)[1], 16) == port:
                        return int(cols[-1])
        except (OSError, StopIteration, ValueError, IndexError):
            continue
    return None


class LiveGraph:
    """Receiver, nodes (supervised: respawn as ``make run``), /latency probe, extras."""

    def __init__(self, out_dir: str | os.PathLike, arguments: dict[str, str],
                 group: ProcessGroup | None = None, receiver_fifo: int = 0) -> None:
        """``group``: the harness to start processes in (a test's own); a new one in
        ``out_dir``/logs by default. ``receiver_fifo``: run the receiver at this
        SCHED_FIFO priority (chrt): the headset is its own device, here it shares a
        loaded machine and would otherwise drop datagrams at its socket for want of CPU."""
        self.receiver_fifo = receiver_fifo
        self.out_dir = Path(out_dir)
        self.arguments = dict(arguments)
        self.values = argument_values(self.arguments)
        self.launches = graph.node_launches(self.arguments)
        self.group = group if group is not None else ProcessGroup(self.out_dir / "logs")
        self.summary_path = self.out_dir / "receiver.json"
        self.supervisor = Supervisor(self.group, self.launches, say=self._note)
        self.notes: list[str] = []
        self.failed: str | None = None
        self.summary: dict[str, Any] = {}
        self.shm_left: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._supervise, daemon=True, name="supervise")

    @property
    def ring(self) -> str:
        """The ring every node of this graph shares."""
        return self.values["ring_name"]

    def node_names(self) -> list[str]:
        """The graph's nodes, in start order."""
        return [n.name for n in self.launches]

    def start(self) -> LiveGraph:
        """Receiver first (listening before the bridge sends), then nodes and the probe."""
        chrt = ["chrt", "-f", str(self.receiver_fifo)] if self.receiver_fifo else []
        if chrt and subprocess.run([*chrt, "true"], capture_output=True).returncode != 0:
            self._note(f"receiver at normal priority: SCHED_FIFO {self.receiver_fifo} refused")
            chrt = []
        self.group.start("receiver", [*chrt, *receiver_command(self.values,
                                                              str(self.summary_path))])
        time.sleep(0.3)
        for n in self.launches:
            self.group.start(n.name, n.command(executable_path(n.executable)))
        self.group.start("latency_probe", [
            sys.executable, "-m", "vr_stream_ros.ros.topic_probe", "latency", "--lines",
            "--seconds", "1e9", "--out", str(self.out_dir / "latency.json")])
        self._thread.start()
        return self

    def _note(self, text: str) -> None:
        self.notes.append(f"{time.monotonic():.3f} {text}")

    def _supervise(self) -> None:
        while not self._stop.is_set() and self.failed is None:
            self.failed = self.supervisor.check()
            time.sleep(SUPERVISE_S)

    def pid(self, name: str) -> int:
        """The current pid of ``name`` (a respawned node's new one)."""
        return self.group.process(name).pid

    def pids(self) -> dict[str, int]:
        """Every process's current pid, by name."""
        return {name: proc.pid for name, proc, _log in self.group.procs}

    def receiver_totals(self) -> dict[str, int]:
        """Sums of the receiver's once-a-second lines: frames received, lost, decoded."""
        totals = {"received": 0, "lost": 0, "decoded": 0}
        for m in _RECEIVER_LINE.finditer(self.group.output("receiver")):
            for key, value in zip(totals, m.groups(), strict=True):
                totals[key] += int(value)
        return totals

    def receiver_lines(self) -> list[int]:
        """Frames decoded in each of the receiver's once-a-second lines so far."""
        return [int(m.group(3)) for m in _RECEIVER_LINE.finditer(self.group.output("receiver"))]

    def wait_resumed(self, lines_before: int, timeout: float) -> bool:
        """True once a receiver line wholly after ``lines_before`` lines (the next one may
        still hold frames from before) shows frames decoded; False after ``timeout`` s."""
        return bool(wait_for(lambda: any(self.receiver_lines()[lines_before + 1:]),
                             timeout, 0.1))

    def receiver_drops(self) -> int | None:
        """The receiver socket's kernel drops so far (UDP only; None with TCP)."""
        return udp_drops(int(self.values["headset_port"]))

    def latency(self) -> list[dict]:
        """Every /latency message the probe printed so far (with its arrival mono_ns)."""
        return [json.loads(line) for line in self.group.output("latency_probe").splitlines()
                if line.startswith("{")]

    def wait_decoding(self, timeout: float) -> bool:
        """True once the receiver has decoded frames (within ``timeout`` s); False at once
        when a process failed (``failed`` says which)."""
        wait_for(lambda: self.failed or self.receiver_totals()["decoded"] > 0, timeout, 0.2)
        return self.failed is None and self.receiver_totals()["decoded"] > 0

    def stop(self) -> dict[str, Any]:
        """Stop everything (the receiver writes its summary); note /dev/shm leftovers."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        self.group.stop_all(timeout=10)
        self.supervisor.tidy()
        try:
            self.summary = json.loads(self.summary_path.read_text())
        except (OSError, ValueError):
            self.summary = {}
        self.shm_left = shm_left_behind(self.supervisor.ever_held, self.ring)
        return self.summary

    def __enter__(self) -> LiveGraph:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def decode_gaps(summary: dict[str, Any], after_ms: float = 0.0) -> list[tuple[float, float]]:
    """(start ms, length ms) of each pause between decoded frames, from decoded_at_ms;
    only pauses starting after ``after_ms``, longest first."""
    times = [t for t in summary.get("decoded_at_ms", []) if t >= after_ms]
    gaps = [(a, b - a) for a, b in itertools.pairwise(times)]
    return sorted(gaps, key=lambda g: -g[1])
