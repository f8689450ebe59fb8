"""The topics each node publishes and subscribes, stated once for docs/reference.md.

test/test_reference.py starts the real nodes and compares what the ROS graph shows
(names, types, directions, reliability, durability) with this table, so it cannot drift
from the nodes' create_publisher / create_subscription calls. Names without a leading
'/' are relative: they move with the node's namespace. No rclpy here.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class QoS:
    """A QoS profile by name, with the settings a reader needs to match it."""

    name: str
    reliability: str  # reliable | best_effort
    depth: int
    durability: str = "volatile"

    def describe(self) -> str:
        """e.g. 'sensor_data (best_effort, keep last 5, volatile)'."""
        return f"{self.name} ({self.reliability}, keep last {self.depth}, {self.durability})"


SENSOR_DATA = QoS("sensor_data", "best_effort", 5)
"""rclpy's qos_profile_sensor_data: a RELIABLE subscriber gets nothing from it."""


NEWEST_ONLY = QoS("newest_only", "best_effort", 1)
"""Keep last 1, best effort: a consumer that only ever wants the newest frame."""


def reliable(depth: int) -> QoS:
    """QoSProfile(depth=N) (or a plain depth): ROS's default profile, reliable."""
    return QoS("default", "reliable", depth)


@dataclass(frozen=True)
class Topic:
    """One topic of one node."""

    name: str
    type: str  # e.g. vr_stream_ros/msg/FrameRef
    direction: str  # pub | sub
    qos: QoS
    when: str
    only_if: str = ""
    """The condition under which the node has this topic at all ('' = always)."""


@dataclass(frozen=True)
class NodeTopics:
    """A node (by its ROS name), the executable that starts it, and its topics."""

    name: str
    executable: str
    summary: str
    topics: tuple[Topic, ...]


MONO = "stereo:=false"
STEREO = "stereo:=true"


def _image_topics(prefix: str, only_if: str, what: str) -> tuple[Topic, ...]:
    """A camera's robot-stack topics for one eye (prefix '' mono, 'left/', 'right/')."""
    url = "right_camera_info_url" if prefix == "right/" else "camera_info_url"
    return (
        Topic(f"{prefix}image_raw", "sensor_msgs/msg/Image", "pub", SENSOR_DATA,
              f"{what}, built only while someone subscribes, stamped with "
              "its FrameRef's stamp (full rate needs large_shm:=true on both sides)",
              only_if=only_if),
        Topic(f"{prefix}image_raw/compressed", "sensor_msgs/msg/CompressedImage", "pub",
              SENSOR_DATA, f"{what} as JPEG (compressed_quality, at most "
              "compressed_fps), only while someone subscribes", only_if=only_if),
        Topic(f"{prefix}camera_info", "sensor_msgs/msg/CameraInfo", "pub", reliable(1),
              f"with every {prefix}image_raw frame while someone subscribes: the calibration "
              f"of {url} (K and P zero without one); the service {prefix}set_camera_info "
              "(sensor_msgs/srv/SetCameraInfo) saves a new one and it is sent from then on",
              only_if=only_if),
    )


PROCESS_STATUS = Topic(
    "/diagnostics", "diagnostic_msgs/msg/DiagnosticArray", "pub", reliable(10),
    "once a second: '<node>: process' with its pid and host (the dashboard joins on it)")

NODE_TOPICS: tuple[NodeTopics, ...] = (
    NodeTopics("camera_node", "camera_node",
               "Captures frames into the shared-memory ring and announces each one.", (
        Topic("frame_ref", "vr_stream_ros/msg/FrameRef", "pub", SENSOR_DATA,
              "every frame, once it is committed to the ring (the pixels stay in the ring)"),
        *(topic for prefix, only_if, eye in (("", MONO, "every frame"),
                                             ("left/", STEREO, "every frame's left eye"),
                                             ("right/", STEREO, "every frame's right eye"))
          for topic in _image_topics(prefix, only_if, eye)),
        PROCESS_STATUS,
    )),
    NodeTopics("headset_bridge_node", "headset_bridge_node",
               "Sends the newest frame of the ring to the headset (RTP/JPEG over UDP or "
               "TCP, or WebRTC) and reports the latency of every stage.", (
        Topic("latency", "vr_stream_ros/msg/LatencyStats", "pub", reliable(10),
              "every stats_period_s (1 s)"),
        Topic("/diagnostics", "diagnostic_msgs/msg/DiagnosticArray", "pub", reliable(10),
              "every stats_period_s: end-to-end latency against latency_budget_ms "
              "(OK/WARN/ERROR); and once a second its process status"),
        Topic("detections", "vr_stream_ros/msg/DetectionArray", "sub", reliable(5),
              "the newest boxes go to the headset after each frame (RTCP APP 'VRDT')",
              only_if="send_detections:=true"),
    )),
    NodeTopics("detector_node", "detector_node",
               "YOLO beside the video path (yolo:=true): newest frame when free, from the "
               "ring on the camera's host or from image_raw/compressed on another "
               "(frame_source).", (
        Topic("frame_ref", "vr_stream_ros/msg/FrameRef", "sub", SENSOR_DATA,
              "always: the camera's host and ring decide the frame source, and a topic "
              "frame takes its seq and capture stamp from its FrameRef"),
        Topic("image_raw/compressed", "sensor_msgs/msg/CompressedImage", "sub", NEWEST_ONLY,
              "while the frame source is the topic (camera on another host, or "
              "frame_source:=topic); image_topic:=image_raw takes sensor_msgs/Image instead",
              only_if="frame_source is the topic"),
        Topic("detections", "vr_stream_ros/msg/DetectionArray", "pub", reliable(5),
              "each frame it detected (frames it was busy for are counted, not queued)"),
        Topic("vision_detections", "vision_msgs/msg/Detection2DArray", "pub", reliable(5),
              "with every detections message, the same boxes",
              only_if="vision_msgs is installed"),
        PROCESS_STATUS,
    )),
    NodeTopics("vr_stream_dashboard", "dashboard",
               "Terminal view of the graph: nodes and their processes, CPUs, network, "
               "latency (no ROS parameters; `dashboard --help` lists its options).", (
        Topic("latency", "vr_stream_ros/msg/LatencyStats", "sub", reliable(10),
              "each message redraws the latency panel (--latency-topic renames it)"),
        Topic("/diagnostics", "diagnostic_msgs/msg/DiagnosticArray", "sub", reliable(50),
              "process status of every node (pid, host) and the bridge's budget"),
    )),
)

CONDITIONS = ("send_detections:=true", "vision_msgs is installed", "frame_source is the topic",
              MONO, STEREO)
"""Every ``only_if`` used above (a test must know how to decide each)."""
