"""The node graph, described once: launch/stream.launch.py and ``make run`` both read it.

Defaults come from config/stream.yaml; launch arguments (``headset_ip:=...``) override
single parameters. Nothing else may describe which nodes run with which parameters,
so the launch file and ``make run`` cannot drift apart. No rclpy, no launch imports.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import yaml

from vr_stream_ros.graph.node_params import BRIDGE_PARAMS, CAMERA_PARAMS, DETECTOR_PARAMS
from vr_stream_ros.graph.param_spec import ParameterError, ParamSpec, Value
from vr_stream_ros.system.realtime import MALLOC_ARENAS

LARGE_SHM_ENV = "FASTRTPS_DEFAULT_PROFILES_FILE"
"""Where Fast DDS (Jazzy's rmw_fastrtps) reads an XML profile at process start."""

MALLOC_ARENA_ENV = "MALLOC_ARENA_MAX"
"""glibc's arena limit, read at process start; set for nodes with lock_memory."""
PACKAGE = "vr_stream_ros"
EVERY_NODE = "*"  # a launch argument that sets the same parameter on every node having it


@dataclass(frozen=True)
class LaunchArgument:
    """A launch argument and the node parameter it sets."""

    name: str
    node: str
    spec: ParamSpec

    @property
    def description(self) -> str:
        """Text shown by ``ros2 launch ... --show-args``."""
        where = ("every node; " if self.node == EVERY_NODE
                 else f"{self.node}.{self.spec.name}; " if self.node else "")
        return f"{self.spec.description} ({where}{self.spec.allowed()})"

    def applies_to(self, node: str) -> bool:
        """Whether this argument sets a parameter of ``node``."""
        if self.node == EVERY_NODE:
            return any(s.name == self.spec.name for s in dict(NODES)[node])
        return self.node == node


@dataclass(frozen=True)
class NodeLaunch:
    """One node process: what ``launch_ros.actions.Node`` or ``make run`` starts.

    ``parameters`` is the complete, validated set (config file merged with the launch
    arguments). It is passed whole rather than as "params file + overrides" because
    rcl lets a node-specific key of a params file beat a ``-p`` / ``/**`` override.
    """

    executable: str
    name: str
    parameters: dict[str, Value] = field(default_factory=dict)
    package: str = PACKAGE
    essential: bool = True
    """False for the detector: if it exits, the video path keeps going."""
    namespace: str = ""
    """ROS namespace ('' = the root); the nodes' topics are relative, so they move with it."""
    env: dict[str, str] = field(default_factory=dict)
    """Environment variables the process needs beyond the caller's (large_shm:=true)."""
    respawn: bool = False
    """Start it again when a signal killed it (respawn:=true, essential nodes): see RESPAWN."""

    def ros_args(self) -> list[str]:
        """Command-line ROS arguments equivalent to the launch file's Node action."""
        args = ["--ros-args", "-r", f"__node:={self.name}"]
        if self.namespace:
            args += ["-r", f"__ns:={self.namespace}"]
        for key, value in self.parameters.items():
            args += ["-p", f"{key}:={_ros_literal(value)}"]
        return args

    def command(self, executable_path: str) -> list[str]:
        """argv starting this node from its installed executable (``make run``)."""
        env = [f"{k}={v}" for k, v in self.env.items()]
        return [*(["env", *env] if env else []), executable_path, *self.ros_args()]


NODES: tuple[tuple[str, tuple[ParamSpec, ...]], ...] = (
    ("camera_node", CAMERA_PARAMS),
    ("headset_bridge_node", BRIDGE_PARAMS),
    ("detector_node", DETECTOR_PARAMS),  # only with yolo:=true
)
"""(executable == node name, its parameter specs), in start order."""

_ARGUMENTS = (
    ("headset_ip", "headset_bridge_node"),
    ("headset_port", "headset_bridge_node"),
    ("transport", "headset_bridge_node"),
    ("width", "camera_node"),
    ("height", "camera_node"),
    ("fps", "camera_node"),
    ("camera", "camera_node"),
    ("profile", "camera_node"),
    ("model", "detector_node"),
    ("imgsz", "detector_node"),
    ("sdp_path", "headset_bridge_node"),
    ("record_path", "headset_bridge_node"),
    ("webrtc_port", "headset_bridge_node"),
    ("webrtc_bind", "headset_bridge_node"),
    ("webrtc_token", "headset_bridge_node"),
    ("webrtc_max_playout_delay_ms", "headset_bridge_node"),
    ("nack", "headset_bridge_node"),
    ("jpeg_restart_interval", "headset_bridge_node"),
    ("jpeg_threads", "headset_bridge_node"),
    ("adapt", "headset_bridge_node"),
    ("fec", "headset_bridge_node"),
    ("tcp_congestion", "headset_bridge_node"),
    ("frame_source", "detector_node"),
    ("image_topic", "detector_node"),
    ("compressed_quality", "camera_node"),
    ("compressed_fps", "camera_node"),
    ("stereo", "camera_node"),
    ("stereo_layout", "camera_node"),
    ("camera_info_url", "camera_node"),
    ("right_camera_info_url", "camera_node"),
)


def _spec(node: str, name: str) -> ParamSpec:
    specs = dict(NODES)[node]
    return next(s for s in specs if s.name == name)


RT_PROFILE = ParamSpec(
    "rt_profile", "none", "Real-time layout overlaid on the config: config/rt_<profile>.yaml "
    "(pi5: the seed's CPUs 2/1 at FIFO 90/85; two_core: both on CPU 1).",
    choices=("none", "pi5", "two_core"))

YOLO = ParamSpec(
    "yolo", False, "Start detector_node (YOLO beside the video path; needs the YOLO extra).")

NAMESPACE_RULE = "a ROS namespace like 'robot2' or '/robot2/vr' ('' = the root)"


def check_namespace(value: str) -> str | None:
    """Spec check: '' or ROS name tokens separated by '/' (an optional leading '/')."""
    token = r"[A-Za-z_][A-Za-z0-9_]*"
    return None if re.fullmatch(rf"(/?{token}(/{token})*)?", value) else NAMESPACE_RULE


NAMESPACE = ParamSpec(
    "namespace", "", "ROS namespace of every node; their topics are relative, so they move "
    "with it (robot2 -> /robot2/frame_ref, /robot2/latency); /diagnostics stays global.",
    check=check_namespace, expects=NAMESPACE_RULE)

LARGE_SHM = ParamSpec(
    "large_shm", False, f"Export config/fastdds_large_shm.xml as {LARGE_SHM_ENV} to every "
    "node: Fast DDS with a 32 MiB shared-memory segment, so image_raw at full rate arrives "
    "(its subscribers need the same variable).")

RESPAWN = ParamSpec(
    "respawn", True, "Start camera_node or headset_bridge_node again when a signal killed "
    "it (SIGKILL, SIGSEGV, the OOM killer), after 0.1 s and at most 20 times per node; an "
    "exit with a code (a bad parameter, no camera) still stops the launch. false: any exit "
    "of either stops the launch. The detector is never respawned.")
RESPAWN_DELAY_S = 0.1
"""Pause before a killed node is started again (launch_ros respawn_delay, `make run`)."""
RESPAWN_MAX = 20
"""Restarts per node at most, so a node crashing at start cannot loop for ever."""

LAUNCH_ARGUMENTS: tuple[LaunchArgument, ...] = (
    *(LaunchArgument(name, node, _spec(node, name)) for name, node in _ARGUMENTS),
    # A second instance on one host needs its own ring (and sdp_path, ports, namespace).
    LaunchArgument("ring_name", EVERY_NODE, _spec("camera_node", "ring_name")),
    LaunchArgument("rt_profile", "", RT_PROFILE),  # not a node parameter: selects a file
    LaunchArgument("yolo", "", YOLO),  # not a node parameter: adds a node
    LaunchArgument("namespace", "", NAMESPACE),  # not a node parameter: where nodes live
    LaunchArgument("large_shm", "", LARGE_SHM),  # not a node parameter: the environment
    LaunchArgument("respawn", "", RESPAWN),  # not a node parameter: the supervisor's policy
)

CONFIG_ARGUMENT = "config"
"""The launch argument naming the parameters file (``make run --config``)."""


def check_argument_names(names: Iterable[str], ignored: Iterable[str] = ()) -> None:
    """Refuse a launch argument no one declares, naming the closest known one.

    ``widht:=640`` would otherwise be ignored without a word. ``ignored``: names that
    belong to the launch machinery (e.g. launch_ros's ``ros_namespace``).
    """
    known = {a.name for a in LAUNCH_ARGUMENTS} | {CONFIG_ARGUMENT}
    unknown = sorted(set(names) - known - set(ignored))
    if not unknown:
        return
    name = unknown[0]
    close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
    hint = (f"did you mean '{close[0]}'?" if close
            else f"known: {', '.join(sorted(known))}")
    raise ParameterError(f"launch argument '{name}' is not known; {hint} "
                         "(docs/reference.md lists them all)")


def _ros_literal(value: Value) -> str:
    """``value`` as rcl parses it after ``-p name:=`` (YAML), keeping its type."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ",".join(str(v) for v in value) + "]"
    if isinstance(value, str) and (value == "" or not isinstance(yaml.safe_load(value), str)):
        return "'" + value.replace("'", "''") + "'"  # '420' must stay a string
    return str(value)


def default_config_path() -> str:
    """config/stream.yaml of the installed package (or of this source tree)."""
    try:
        from ament_index_python.packages import get_package_share_directory
        share = get_package_share_directory(PACKAGE)
        path = os.path.join(share, "config", "stream.yaml")
        if os.path.isfile(path):
            return path
    except (ImportError, LookupError, OSError):
        pass
    here = os.path.dirname(os.path.abspath(__file__))
    return os.path.join(os.path.dirname(os.path.dirname(here)), "config", "stream.yaml")


def load_config(path: str) -> dict[str, dict[str, Value]]:
    """Per-node parameters from a ROS 2 params file ('/**' entries apply to every node)."""
    try:
        with open(path) as f:
            data = yaml.safe_load(f) or {}
    except FileNotFoundError:
        raise ParameterError(f"config file {path}: does not exist") from None
    except OSError as exc:
        raise ParameterError(f"config file {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ParameterError(f"config file {path}: not valid YAML ({exc})") from None
    shared = (data.get("/**") or {}).get("ros__parameters", {})
    result = {}
    for node, _ in NODES:
        entry = data.get(f"/**/{node}") or data.get(node) or {}
        result[node] = {**shared, **entry.get("ros__parameters", {})}
    return result


def _default_values(config: Mapping[str, Mapping[str, Value]]) -> dict[str, Value]:
    """Each launch argument's value when not given: the config file's, else the spec's."""
    def value(a: LaunchArgument) -> Value:
        node = "camera_node" if a.node == EVERY_NODE else a.node
        return config.get(node, {}).get(a.name, a.spec.default)
    return {a.name: value(a) for a in LAUNCH_ARGUMENTS}


def argument_defaults(config: Mapping[str, Mapping[str, Value]]) -> dict[str, str]:
    """Launch argument defaults as strings: the config file's values, else the spec's."""
    return {name: _ros_literal(v) for name, v in _default_values(config).items()}


def node_launches(arguments: Mapping[str, str], config_path: str | None = None
                  ) -> list[NodeLaunch]:
    """The nodes to start for these launch argument values (validated, in start order).

    ``config:=path`` among ``arguments`` names the parameters file, like ``config_path``.
    """
    check_argument_names(arguments)
    arguments = dict(arguments)
    config_path = arguments.pop(CONFIG_ARGUMENT, "") or config_path or default_config_path()
    config = load_config(config_path)
    # An empty value means "as the config file says" (the launch file's defaults).
    values = {**_default_values(config), **{k: v for k, v in arguments.items() if v != ""}}
    profile = RT_PROFILE.validate(values["rt_profile"])
    overlay: dict[str, dict[str, Value]] = {}
    if profile != "none":  # the RT layouts ship with the package, whatever config is used
        package_config = os.path.dirname(default_config_path())
        overlay = load_config(os.path.join(package_config, f"rt_{profile}.yaml"))
    yolo = YOLO.validate(values["yolo"])
    namespace = NAMESPACE.validate(values["namespace"])
    namespace = "/" + namespace.strip("/") if namespace.strip("/") else ""
    env = {}
    if LARGE_SHM.validate(values["large_shm"]):
        env[LARGE_SHM_ENV] = os.path.join(os.path.dirname(default_config_path()),
                                          "fastdds_large_shm.xml")
    respawn = RESPAWN.validate(values["respawn"])
    launches = []
    for node, specs in NODES:
        if node == "detector_node" and not yolo:
            continue
        merged = {**config[node], **overlay.get(node, {})}
        for arg in LAUNCH_ARGUMENTS:
            if arg.applies_to(node):
                merged[arg.spec.name] = values[arg.name]
        known_names = {s.name for s in specs}
        for key in merged:
            if key not in known_names:
                raise ParameterError(f"config file {config_path}: '{node}' has no parameter "
                                     f"'{key}'; known: {', '.join(sorted(known_names))}")
        # Validate here, so a bad value is refused before any process starts.
        parameters = {s.name: s.validate(merged[s.name]) for s in specs if s.name in merged}
        node_env = dict(env)
        if parameters.get("lock_memory"):  # fewer malloc arenas: less address space locked
            node_env[MALLOC_ARENA_ENV] = str(MALLOC_ARENAS)
        launches.append(NodeLaunch(node, node, parameters, essential=node != "detector_node",
                                   namespace=namespace, env=node_env,
                                   respawn=respawn and node != "detector_node"))
    _check_rtp_jpeg_size(launches[0].parameters, launches[1].parameters.get("transport", "udp"))
    return launches


def _check_rtp_jpeg_size(camera: dict[str, Value], transport: Value = "udp") -> None:
    """The bridge's RTP/JPEG (RFC 2435) carries sizes that are multiples of 8 up to 2040."""
    for name in ("width", "height"):
        value = camera.get(name, 0)
        if value % 8 or value > 2040:
            raise ParameterError(
                f"parameter '{name}': got {value}, expected a multiple of 8 up to 2040 "
                "(what RTP/JPEG can carry to the headset)")
    if camera.get("stereo") and transport != "webrtc":  # the packed pair must fit too
        layout = camera.get("stereo_layout", "top_bottom")
        name = "width" if layout == "side_by_side" else "height"
        if 2 * camera.get(name, 0) > 2040:
            raise ParameterError(
                f"parameters 'stereo_layout'/'{name}': {layout} packs two eyes of {name} "
                f"{camera[name]} into {2 * camera[name]} px, over RTP/JPEG's 2040; use "
                f"stereo_layout:={'top_bottom' if name == 'width' else 'side_by_side'} "
                f"or a {name} up to 1016")
