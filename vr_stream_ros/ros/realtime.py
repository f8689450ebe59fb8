"""Apply a node's RT parameters before it starts its threads, and pick its executor."""

from __future__ import annotations

from rclpy.executors import Executor, MultiThreadedExecutor, SingleThreadedExecutor
from rclpy.node import Node

from vr_stream_ros.graph.param_spec import ParameterError, Value, parse_cpu_list
from vr_stream_ros.system.realtime import RtConfig, RtReport, apply


def setup_realtime(node: Node, p: dict[str, Value]) -> RtReport:
    """Apply cpu_affinity, sched_policy, rt_priority, lock_memory, gc_mode; log one line.

    Raises ParameterError for an impossible value and RealtimeRefused when
    require_realtime is set and the kernel refused something.
    """
    config = RtConfig(cpu_affinity=parse_cpu_list(p["cpu_affinity"]),
                      sched_policy=p["sched_policy"], rt_priority=p["rt_priority"],
                      lock_memory=p["lock_memory"], gc_mode=p["gc_mode"],
                      require_realtime=p["require_realtime"])
    try:
        report = apply(config)
    except ValueError as exc:
        raise ParameterError(str(exc)) from None
    log = node.get_logger().warn if report.refused else node.get_logger().info
    log(report.summary())
    return report


def make_executor(kind: str) -> Executor:
    """The executor named by the 'executor' parameter."""
    if kind == "multi_threaded":
        return MultiThreadedExecutor(num_threads=2)
    if kind == "events":
        try:
            from rclpy.experimental import EventsExecutor
        except ImportError:
            raise ParameterError("parameter 'executor': 'events' needs rclpy's EventsExecutor "
                                 "(rclpy.experimental), which this rclpy does not have; use "
                                 "'single_threaded' or 'multi_threaded'") from None
        return EventsExecutor()
    return SingleThreadedExecutor()
