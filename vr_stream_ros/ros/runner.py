"""The small main() every node shares: init, build, spin, and a clean exit on any signal."""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable

import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions

from vr_stream_ros.camera.base import CameraError
from vr_stream_ros.graph.param_spec import ParameterError
from vr_stream_ros.ring.frame_ring import FrameRingError
from vr_stream_ros.ros.realtime import make_executor
from vr_stream_ros.system.realtime import RealtimeRefused

STARTUP_ERRORS = (ParameterError, CameraError, FrameRingError, RealtimeRefused, ValueError)
"""What a node may raise while starting: logged as one line, exit code 2."""


def run_node(name: str, factory: Callable[[], Node], args: list[str] | None = None) -> int:
    """Run a node until shutdown; returns the process exit code.

    A node signals a fatal error after start-up by setting ``node.fatal_error``;
    the loop then stops and the process exits with code 1.
    """
    # rclpy's own handler shuts the context down on SIGINT, before close() can log (the
    # log then fails to reach /rosout). Ours only stops the loop; shutdown comes last.
    rclpy.init(args=args if args is not None else sys.argv,
               signal_handler_options=SignalHandlerOptions.NO)
    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    node: Node | None = None
    try:
        try:
            node = factory()
            executor = make_executor(getattr(node, "executor_kind", "single_threaded"))
        except STARTUP_ERRORS as exc:
            rclpy.logging.get_logger(name).fatal(str(exc))
            return 2
        executor.add_node(node)
        while rclpy.ok() and getattr(node, "fatal_error", None) is None:
            executor.spin_once(timeout_sec=0.2)
        fatal = getattr(node, "fatal_error", None)
        if fatal:
            node.get_logger().fatal(fatal)
            return 1
        return 0
    except (KeyboardInterrupt, ExternalShutdownException):
        return 0
    finally:
        # `ros2 launch` forwards a second SIGINT after the terminal's: cleanup must finish.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if node is not None:
            close = getattr(node, "close", None)
            if close is not None:
                close()
            node.destroy_node()
        rclpy.try_shutdown()


def _stop(signum: int, _frame: object) -> None:
    """SIGINT/SIGTERM: leave the spin loop by KeyboardInterrupt (it wakes within 0.2 s)."""
    raise KeyboardInterrupt(signal.Signals(signum).name)
