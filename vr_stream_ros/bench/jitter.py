"""`make bench-jitter`: wake-up jitter and video-path p99 with and without RT, idle and loaded.

A cyclictest-like loop wakes at the frame period (60 Hz) on absolute deadlines and
records how late each wake-up is, in four variants (SCHED_OTHER / SCHED_FIFO 80 pinned
to the last CPU, each without and with a CPU load of one busy process per CPU). Then the
whole video pipeline's capture -> sent p99 under the same load, with
rt_profile-like settings (SCHED_FIFO, pinned, memory locked) and without. Ratios, not
absolute numbers, are what carry over to another machine.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import tempfile
import time

import numpy as np

from vr_stream_ros.bench.pipeline import Result, bench_ros_pipeline
from vr_stream_ros.latency.percentiles import summarize
from vr_stream_ros.system.realtime import RtConfig, apply, online_cpus

PERIOD_NS = round(1e9 / 60)


def _busy() -> None:
    while True:
        pass


def _cyclic(seconds: float, realtime: bool, out) -> None:
    if realtime:
        apply(RtConfig(cpu_affinity=(online_cpus()[-1],), sched_policy="fifo", rt_priority=80,
                       lock_memory=True))
    late = []
    deadline = time.monotonic_ns() + PERIOD_NS
    end = deadline + int(seconds * 1e9)
    while deadline < end:
        delay = deadline - time.monotonic_ns()
        if delay > 0:
            time.sleep(delay / 1e9)
        late.append(time.monotonic_ns() - deadline)
        deadline += PERIOD_NS
    out.put(late)


def cyclic_variant(seconds: float, realtime: bool, loaded: bool) -> dict:
    """Wake-up lateness (ms) of one variant, run in its own process."""
    ctx = mp.get_context("spawn")
    load = [ctx.Process(target=_busy, daemon=True) for _ in online_cpus()] if loaded else []
    for p in load:
        p.start()
    try:
        queue = ctx.Queue()
        proc = ctx.Process(target=_cyclic, args=(seconds, realtime, queue))
        proc.start()
        late = np.asarray(queue.get(timeout=seconds + 30)) / 1e6
        proc.join(10)
    finally:
        for p in load:
            p.kill()
    s = summarize(late)
    return {"p50_ms": round(s.p50, 3), "p99_ms": round(s.p99, 3), "max_ms": round(s.max, 3),
            "wakeups": s.samples}


def pipeline_under_load(tmp: str, seconds: float, realtime: bool) -> Result:
    """The ROS pipeline with one busy process per CPU running beside it."""
    ctx = mp.get_context("spawn")
    load = [ctx.Process(target=_busy, daemon=True) for _ in online_cpus()]
    for p in load:
        p.start()
    rt: tuple[str, ...] = ()
    if realtime:
        cpu = str(online_cpus()[-1])
        rt = (f"cpu_affinity:={cpu}", "sched_policy:=fifo", "lock_memory:=true",
              "gc_mode:=freeze")
    try:
        return bench_ros_pipeline(
            tmp, seconds, camera_params=(*rt, "rt_priority:=90") if rt else (),
            bridge_params=(*rt, "rt_priority:=85") if rt else (),
            label=f"pipeline_loaded_{'rt' if realtime else 'no_rt'}")
    finally:
        for p in load:
            p.kill()


def main(argv: list[str] | None = None) -> int:
    """Run the variants, print a table and ratios; the last line is JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    ns = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("[jitter] note: not root; SCHED_FIFO needs rtprio limits (`tune apply`)")
    cyclic = {}
    for realtime in (False, True):
        for loaded in (False, True):
            name = f"{'rt' if realtime else 'no_rt'}_{'loaded' if loaded else 'idle'}"
            cyclic[name] = cyclic_variant(ns.seconds, realtime, loaded)
    with tempfile.TemporaryDirectory(prefix="vr_jitter_") as tmp:
        pipes = {r.name: r.figures() for r in (pipeline_under_load(tmp, ns.seconds + 2, False),
                                                pipeline_under_load(tmp, ns.seconds + 2, True))}
    print(f"\n{'wake-up lateness at 60 Hz':26} {'p50':>8} {'p99':>8} {'max':>8}  (ms)")
    for name, f in cyclic.items():
        print(f"{name:26} {f['p50_ms']:8.3f} {f['p99_ms']:8.3f} {f['max_ms']:8.3f}")
    print(f"\n{'capture->sent under load':26} {'p50':>8} {'p99':>8} {'max':>8} {'lost':>7}")
    for name, f in pipes.items():
        print(f"{name:26} {f['p50_ms']:8.3f} {f['p99_ms']:8.3f} {f['max_ms']:8.3f} "
              f"{f['loss_pct']:6.1f}%")
    ratios = {
        "wakeup_p99_loaded_no_rt_vs_rt": round(cyclic["no_rt_loaded"]["p99_ms"]
                                               / max(1e-6, cyclic["rt_loaded"]["p99_ms"]), 2),
        "pipeline_p99_loaded_no_rt_vs_rt": round(
            pipes["pipeline_loaded_no_rt"]["p99_ms"]
            / max(1e-6, pipes["pipeline_loaded_rt"]["p99_ms"]), 2),
    }
    print("\nratios (>1: RT is better): " + ", ".join(f"{k} {v}" for k, v in ratios.items()))
    print(json.dumps({"cyclic": cyclic, "pipeline": pipes, "ratios": ratios}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
