"""Real-time set-up of a node's process from parameters, with no rclpy.

The ROS home of the seed's cpu_pinning.py, realtime_scheduler.py and
memory_optimizations.py: CPU affinity, SCHED_FIFO/SCHED_RR with a priority, mlockall and
garbage-collector control, each applied or refused with the reason and the fix.

Call :func:`apply` on the main thread *before* the node starts its own threads. On Linux
the affinity, policy and priority belong to a thread, not a process: they change the
calling thread, and every thread it creates afterwards inherits them (the capture and
video threads). Threads that already exist keep what they had.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import functools
import gc
import os
import pwd
import re
import resource
from array import array
from dataclasses import dataclass, field

from vr_stream_ros.graph.param_spec import parse_cpu_list

POLICIES = {"other": os.SCHED_OTHER, "fifo": os.SCHED_FIFO, "rr": os.SCHED_RR}
"""sched_policy parameter value -> kernel policy."""
GC_MODES = ("default", "freeze", "manual")
"""gc_mode parameter values."""

_POLICY_NAMES = {
    os.SCHED_OTHER: "other", os.SCHED_FIFO: "fifo", os.SCHED_RR: "rr",
    getattr(os, "SCHED_BATCH", 3): "batch", getattr(os, "SCHED_IDLE", 5): "idle", 6: "deadline",
}
_MCL_CURRENT, _MCL_FUTURE, _MCL_ONFAULT = 1, 2, 4  # <sys/mman.h>; MCL_ONFAULT: Linux >= 4.4
_M_ARENA_MAX = -8  # <malloc.h> mallopt parameter
MALLOC_ARENAS = 2
"""glibc malloc arenas a node with lock_memory keeps (mallopt M_ARENA_MAX)."""
_CAP_IPC_LOCK, _CAP_SYS_NICE = 14, 23
_PR_SET_NAME = 15
_LIMITS_FIX = "/etc/security/limits.conf (or run `sudo tune apply`) and log in again"


class RealtimeRefused(RuntimeError):
    """``require_realtime`` was set and the kernel refused part of the set-up."""


def format_cpu_ranges(cpus: list[int] | tuple[int, ...] | set[int]) -> str:
    """[0, 1, 2, 5] -> '0-2,5', as /proc and /sys print CPU lists (the inverse of
    ``parse_cpu_list``)."""
    spans: list[tuple[int, int]] = []
    for cpu in sorted(set(cpus)):
        if spans and spans[-1][1] == cpu - 1:
            spans[-1] = (spans[-1][0], cpu)
        else:
            spans.append((cpu, cpu))
    return ",".join(str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in spans)


def online_cpus() -> list[int]:
    """CPUs that exist and are online (/sys/devices/system/cpu/online)."""
    try:
        with open("/sys/devices/system/cpu/online") as f:
            return list(parse_cpu_list(f.read()))
    except (OSError, ValueError):
        return sorted(os.sched_getaffinity(0))


def known_cpus() -> list[int]:
    """CPUs a cpu_affinity may name: this process's affinity plus the online CPUs."""
    return sorted(set(os.sched_getaffinity(0)) | set(online_cpus()))


@dataclass(frozen=True)
class RtConfig:
    """The RT parameters of one node (defaults change nothing)."""

    cpu_affinity: tuple[int, ...] = ()  # () = leave as is
    sched_policy: str = "other"  # 'other' | 'fifo' | 'rr'
    rt_priority: int = 0  # 1..99 with fifo/rr, 0 with other
    lock_memory: bool = False  # mlockall(MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT)
    gc_mode: str = "default"  # 'default' | 'freeze' | 'manual'
    require_realtime: bool = False  # any refusal raises RealtimeRefused

    def validate(self) -> None:
        """Raise ValueError naming the parameter and the allowed values."""
        if self.sched_policy not in POLICIES:
            raise ValueError(f"parameter 'sched_policy': got {self.sched_policy!r}, expected "
                             "one of 'other', 'fifo', 'rr'")
        if type(self.rt_priority) is not int:
            raise ValueError(f"parameter 'rt_priority': got {self.rt_priority!r}, expected an "
                             "integer")
        if self.sched_policy == "other" and self.rt_priority != 0:
            raise ValueError(f"parameter 'rt_priority': got {self.rt_priority}, expected 0 "
                             "with sched_policy 'other' (priorities need 'fifo' or 'rr')")
        if self.sched_policy != "other" and not 1 <= self.rt_priority <= 99:
            raise ValueError(f"parameter 'rt_priority': got {self.rt_priority}, expected 1..99 "
                             f"with sched_policy '{self.sched_policy}'")
        if self.gc_mode not in GC_MODES:
            raise ValueError(f"parameter 'gc_mode': got {self.gc_mode!r}, expected one of "
                             + ", ".join(repr(m) for m in GC_MODES))
        for name in ("lock_memory", "require_realtime"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"parameter '{name}': got {getattr(self, name)!r}, expected "
                                 "true or false")
        if not isinstance(self.cpu_affinity, tuple | list):
            raise ValueError(f"parameter 'cpu_affinity': got {self.cpu_affinity!r}, expected "
                             "a list of CPU numbers")
        cpus = known_cpus()
        for cpu in self.cpu_affinity:
            if type(cpu) is not int or cpu < 0:
                raise ValueError(f"parameter 'cpu_affinity': got {cpu!r}, expected CPU numbers "
                                 f"from {format_cpu_ranges(cpus)}")
            if cpu not in cpus:
                raise ValueError(f"parameter 'cpu_affinity': CPU {cpu} does not exist; this "
                                 f"machine has CPUs {format_cpu_ranges(cpus)}")


@dataclass
class RtReport:
    """What :func:`apply` set, and what the kernel refused (reason and fix)."""

    applied: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing was refused."""
        return not self.refused

    def summary(self) -> str:
        """One line for the node's start-up log."""
        text = "RT: " + ("; ".join(self.applied) if self.applied else "defaults (nothing set)")
        if self.refused:
            text += " | REFUSED: " + "; ".join(self.refused)
        return text


def apply(config: RtConfig, *, pid: int = 0) -> RtReport:
    """Apply ``config``: affinity, then gc, memory lock and last the scheduling policy.

    ``pid`` 0 is the calling *thread*: on Linux ``os.sched_setaffinity(0)`` and
    ``os.sched_setscheduler(0)`` change only that thread, and threads it creates later
    inherit the settings; a thread id changes that thread, and a process id only that
    process's main thread. ``lock_memory`` and ``gc_mode`` act on the calling process
    and are refused with another pid. A SCHED_FIFO thread that never sleeps starves
    everything below it on its CPU; the kernel's RT throttling
    (kernel.sched_rt_runtime_us, 95 % by default) keeps the machine usable.

    Raises ValueError for an invalid config, RealtimeRefused when
    ``config.require_realtime`` is set and anything was refused.
    """
    config.validate()
    if pid not in (0, os.getpid()) and (config.lock_memory or config.gc_mode != "default"):
        raise ValueError("parameters 'lock_memory' and 'gc_mode' act on the calling process "
                         f"only; got pid={pid}")
    report = RtReport()
    if config.cpu_affinity:
        _apply_affinity(config.cpu_affinity, pid, report)
    if config.gc_mode != "default":
        _apply_gc(config.gc_mode, report)
    if config.lock_memory:
        _apply_memory_lock(report)
    if config.sched_policy != "other":
        _apply_policy(config.sched_policy, config.rt_priority, pid, report)
    if report.refused and config.require_realtime:
        raise RealtimeRefused("require_realtime is set and the kernel refused: "
                              + "; ".join(report.refused))
    return report


def _apply_affinity(cpus: tuple[int, ...], pid: int, report: RtReport) -> None:
    wanted = format_cpu_ranges(cpus)
    try:
        os.sched_setaffinity(pid, cpus)
    except OSError as exc:
        if exc.errno == errno.EPERM:
            fix = f"process {pid} belongs to another user: run as that user or as root"
        else:  # EINVAL: none of the CPUs is in this process's cpuset (cgroup or container)
            allowed = format_cpu_ranges(os.sched_getaffinity(0))
            fix = (f"this process may only use CPUs {allowed} (its cpuset); pick CPUs from "
                   "those or widen the cgroup/container cpuset (e.g. docker --cpuset-cpus)")
        report.refused.append(f"cpu_affinity={wanted} refused ({_errname(exc.errno)}): {fix}")
        return
    report.applied.append(f"cpu_affinity={wanted}")


def _apply_gc(mode: str, report: RtReport) -> None:
    gc.collect()
    gc.freeze()  # start-up objects leave the collector's sight: hot-path collections stay short
    if mode == "manual":
        gc.disable()
        report.applied.append("gc_mode=manual (frozen, collected between frames)")
    else:
        report.applied.append("gc_mode=freeze")


@functools.cache
def _libc() -> ctypes.CDLL:
    """The C library, errno kept for ctypes.get_errno() (loaded once per process)."""
    return ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


def _apply_memory_lock(report: RtReport) -> None:
    """mlockall(MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT): a page is pinned once touched.

    Without MCL_ONFAULT, mlockall faults in and pins every mapping at once: each thread's
    8 MiB stack, DDS's shared-memory segments, every library's data (~200 MB more resident
    per node, measured). With it, only what the process touches is pinned, and it stays
    pinned: after the first frame the video path takes no major fault. /proc's VmLck still
    counts the whole locked address space (the kernel's accounting, RLIMIT_MEMLOCK's
    figure); smaps_rollup's Locked is what is pinned in RAM (see read_memory).
    A kernel before 4.4 refuses MCL_ONFAULT with EINVAL: then current+future, as before.
    """
    libc = _libc()
    # glibc gives each thread that contends its own 64 MiB malloc arena (8 x CPUs of
    # them): address space that VmLck and RLIMIT_MEMLOCK count once locked. Two arenas
    # halve a node's VmSize (camera_node 824 -> 431 MB with MALLOC_ARENA_MAX=2 from the
    # start, which graph/launches.py sets; 694 MB when only set here, after rclpy's
    # threads made theirs).
    libc.mallopt(_M_ARENA_MAX, MALLOC_ARENAS)
    if libc.mlockall(_MCL_CURRENT | _MCL_FUTURE | _MCL_ONFAULT) == 0:
        report.applied.append("lock_memory (mlockall current+future) on fault")
        return
    if ctypes.get_errno() == errno.EINVAL and libc.mlockall(_MCL_CURRENT | _MCL_FUTURE) == 0:
        report.applied.append("lock_memory (mlockall current+future) whole address space: "
                              "this kernel has no MCL_ONFAULT (Linux < 4.4)")
        return
    err = ctypes.get_errno()
    limit = resource.getrlimit(resource.RLIMIT_MEMLOCK)[0]
    shown = "unlimited" if limit == resource.RLIM_INFINITY else f"{limit // 1024} KiB"
    reason = f"RLIMIT_MEMLOCK is {shown}" + ("" if _has_cap(_CAP_IPC_LOCK)
                                              else " and no CAP_IPC_LOCK")
    report.refused.append(f"lock_memory refused ({_errname(err)}): {reason}; fix: add "
                          f"'{_user()} - memlock unlimited' to {_LIMITS_FIX}, or run as root")


_PRESENT = 1 << 63  # /proc/<pid>/pagemap: the page is in this process's page tables
_SPECIAL_MAPPINGS = ("[vsyscall]", "[vvar]", "[vvar_vclock]", "[vdso]")


@dataclass(frozen=True)
class SettledLock:
    """What :func:`settle_memory_lock` kept locked."""

    locked_kb: int
    ranges: int
    refused: int  # ranges mlock refused (errno), left unlocked


def settle_memory_lock() -> SettledLock:
    """Keep locked only what is resident now; mappings made later lock on fault.

    After the warm-up every page the video path touches is resident (and pinned, by
    MCL_ONFAULT). mlockall still marks every mapping locked in full (VmLck = VmSize:
    thread stacks, malloc's reserved arenas, libraries' unused pages), the figure
    RLIMIT_MEMLOCK and /proc report. This unlocks all, then mlock()s each run of pages
    this process has mapped (pagemap's present bit: what it touched, not what other
    processes left in the page cache), then sets MCL_FUTURE | MCL_ONFAULT again for new
    mappings: VmLck becomes what is pinned, which stays within resident memory.
    """
    libc = _libc()
    libc.mlock.argtypes = (ctypes.c_void_p, ctypes.c_size_t)
    page = os.sysconf("SC_PAGE_SIZE")
    with open("/proc/self/maps") as f:
        maps = [line.split() for line in f]
    pagemap = os.open("/proc/self/pagemap", os.O_RDONLY)
    try:
        if libc.munlockall() != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"munlockall: {os.strerror(err)} (the lock is unchanged)")
        locked = ranges = refused = 0
        for fields in maps:
            start, end = (int(x, 16) for x in fields[0].split("-"))
            name = fields[5] if len(fields) > 5 else ""
            if fields[1].startswith("---") or name in _SPECIAL_MAPPINGS:
                continue  # guard pages, the kernel's own pages
            entries = array("Q", os.pread(pagemap, (end - start) // page * 8,
                                          start // page * 8))
            mapped = bytes(1 if entry & _PRESENT else 0 for entry in entries)
            for run in re.finditer(rb"\x01+", mapped):
                if libc.mlock(start + run.start() * page, (run.end() - run.start()) * page) == 0:
                    locked += (run.end() - run.start()) * page
                    ranges += 1
                else:
                    refused += 1
    finally:
        os.close(pagemap)
    if libc.mlockall(_MCL_FUTURE | _MCL_ONFAULT) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mlockall(MCL_FUTURE | MCL_ONFAULT): {os.strerror(err)} (what "
                      "is resident stays locked; new mappings are not)")
    return SettledLock(locked // 1024, ranges, refused)


def _apply_policy(policy: str, priority: int, pid: int, report: RtReport) -> None:
    wanted = f"sched_policy={policy} prio {priority}"
    try:
        os.sched_setscheduler(pid, POLICIES[policy], os.sched_param(priority))
    except OSError as exc:
        if exc.errno != errno.EPERM:
            report.refused.append(f"{wanted} refused ({_errname(exc.errno)})")
            return
        limit = resource.getrlimit(resource.RLIMIT_RTPRIO)[0]
        if _has_cap(_CAP_SYS_NICE):  # privileged and still refused: RT group scheduling
            reason = "this cgroup has no real-time runtime (cpu.rt_runtime_us is 0)"
        else:
            shown = "unlimited" if limit == resource.RLIM_INFINITY else str(limit)
            reason = f"RLIMIT_RTPRIO is {shown} and no CAP_SYS_NICE"
        report.refused.append(f"{wanted} refused (EPERM): {reason}; fix: add '{_user()} - "
                              f"rtprio 99' to {_LIMITS_FIX}, or run as root")
        return
    report.applied.append(wanted)


def collect_garbage() -> None:
    """A cheap collection for gc_mode 'manual', called between frames.

    Collects the young generation; escalates to the older ones when their counters reach
    the collector's thresholds, as the automatic collector would, so cycles that survive
    one young collection are still freed (start-up objects stay frozen and unscanned).
    """
    count, threshold = gc.get_count(), gc.get_threshold()
    if count[2] >= threshold[2] > 0:
        gc.collect(2)
    elif count[1] >= threshold[1] > 0:
        gc.collect(1)
    else:
        gc.collect(0)


def set_thread_name(name: str) -> None:
    """Name the calling OS thread (prctl PR_SET_NAME), as htop, ps -T and /proc show it."""
    libc = _libc()
    libc.prctl(_PR_SET_NAME, name.encode()[:15], 0, 0, 0)


def read_proc_status(pid: int) -> dict:
    """What the kernel holds for a process or thread id.

    Keys: ``cpus`` (Cpus_allowed_list as printed, e.g. '2-3'), ``cpu_list`` (list of
    ints), ``vmlck_kb`` (locked memory, kB), ``policy`` ('other', 'fifo', 'rr', 'batch',
    'idle', 'deadline'), ``priority`` (0 for non-RT), ``name``, ``uid`` (effective).
    Raises FileNotFoundError when ``pid`` does not exist.
    """
    status: dict = {"vmlck_kb": 0}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            value = value.strip()
            if key == "Cpus_allowed_list":
                status["cpus"] = value
                status["cpu_list"] = list(parse_cpu_list(value))
            elif key == "VmLck":
                status["vmlck_kb"] = int(value.split()[0])
            elif key == "Name":
                status["name"] = value
            elif key == "Uid":
                status["uid"] = int(value.split()[1])
    policy = os.sched_getscheduler(pid)
    status["policy"] = _POLICY_NAMES.get(policy, str(policy))
    status["priority"] = os.sched_getparam(pid).sched_priority
    return status


@dataclass(frozen=True)
class MemoryStatus:
    """A process's memory as the kernel counts it, kB."""

    rss_kb: int     # VmRSS: resident
    size_kb: int    # VmSize: address space
    vmlck_kb: int   # VmLck: address space under mlock (counted whole, even MCL_ONFAULT)
    locked_kb: int  # smaps_rollup Locked: resident pages pinned by mlock (PSS)

    def as_mb(self) -> dict[str, float]:
        """The four figures in MiB, rounded to 0.1."""
        return {k.removesuffix("_kb") + "_mib": round(v / 1024, 1)
                for k, v in self.__dict__.items()}


def read_memory(pid: int) -> MemoryStatus:
    """``pid``'s resident, address-space, locked-range and pinned memory.

    Raises FileNotFoundError when ``pid`` does not exist (PermissionError for another
    user's smaps without CAP_SYS_PTRACE)."""
    fields = {"VmRSS": 0, "VmSize": 0, "VmLck": 0}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in fields:
                fields[key] = int(value.split()[0])
    locked = 0
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Locked:"):
                locked = int(line.split()[1])
    return MemoryStatus(fields["VmRSS"], fields["VmSize"], fields["VmLck"], locked)


def _errname(err: int) -> str:
    return errno.errorcode.get(err, str(err))


def _user() -> str:
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return "<user>"


def _has_cap(cap: int) -> bool:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) >> cap & 1)
    except OSError:
        pass
    return os.geteuid() == 0
