"""What the dashboard shows of the machine: CPUs, processes, network, temperature.

Plain reads (psutil, /proc; temperature and throttling from system/thermal.py); no
rclpy. Each reading says what it could not read instead of guessing, so the dashboard
can print "n/a (why)".

    monitor = SystemMonitor()
    snap = monitor.sample({"/camera_node": 1234})   # ROS node name -> pid
    snap.cpu_percent, snap.processes["/camera_node"].affinity, snap.soc.temperature_c
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import psutil

from vr_stream_ros.system.realtime import format_cpu_ranges
from vr_stream_ros.system.thermal import read_temperature, read_throttled, throttle_flags

POLICY_NAMES = {os.SCHED_OTHER: "other", os.SCHED_FIFO: "fifo", os.SCHED_RR: "rr",
                os.SCHED_BATCH: "batch", os.SCHED_IDLE: "idle"}


@dataclass(frozen=True)
class ProcessInfo:
    """One node's process, or why it could not be read."""

    pid: int
    cpu_percent: float = 0.0
    """Of one CPU, since the previous sample (0 on the first)."""
    rss_mib: float = 0.0
    affinity: tuple[int, ...] = ()
    policy: str = ""
    priority: int = 0
    threads: int = 0
    error: str = ""
    """Set when the process is gone or not readable; the other fields are then empty."""

    @property
    def affinity_text(self) -> str:
        """CPU list in the kernel's short form: '0-3', '1', '0,2'."""
        return format_cpu_ranges(self.affinity)


@dataclass(frozen=True)
class NetInterface:
    """Counters of one network interface since boot, and rates since the last sample."""

    name: str
    packets_sent: int
    packets_recv: int
    bytes_sent: int
    bytes_recv: int
    drop_in: int
    drop_out: int
    err_in: int
    err_out: int
    tx_mbps: float = 0.0
    rx_mbps: float = 0.0


@dataclass(frozen=True)
class SocStatus:
    """Temperature and throttling; None with a reason where the machine has neither."""

    temperature_c: float | None
    temperature_source: str
    throttled: int | None
    throttled_source: str

    @property
    def throttle_flags(self) -> list[str]:
        """Names of the set throttling bits (empty when none or unknown)."""
        return throttle_flags(self.throttled)


@dataclass(frozen=True)
class Snapshot:
    """One sample of everything."""

    time_mono: float
    cpu_percent: list[float]
    processes: dict[str, ProcessInfo]
    interfaces: list[NetInterface]
    soc: SocStatus
    load_avg: tuple[float, float, float] = (0.0, 0.0, 0.0)
    notes: list[str] = field(default_factory=list)


def read_process(proc: psutil.Process) -> ProcessInfo:
    """PID, CPU (since the previous call on ``proc``), RSS, affinity, scheduling."""
    try:
        with proc.oneshot():
            cpu = proc.cpu_percent(None)
            rss = proc.memory_info().rss / (1 << 20)
            threads = proc.num_threads()
        affinity = tuple(proc.cpu_affinity())
        policy = os.sched_getscheduler(proc.pid)
        priority = os.sched_getparam(proc.pid).sched_priority
    except (psutil.NoSuchProcess, ProcessLookupError):
        return ProcessInfo(proc.pid, error="process has exited")
    except (psutil.AccessDenied, PermissionError) as exc:
        return ProcessInfo(proc.pid, error=f"not readable ({exc.__class__.__name__})")
    return ProcessInfo(proc.pid, cpu_percent=cpu, rss_mib=rss, affinity=affinity,
                       policy=POLICY_NAMES.get(policy, str(policy)), priority=priority,
                       threads=threads)


class SystemMonitor:
    """Samples the machine; rates (CPU %, Mbit/s) are since the previous ``sample()``."""

    def __init__(self, root: str = "/") -> None:
        self.root = root
        self._procs: dict[int, psutil.Process] = {}
        self._net_prev: dict[str, tuple[float, int, int]] = {}
        psutil.cpu_percent(percpu=True)  # starts the per-CPU interval

    def sample(self, pids: dict[str, int]) -> Snapshot:
        """Everything, with ``pids`` (a label such as the ROS node name -> pid) as processes."""
        now = time.monotonic()
        processes = {}
        for label, pid in pids.items():
            proc = self._process(pid) if pid > 0 else None
            processes[label] = (read_process(proc) if proc is not None
                                else ProcessInfo(pid, error="no such process"))
        temperature, t_source = read_temperature(self.root)
        throttled, th_source = read_throttled(self.root)
        return Snapshot(time_mono=now, cpu_percent=psutil.cpu_percent(percpu=True),
                        processes=processes, interfaces=self._interfaces(now),
                        soc=SocStatus(temperature, t_source, throttled, th_source),
                        load_avg=os.getloadavg())

    def _process(self, pid: int) -> psutil.Process | None:
        proc = self._procs.get(pid)
        if proc is None:
            try:
                proc = psutil.Process(pid)
                proc.cpu_percent(None)  # the first call only starts the interval
            except psutil.Error:
                return None
            self._procs[pid] = proc
        return proc

    def _interfaces(self, now: float) -> list[NetInterface]:
        out = []
        for name, c in sorted(psutil.net_io_counters(pernic=True).items()):
            prev = self._net_prev.get(name)
            tx = rx = 0.0
            if prev is not None and now > prev[0]:
                dt = now - prev[0]
                tx = (c.bytes_sent - prev[1]) * 8 / dt / 1e6
                rx = (c.bytes_recv - prev[2]) * 8 / dt / 1e6
            self._net_prev[name] = (now, c.bytes_sent, c.bytes_recv)
            out.append(NetInterface(name, c.packets_sent, c.packets_recv, c.bytes_sent,
                                    c.bytes_recv, c.dropin, c.dropout, c.errin, c.errout,
                                    tx, rx))
        return out
