"""A node's process on /diagnostics, so tools find its pid by its ROS name.

ROS graph queries give node names, never processes. Every vr_stream_ros node publishes,
once a second, a DiagnosticStatus named ``<node>: process`` with its pid and host; the
dashboard matches it with the graph's node names.
"""

from __future__ import annotations

import os
import socket
import sys

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.node import Node

STATUS_SUFFIX = ": process"
"""DiagnosticStatus.name is '<fully qualified node name>: process'."""


class ProcessStatus:
    """Publishes pid, host and executable of this node's process every ``period_s``."""

    def __init__(self, node: Node, period_s: float = 1.0) -> None:
        self._node = node
        self._pub = node.create_publisher(DiagnosticArray, "/diagnostics", 10)
        host = socket.gethostname()
        name = node.get_fully_qualified_name()
        self._status = DiagnosticStatus(
            level=DiagnosticStatus.OK, name=name + STATUS_SUFFIX, message="running",
            hardware_id=host, values=[KeyValue(key=k, value=v) for k, v in (
                ("node", name), ("pid", str(os.getpid())), ("host", host),
                ("executable", os.path.basename(sys.argv[0])))])
        self._timer = node.create_timer(period_s, self._publish)
        self._publish()

    def _publish(self) -> None:
        array = DiagnosticArray(status=[self._status])
        array.header.stamp = self._node.get_clock().now().to_msg()
        self._pub.publish(array)
