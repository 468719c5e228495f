"""Bring up camera + arm bridge + MQE policy:

    ros2 launch mqe_policy run.launch.py goal:=drawer.png model:=/path/to/export [use_sim:=true]

Arguments, nodes and parameters all come from mqe_policy.system, the description that the
plain-Python runner `mqe-run` uses as well.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction, SetEnvironmentVariable, Shutdown
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from mqe_policy import system


def _nodes(context):
    arguments = system.resolve_arguments(
        {argument.name: LaunchConfiguration(argument.name).perform(context) for argument in system.LAUNCH_ARGUMENTS}
    )
    return [
        Node(
            package=node.package,
            executable=node.executable,
            name=node.name,
            parameters=[*node.parameter_files, node.parameters],
            output="screen",
            emulate_tty=True,
            on_exit=Shutdown(reason=f"{node.name} exited") if node.required else None,
        )
        for node in system.describe_nodes(arguments)
    ]


def generate_launch_description():
    return LaunchDescription(
        [
            *(
                DeclareLaunchArgument(argument.name, default_value=argument.default, description=argument.description)
                for argument in system.LAUNCH_ARGUMENTS
            ),
            *(SetEnvironmentVariable(name, value) for name, value in system.dds_environment().items()),
            OpaqueFunction(function=_nodes),
        ]
    )
