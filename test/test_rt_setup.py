"""rt_setup in real child processes, read back from /proc by the parent; and its refusals.

Each child applies one RtConfig, reports what it got, then waits until the parent closes
its stdin, so the parent reads the kernel's view (/proc/<pid>/status, sched_getscheduler)
while the child is alive. Refusals are made real by dropping the child to user nobody with
RLIMIT_RTPRIO 0 and a small RLIMIT_MEMLOCK, and checked from /proc too.
"""

from __future__ import annotations

import gc
import json
import os
import resource
import selectors
import subprocess
import sys
import weakref
from pathlib import Path

import pytest

from vr_stream_ros.system.realtime import (
    RtConfig,
    RtReport,
    apply,
    collect_garbage,
    format_cpu_ranges,
    known_cpus,
    read_memory,
    read_proc_status,
)

REPO = Path(__file__).resolve().parents[1]
LAST_CPU = known_cpus()[-1]
NOBODY = 65534
IS_ROOT = os.geteuid() == 0
may_realtime = pytest.mark.skipif(
    not IS_ROOT and resource.getrlimit(resource.RLIMIT_RTPRIO)[0] < 50,
    reason="needs root or an rtprio limit >= 50 (CI runs as root)")
may_lock = pytest.mark.skipif(
    not IS_ROOT and resource.getrlimit(resource.RLIMIT_MEMLOCK)[0] != resource.RLIM_INFINITY,
    reason="needs root or an unlimited memlock limit (CI runs as root)")
needs_root = pytest.mark.skipif(not IS_ROOT, reason="needs root to drop a child to nobody")

CHILD = r"""
import gc, json, os, resource, sys, threading, time
from vr_stream_ros.system.realtime import (RealtimeRefused, RtConfig, apply,
                                          settle_memory_lock)
args = json.loads(sys.argv[1])
if args["drop"]:  # an ordinary user: no RT priority allowed, 64 KiB of locked memory
    resource.setrlimit(resource.RLIMIT_RTPRIO, (0, 0))
    resource.setrlimit(resource.RLIMIT_MEMLOCK, (64 << 10, 64 << 10))
    if os.geteuid() == 0:
        os.setgroups([])
        os.setgid(65534)
        os.setuid(65534)  # from root: every capability is gone
older = threading.Thread(target=time.sleep, args=(120,), daemon=True)
older.start()  # exists before apply(): keeps its settings
config = dict(args["config"])
config["cpu_affinity"] = tuple(config.get("cpu_affinity", ()))
out = {}
try:
    report = apply(RtConfig(**config), pid=args["pid"])
    out.update(summary=report.summary(), applied=report.applied, refused=report.refused)
except (RealtimeRefused, ValueError) as exc:
    out.update(error=type(exc).__name__, message=str(exc))
newer = threading.Thread(target=time.sleep, args=(120,), daemon=True)
newer.start()  # created after apply(): inherits
if args["settle"]:
    touched = b"\x01" * (8 << 20)  # 8 MiB the "warm-up" wrote: resident, pinned on fault
    out.update(settled=vars(settle_memory_lock()))
    later = b"\x02" * (4 << 20)  # after the settle: a new mapping, locked as it is touched
out.update(gc_enabled=gc.isenabled(), gc_frozen=gc.get_freeze_count(),
           older_tid=older.native_id, newer_tid=newer.native_id)
print(json.dumps(out), flush=True)
sys.stdin.read()  # until the parent closes stdin
"""


class Child:
    """A Python process that applied an RtConfig and stays alive for inspection."""

    def __init__(self, drop: bool = False, pid: int = 0, settle: bool = False,
                 **config) -> None:
        args = json.dumps({"config": config, "drop": drop, "pid": pid, "settle": settle})
        self.proc = subprocess.Popen([sys.executable, "-c", CHILD, args], cwd=REPO,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        self.pid = self.proc.pid
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            ready = sel.select(timeout=30)
        line = self.proc.stdout.readline() if ready else ""
        if not line:
            self.close()
            raise AssertionError(f"child reported nothing: {self.proc.stderr.read()}")
        self.out: dict = json.loads(line)

    def status(self, tid: int | None = None) -> dict:
        return read_proc_status(tid or self.pid)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for stream in (self.proc.stdout, self.proc.stderr):
            stream.close()

    def __enter__(self) -> Child:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def test_defaults_change_nothing() -> None:
    with Child() as child:
        status = child.status()
        assert child.out["summary"] == "RT: defaults (nothing set)"
        assert (status["policy"], status["priority"], status["vmlck_kb"]) == ("other", 0, 0)
        assert status["cpu_list"] == sorted(os.sched_getaffinity(0))
        assert child.out["gc_enabled"] and child.out["gc_frozen"] == 0


@may_realtime
@pytest.mark.parametrize("policy", ["fifo", "rr"])
def test_affinity_policy_and_priority_read_back_from_proc(policy: str) -> None:
    with Child(cpu_affinity=[LAST_CPU], sched_policy=policy, rt_priority=42) as child:
        assert not child.out["refused"], child.out
        main = child.status()
        assert main["cpus"] == str(LAST_CPU) and main["cpu_list"] == [LAST_CPU]
        assert (main["policy"], main["priority"]) == (policy, 42)
        newer = child.status(child.out["newer_tid"])  # a thread started afterwards inherits
        assert (newer["cpus"], newer["policy"], newer["priority"]) == (str(LAST_CPU), policy, 42)
        older = child.status(child.out["older_tid"])  # per thread: an older one keeps its own
        assert (older["policy"], older["priority"]) == ("other", 0)
        assert older["cpu_list"] == sorted(os.sched_getaffinity(0))
        assert child.out["summary"] == (f"RT: cpu_affinity={LAST_CPU}; sched_policy={policy} "
                                        "prio 42")


@may_lock
def test_lock_memory_shows_in_vmlck() -> None:
    with Child(lock_memory=True) as locked, Child() as unlocked:
        assert "lock_memory (mlockall current+future) on fault" in locked.out["applied"], \
            locked.out
        status = locked.status()
        assert status["vmlck_kb"] > 1024, status  # the whole interpreter, not a page or two
        assert unlocked.status()["vmlck_kb"] == 0
        memory = read_memory(locked.pid)  # MCL_ONFAULT: pinned only what was touched
        assert 0 < memory.locked_kb <= memory.rss_kb < memory.vmlck_kb, memory


@may_lock
def test_settled_lock_keeps_what_is_resident_and_locks_new_mappings() -> None:
    """After the warm-up the lock narrows from the whole address space (VmLck = VmSize)
    to the pages the process touched, and what it maps later still locks on fault."""
    with Child(lock_memory=True, settle=True) as child:
        settled, memory = child.out["settled"], read_memory(child.pid)
        assert settled["refused"] == 0 and settled["ranges"] > 10, settled
        assert memory.vmlck_kb <= memory.rss_kb < memory.size_kb / 2, memory
        # the 8 MiB written before and the 4 MiB after the settle are both held
        assert memory.locked_kb > 12 << 10 and memory.vmlck_kb > 12 << 10, memory


@pytest.mark.parametrize(("mode", "enabled", "frozen"), [
    ("default", True, False), ("freeze", True, True), ("manual", False, True)])
def test_gc_modes(mode: str, enabled: bool, frozen: bool) -> None:
    with Child(gc_mode=mode) as child:
        assert child.out["gc_enabled"] is enabled
        assert (child.out["gc_frozen"] > 0) is frozen, child.out


def test_collect_garbage_frees_cycles_that_reached_the_old_generation() -> None:
    class Node:
        pass

    was_enabled = gc.isenabled()
    gc.disable()
    try:
        cycle = Node()
        cycle.me = cycle
        alive = weakref.ref(cycle)
        for _ in range(3):
            collect_garbage()  # survives young collections: promoted to older generations
        del cycle
        for _ in range(200):  # a frame loop: a few allocations and one call per frame
            _ = [Node() for _ in range(5)]
            collect_garbage()
            if alive() is None:
                break
        assert alive() is None, "a cycle in an old generation was never collected"
    finally:
        if was_enabled:
            gc.enable()


@needs_root
def test_refused_policy_and_memory_lock_carry_the_fix() -> None:
    with Child(drop=True, sched_policy="fifo", rt_priority=80, lock_memory=True) as child:
        refused = child.out["refused"]
        assert len(refused) == 2, child.out
        policy, memory = sorted(refused, key=lambda r: not r.startswith("sched_policy"))
        assert policy.startswith("sched_policy=fifo prio 80 refused (EPERM): RLIMIT_RTPRIO is 0")
        assert "add 'nobody - rtprio 99' to /etc/security/limits.conf" in policy
        assert "or run as root" in policy
        assert memory.startswith("lock_memory refused (") and "RLIMIT_MEMLOCK is 64 KiB" in memory
        assert "'nobody - memlock unlimited'" in memory
        assert " | REFUSED: " in child.out["summary"] and "\n" not in child.out["summary"]
        status = child.status()  # really refused: the kernel says so
        assert (status["uid"], status["policy"], status["vmlck_kb"]) == (NOBODY, "other", 0)


@needs_root
def test_require_realtime_turns_a_refusal_into_an_error_with_the_fix() -> None:
    with Child(drop=True, sched_policy="rr", rt_priority=90, require_realtime=True) as child:
        assert child.out["error"] == "RealtimeRefused", child.out
        message = child.out["message"]
        assert message.startswith("require_realtime is set and the kernel refused: "
                                   "sched_policy=rr prio 90 refused (EPERM)")
        assert "'nobody - rtprio 99' to /etc/security/limits.conf" in message
        assert child.status()["policy"] == "other"


@needs_root
def test_affinity_of_another_users_process_is_refused() -> None:
    before = os.sched_getaffinity(0)
    with Child(drop=True, pid=os.getpid(), cpu_affinity=[LAST_CPU]) as child:
        assert child.out["refused"] == [
            f"cpu_affinity={LAST_CPU} refused (EPERM): process {os.getpid()} belongs to "
            "another user: run as that user or as root"], child.out
    assert os.sched_getaffinity(0) == before


def test_missing_cpu_names_the_parameter_and_the_cpus_that_exist() -> None:
    missing = max(known_cpus()) + 1
    expected = (f"parameter 'cpu_affinity': CPU {missing} does not exist; this machine has "
                f"CPUs {format_cpu_ranges(known_cpus())}")
    before = os.sched_getaffinity(0)
    with pytest.raises(ValueError) as err:
        apply(RtConfig(cpu_affinity=(0, missing), sched_policy="fifo", rt_priority=10))
    assert str(err.value) == expected
    assert os.sched_getaffinity(0) == before and os.sched_getscheduler(0) == os.SCHED_OTHER


def test_missing_cpu_fails_in_a_child_before_anything_is_applied() -> None:
    with Child(cpu_affinity=[4096], lock_memory=True) as child:
        assert child.out["error"] == "ValueError"
        assert "'cpu_affinity': CPU 4096 does not exist; this machine has CPUs" in \
            child.out["message"]
        assert child.status()["vmlck_kb"] == 0


@pytest.mark.parametrize(("config", "named"), [
    (RtConfig(cpu_affinity=(-1,)), "'cpu_affinity': got -1"),
    (RtConfig(cpu_affinity=("1",)), "'cpu_affinity': got '1'"),
    (RtConfig(sched_policy="deadline"), "'sched_policy': got 'deadline', expected one of"),
    (RtConfig(sched_policy="fifo", rt_priority=0), "'rt_priority': got 0, expected 1..99"),
    (RtConfig(sched_policy="rr", rt_priority=100), "'rt_priority': got 100, expected 1..99"),
    (RtConfig(sched_policy="other", rt_priority=5), "'rt_priority': got 5, expected 0"),
    (RtConfig(sched_policy="fifo", rt_priority=True), "'rt_priority': got True"),
    (RtConfig(gc_mode="off"), "'gc_mode': got 'off', expected one of 'default'"),
    (RtConfig(lock_memory="yes"), "'lock_memory': got 'yes', expected true or false"),
])
def test_bad_config_names_the_parameter_and_the_allowed_values(config, named) -> None:
    with pytest.raises(ValueError, match=named.replace("(", r"\(")):
        config.validate()


def test_process_wide_settings_refuse_another_pid() -> None:
    with pytest.raises(ValueError, match="'lock_memory' and 'gc_mode' act on the calling"):
        apply(RtConfig(gc_mode="freeze"), pid=1)
    assert gc.get_freeze_count() == 0


def test_summary_is_one_line() -> None:
    report = RtReport(applied=["a", "b"], refused=["c"])
    assert report.summary() == "RT: a; b | REFUSED: c" and not report.ok
    assert RtReport().summary() == "RT: defaults (nothing set)" and RtReport().ok
