"""Real-time set-up of a node's process from parameters (the seed's cpu_pinning,
realtime_scheduler and memory_optimizations), with no rclpy.

Call ``apply`` on the main thread before the node starts its own threads: on Linux the
scheduling policy, priority and CPU affinity set for the calling thread are inherited by
every thread it creates afterwards (the capture and video threads). Each setting that
the kernel refuses is reported with the reason and the fix; ``require_realtime`` turns
any refusal into an error so a node never runs half-configured by surprise.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import gc
import getpass
import os
from dataclasses import dataclass, field

POLICIES = {"other": os.SCHED_OTHER, "fifo": os.SCHED_FIFO, "rr": os.SCHED_RR}
GC_MODES = ("default", "freeze", "manual")
_MCL_CURRENT, _MCL_FUTURE = 1, 2
_POLICY_NAMES = {v: k for k, v in POLICIES.items()}


class RealtimeRefused(RuntimeError):
    """require_realtime was set and the kernel refused part of the set-up."""


def online_cpus() -> list[int]:
    """CPUs that exist and are online (/sys/devices/system/cpu/online)."""
    try:
        with open("/sys/devices/system/cpu/online") as f:
            text = f.read().strip()
    except OSError:
        return sorted(os.sched_getaffinity(0))
    cpus: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        cpus += range(int(lo), int(hi or lo) + 1)
    return cpus


def _ranges(cpus: list[int]) -> str:
    out, start, prev = [], None, None
    for c in [*sorted(cpus), None]:
        if start is None:
            start = prev = c
        elif c is not None and c == prev + 1:
            prev = c
        else:
            out.append(f"{start}-{prev}" if prev != start else str(start))
            start = prev = c
    return ",".join(out)


@dataclass(frozen=True)
class RtConfig:
    """The RT parameters of one node."""

    cpu_affinity: tuple[int, ...] = ()
    sched_policy: str = "other"
    rt_priority: int = 0
    lock_memory: bool = False
    gc_mode: str = "default"
    require_realtime: bool = False

    def validate(self) -> None:
        """ValueError naming the parameter and what is allowed."""
        if self.sched_policy not in POLICIES:
            raise ValueError(f"parameter 'sched_policy': got {self.sched_policy!r}, expected "
                             "one of 'other', 'fifo', 'rr'")
        if self.sched_policy == "other" and self.rt_priority != 0:
            raise ValueError(f"parameter 'rt_priority': got {self.rt_priority}, expected 0 "
                             "with sched_policy 'other' (priorities need 'fifo' or 'rr')")
        if self.sched_policy != "other" and not 1 <= self.rt_priority <= 99:
            raise ValueError(f"parameter 'rt_priority': got {self.rt_priority}, expected 1..99 "
                             f"with sched_policy '{self.sched_policy}'")
        if self.gc_mode not in GC_MODES:
            raise ValueError(f"parameter 'gc_mode': got {self.gc_mode!r}, expected one of "
                             + ", ".join(repr(m) for m in GC_MODES))
        cpus = online_cpus()
        for cpu in self.cpu_affinity:
            if cpu not in cpus:
                raise ValueError(f"parameter 'cpu_affinity': CPU {cpu} does not exist; this "
                                 f"machine has CPUs {_ranges(cpus)}")


@dataclass
class RtReport:
    """What ``apply`` did."""

    applied: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line for the start-up log."""
        text = "RT: " + ("; ".join(self.applied) if self.applied else "defaults (nothing set)")
        if self.refused:
            text += " | REFUSED: " + "; ".join(self.refused)
        return text


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "<user>"


def _mlockall() -> int:
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    if libc.mlockall(_MCL_CURRENT | _MCL_FUTURE) != 0:
        return ctypes.get_errno()
    return 0


def apply(config: RtConfig, *, pid: int = 0) -> RtReport:
    """Apply ``config`` to ``pid`` (0 = the calling thread, inherited by later threads)."""
    config.validate()
    report = RtReport()
    if config.cpu_affinity:
        try:
            os.sched_setaffinity(pid, config.cpu_affinity)
            report.applied.append(f"cpu_affinity={_ranges(list(config.cpu_affinity))}")
        except OSError as exc:
            report.refused.append(f"cpu_affinity={list(config.cpu_affinity)} refused "
                                  f"({errno.errorcode.get(exc.errno, exc.errno)}): the CPUs may "
                                  "be outside this process's cpuset (check `taskset -p $$`)")
    if config.sched_policy != "other":
        try:
            os.sched_setscheduler(pid, POLICIES[config.sched_policy],
                                  os.sched_param(config.rt_priority))
            report.applied.append(f"sched_policy={config.sched_policy} prio "
                                  f"{config.rt_priority}")
        except PermissionError:
            report.refused.append(
                f"sched_policy={config.sched_policy} prio {config.rt_priority} refused (EPERM): "
                f"add '{_user()} - rtprio 99' to /etc/security/limits.conf "
                "(or run `tune apply`) and log in again, or run as root")
        except OSError as exc:
            report.refused.append(f"sched_policy={config.sched_policy} refused "
                                  f"({errno.errorcode.get(exc.errno, exc.errno)})")
    if config.lock_memory:
        err = _mlockall()
        if err == 0:
            report.applied.append("lock_memory (mlockall current+future)")
        else:
            report.refused.append(
                f"lock_memory refused ({errno.errorcode.get(err, err)}): add "
                f"'{_user()} - memlock unlimited' to /etc/security/limits.conf "
                "(or run `tune apply`), or run as root")
    if config.gc_mode == "freeze":
        gc.collect()
        gc.freeze()  # start-up objects leave the collector's sight: short hot-path pauses
        report.applied.append("gc_mode=freeze")
    elif config.gc_mode == "manual":
        gc.collect()
        gc.freeze()
        gc.disable()
        report.applied.append("gc_mode=manual (collected outside the frame loop)")
    if report.refused and config.require_realtime:
        raise RealtimeRefused("require_realtime is set and the kernel refused: "
                              + "; ".join(report.refused))
    return report


def set_thread_name(name: str) -> None:
    """Name the calling OS thread (prctl PR_SET_NAME), as htop, ps -T and /proc show it."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    libc.prctl(15, name.encode()[:15], 0, 0, 0)  # 15 = PR_SET_NAME


def collect_garbage() -> None:
    """A cheap young-generation collection, for gc_mode 'manual' between frames."""
    gc.collect(0)


def read_proc_status(pid: int) -> dict:
    """Affinity, VmLck (kB), policy and priority of a process, as the kernel has them."""
    status: dict = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key == "Cpus_allowed_list":
                status["cpus"] = value.strip()
            elif key == "VmLck":
                status["vmlck_kb"] = int(value.split()[0])
    status["policy"] = _POLICY_NAMES.get(os.sched_getscheduler(pid), "other")
    status["priority"] = os.sched_getparam(pid).sched_priority
    return status
