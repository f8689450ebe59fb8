"""Start the vr_stream_ros graph: camera_node and headset_bridge_node (detector_node with yolo).

    ros2 launch vr_stream_ros stream.launch.py headset_ip:=192.168.1.100

The nodes, their parameters and the arguments come from vr_stream_ros.graph.launches, the
same description `make run` uses, so the two cannot drift apart. Every argument is listed
by `--show-args` and in docs/reference.md. A misspelled argument (widht:=640) is refused
with the closest known one, rather than ignored.
"""

from launch import LaunchDescription
from launch.actions import (
    DeclareLaunchArgument,
    EmitEvent,
    LogInfo,
    OpaqueFunction,
    RegisterEventHandler,
)
from launch.event_handlers import OnProcessExit
from launch.events import Shutdown
from launch_ros.actions import Node

from vr_stream_ros.graph import launches as graph
from vr_stream_ros.graph.param_spec import ParameterError

# Launch configurations the launch machinery itself sets (launch_ros's PushRosNamespace,
# SetParameter, SetRemap; ros2 launch's --launch-prefix): not arguments of this file.
MACHINERY = ("ros_namespace", "global_params", "ros_remaps", "emulate_tty",
             "launch-prefix", "launch-prefix-filter")


def _exit_handler(node: graph.NodeLaunch, action: Node) -> RegisterEventHandler:
    """A clean stop stays quiet; a crash is one error line and a non-zero `ros2 launch`.

    launch's exit code is 1 only when an exception reaches its event loop, so a required
    node's non-zero exit raises (launch logs it as "Caught exception in launch: ...",
    shuts the rest down and returns 1). A required node ending with 0 outside a shutdown
    ends the launch without an error; the detector's exit only logs a warning. With
    respawn:=true launch starts an essential node again when a signal killed it (Node
    respawn); any other exit shuts the launch down within respawn_delay, before launch
    would respawn it.
    """
    respawns = [0]

    def on_exit(event, context):
        code = event.returncode
        if code == 0 and context.is_shutdown:
            return None  # Ctrl-C or another node's exit: nothing to report
        if (node.respawn and code < 0 and not context.is_shutdown  # killed by a signal
                and respawns[0] < graph.RESPAWN_MAX):
            respawns[0] += 1
            return [LogInfo(msg=f"{node.name} was killed (signal {-code}); starting it again "
                                f"in {graph.RESPAWN_DELAY_S} s (respawn:=false turns this off)")]
        if not node.essential:
            return [LogInfo(msg=f"{node.name} exited with code {code}; the video path goes "
                                "on without it")]
        if code != 0:
            raise RuntimeError(f"{node.name} exited with code {code}: the stream cannot go "
                               "on without it, stopping the rest")
        return [LogInfo(msg=f"{node.name} ended: the stream needs it, stopping the rest"),
                EmitEvent(event=Shutdown(reason=f"{node.name} ended"))]
    return RegisterEventHandler(OnProcessExit(target_action=action, on_exit=on_exit))


def _nodes(context, *args, **kwargs):
    given = {k: v for k, v in context.launch_configurations.items() if k not in MACHINERY}
    try:
        launches = graph.node_launches(given)  # also refuses unknown names (widht:=640)
    except ParameterError as exc:
        raise RuntimeError(str(exc)) from None  # launch prints it as one line, exits 1
    entities = []
    for n in launches:
        action = Node(package=n.package, executable=n.executable, name=n.name,
                      namespace=n.namespace or None, parameters=[n.parameters],
                      additional_env=n.env or None, output="screen", respawn=n.respawn,
                      respawn_delay=graph.RESPAWN_DELAY_S,
                      respawn_max_retries=graph.RESPAWN_MAX if n.respawn else -1)
        entities += [action, _exit_handler(n, action)]
    return entities


def generate_launch_description() -> LaunchDescription:
    config = graph.default_config_path()
    shipped = graph.argument_defaults(graph.load_config(config))
    arguments = [DeclareLaunchArgument(graph.CONFIG_ARGUMENT, default_value=config,
                                       description="Parameters file (config/stream.yaml)")]
    # '' = take the value from the config file, so config:=my.yaml is not overridden.
    arguments += [DeclareLaunchArgument(
        a.name, default_value="",
        description=f"{a.description} [from the config file; shipped: {shipped[a.name]}]")
        for a in graph.LAUNCH_ARGUMENTS]
    return LaunchDescription([*arguments, OpaqueFunction(function=_nodes)])
