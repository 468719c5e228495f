"""Bring up camera + arm bridge + MQE policy:

    ros2 launch mqe_policy run.launch.py goal:=drawer.png model:=/path/to/export [use_sim:=true]

Arguments, nodes and parameters all come from mqe_policy.system, the description that the
plain-Python runner `mqe-run` uses as well. Before any node starts, an unknown argument name or a
model / goal the policy would refuse stops the launch with one line and a non-zero exit status, and
so does the policy node exiting with an error later (see docs/launch.md).
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction, SetEnvironmentVariable, Shutdown
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from mqe_policy import system


def _exit_handler(name):
    """on_exit of a required node. ROS 2 launch's Shutdown action always ends with status 0
    (launch/launch_service.py, humble: run_async returns 1 only when an exception reaches its loop),
    so a failed node raises instead: the launch logs the line, shuts everything down and exits 1."""

    def on_exit(event, context):  # event: launch.events.process.ProcessExited
        if event.returncode != 0:
            raise RuntimeError(f"{name} exited with status {event.returncode}; see its output above")
        return Shutdown(reason=f"{name} exited")

    return on_exit


def _nodes(context):
    # Raises SystemArgumentError / PolicyArtifactError / GoalImageError (one line each): the launch
    # logs "Caught exception in launch ...: <line>" and exits 1 before any node has started.
    system.check_launch_configurations(context.launch_configurations)
    arguments = system.resolve_arguments(
        {argument.name: LaunchConfiguration(argument.name).perform(context) for argument in system.LAUNCH_ARGUMENTS}
    )
    system.check_inputs(arguments)
    return [
        Node(
            package=node.package,
            executable=node.executable,
            name=node.name,
            parameters=[*node.parameter_files, node.parameters],
            output="screen",
            emulate_tty=True,
            on_exit=_exit_handler(node.name) if node.required else None,
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
