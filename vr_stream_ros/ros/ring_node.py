"""The base of the nodes that produce or consume the frame ring (camera, bridge, detector).

Each of them: declares and validates its parameters, applies its RT settings before it
starts any thread, names its executor, publishes its process status, runs one named
worker thread that never dies silently (an exception becomes ``fatal_error``, which
ends the process through ``run_node``), collects garbage between frames when
``gc_mode`` is manual, and joins that thread on close.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable

from rclpy.node import Node

from vr_stream_ros.graph.param_spec import ParamSpec, Value
from vr_stream_ros.ros.params import declare_and_validate
from vr_stream_ros.ros.process_status import ProcessStatus
from vr_stream_ros.ros.realtime import setup_realtime
from vr_stream_ros.system.realtime import (
    POLICIES,
    collect_garbage,
    set_thread_name,
    settle_memory_lock,
)

SETTLE_LOCK_AFTER_FRAMES = 300
"""lock_memory: frames (5 s at 60 fps) after which every page the video path touches has
been touched, and the lock is narrowed to what is resident (settle_memory_lock)."""


class RingNode(Node):
    """A node with validated parameters ``self.p`` and one worker thread."""

    def __init__(self, name: str, specs: Iterable[ParamSpec]) -> None:
        super().__init__(name)
        self.p: dict[str, Value] = declare_and_validate(self, specs)
        self.fatal_error: str | None = None
        """Set from the worker thread: run_node logs it and exits with code 1."""
        self.executor_kind = self.p["executor"]
        self.rt_report = setup_realtime(self, self.p)  # before any thread of ours exists
        self._manual_gc = self.p.get("gc_mode") == "manual"
        # Only where the lock is on fault: settling re-locks with MCL_ONFAULT.
        locked = any(a.startswith("lock_memory") and a.endswith("on fault")
                     for a in self.rt_report.applied)
        self._frames_to_settle = SETTLE_LOCK_AFTER_FRAMES if locked else -1
        self._stop = threading.Event()
        self._worker: threading.Thread | None = None
        self._process_status = ProcessStatus(self)

    @property
    def stopping(self) -> bool:
        """True once ``stop_worker`` was called."""
        return self._stop.is_set()

    def start_worker(self, name: str, target: Callable[[], None]) -> None:
        """Run ``target`` on a thread called ``name``; an exception ends the node."""
        def run() -> None:
            set_thread_name(name)
            try:
                target()
            except Exception as exc:  # never a silent dead thread in a live-looking node
                self.fatal_error = f"{name} thread failed: {exc!r}"

        self._worker = threading.Thread(target=run, name=name, daemon=True)
        self._worker.start()

    def between_frames(self) -> None:
        """The worker's housekeeping after each frame (gc_mode manual: collect now; the
        memory lock narrowed once, off this thread, after the warm-up)."""
        if self._manual_gc:
            collect_garbage()
        if self._frames_to_settle > 0:
            self._frames_to_settle -= 1
            if self._frames_to_settle == 0:
                threading.Thread(target=self._settle_lock, name="settle_lock",
                                 daemon=True).start()

    def _settle_lock(self) -> None:
        """Keep locked what the warm-up touched (a thread below the video path's priority)."""
        set_thread_name("settle_lock")
        os.sched_setscheduler(0, POLICIES["other"], os.sched_param(0))
        try:
            kept = settle_memory_lock()
        except OSError as exc:
            self.get_logger().warn(f"lock_memory: could not narrow the lock after the warm-up: "
                                   f"{exc}")
            return
        self.get_logger().info(
            f"lock_memory: after {SETTLE_LOCK_AFTER_FRAMES} frames, kept locked what is "
            f"resident: {kept.locked_kb / 1024:.1f} MiB in {kept.ranges} ranges"
            + (f" ({kept.refused} ranges refused)" if kept.refused else "")
            + "; new mappings lock on fault")

    def stop_worker(self, timeout: float = 2.0) -> None:
        """Ask the worker to stop and wait up to ``timeout`` s for it."""
        self._stop.set()
        if self._worker is not None and self._worker.is_alive():
            self._worker.join(timeout=timeout)
