"""Robot PC bring-up in one command: the Interbotix X-Series driver, then camera + arm bridge + policy.

    ros2 launch launch/robot.launch.py goal:=drawer.png model:=/policies/mqe [robot_model:=wx250]

It takes every argument of `mqe_policy run.launch.py` (they come from mqe_policy.system, the one
description of the system) and passes them on unchanged, plus `use_rviz`. The driver
(`interbotix_xsarm_control xsarm_control.launch.py`) gets the same `robot_model`; with
`use_sim:=true` it is not started, and this is the same as run.launch.py. An unknown argument name
stops the launch before the driver starts, with one line and exit status 1.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, GroupAction, IncludeLaunchDescription, OpaqueFunction
from launch.conditions import UnlessCondition
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.substitutions import FindPackageShare

from mqe_policy import system

ROBOT_ARGUMENTS = ("use_rviz",)  # this file's own, beside the system's


def _check_arguments(context):
    system.check_launch_configurations(context.launch_configurations, system.ARGUMENT_NAMES + ROBOT_ARGUMENTS)


def generate_launch_description():
    driver = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(
            PathJoinSubstitution([FindPackageShare("interbotix_xsarm_control"), "launch", "xsarm_control.launch.py"])
        ),
        launch_arguments={"robot_model": LaunchConfiguration("robot_model"), "use_rviz": LaunchConfiguration("use_rviz")}.items(),
        condition=UnlessCondition(LaunchConfiguration("use_sim")),
    )
    # Humble's includes share one scope, so run.launch.py would also see use_rviz and every argument
    # the driver declares, and refuse them as unknown. A group without forwarding starts from an empty
    # scope holding only the configurations given (launch/actions/group_action.py, humble: scoped=True,
    # forwarding=False -> ResetLaunchConfigurations(launch_configurations)): exactly the system's.
    policy_system = GroupAction(
        [IncludeLaunchDescription(PythonLaunchDescriptionSource(PathJoinSubstitution([FindPackageShare(system.PACKAGE), "launch", "run.launch.py"])))],
        scoped=True,
        forwarding=False,
        launch_configurations={argument.name: LaunchConfiguration(argument.name) for argument in system.LAUNCH_ARGUMENTS},
    )
    return LaunchDescription(
        [
            *(
                DeclareLaunchArgument(argument.name, default_value=argument.default, description=argument.description)
                for argument in system.LAUNCH_ARGUMENTS
            ),
            DeclareLaunchArgument("use_rviz", default_value="false", description="start RViz with the Interbotix driver"),
            OpaqueFunction(function=_check_arguments),
            driver,
            policy_system,
        ]
    )
