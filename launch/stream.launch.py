"""Start the vr_stream_ros graph: camera_node and headset_bridge_node.

    ros2 launch vr_stream_ros stream.launch.py headset_ip:=192.168.1.100

The nodes, their parameters and the arguments come from vr_stream_ros.graph.launches, the
same description `make run` uses, so the two cannot drift apart.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction, Shutdown
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from vr_stream_ros.graph import launches as graph


def _nodes(context, *args, **kwargs):
    values = {a.name: LaunchConfiguration(a.name).perform(context)
              for a in graph.LAUNCH_ARGUMENTS}
    config = LaunchConfiguration("config").perform(context)
    # Without the camera or the bridge there is no stream: the launch ends. The detector
    # is optional: if it exits, its error is in the log and the video goes on.
    return [
        Node(package=n.package, executable=n.executable, name=n.name,
             parameters=[n.parameters], output="screen",
             on_exit=Shutdown(reason=f"{n.name} exited: the graph is incomplete without it")
             if n.essential else None)
        for n in graph.node_launches(values, config)
    ]


def generate_launch_description() -> LaunchDescription:
    config = graph.default_config_path()
    shipped = graph.argument_defaults(graph.load_config(config))
    arguments = [DeclareLaunchArgument("config", default_value=config,
                                       description="Parameters file (config/stream.yaml)")]
    # '' = take the value from the config file, so config:=my.yaml is not overridden.
    arguments += [DeclareLaunchArgument(
        a.name, default_value="",
        description=f"{a.description} [from the config file; shipped: {shipped[a.name]}]")
        for a in graph.LAUNCH_ARGUMENTS]
    return LaunchDescription([*arguments, OpaqueFunction(function=_nodes)])
