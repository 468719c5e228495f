"""Robot PC bring-up in one command: the Interbotix X-Series driver, then camera + arm bridge + policy.

    ros2 launch launch/robot.launch.py goal:=drawer.png model:=/policies/mqe [robot_model:=wx250]

It takes every argument of `mqe_policy run.launch.py` (they come from mqe_policy.system, the one
description of the system) and passes them on unchanged, plus `use_rviz`. The driver
(`interbotix_xsarm_control xsarm_control.launch.py`) gets the same `robot_model`; with
`use_sim:=true` it is not started, and this is the same as run.launch.py.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription
from launch.conditions import UnlessCondition
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.substitutions import FindPackageShare

from mqe_policy import system


def generate_launch_description():
    driver = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(
            PathJoinSubstitution([FindPackageShare("interbotix_xsarm_control"), "launch", "xsarm_control.launch.py"])
        ),
        launch_arguments={"robot_model": LaunchConfiguration("robot_model"), "use_rviz": LaunchConfiguration("use_rviz")}.items(),
        condition=UnlessCondition(LaunchConfiguration("use_sim")),
    )
    policy_system = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(PathJoinSubstitution([FindPackageShare(system.PACKAGE), "launch", "run.launch.py"])),
        launch_arguments={argument.name: LaunchConfiguration(argument.name) for argument in system.LAUNCH_ARGUMENTS}.items(),
    )
    return LaunchDescription(
        [
            *(
                DeclareLaunchArgument(argument.name, default_value=argument.default, description=argument.description)
                for argument in system.LAUNCH_ARGUMENTS
            ),
            DeclareLaunchArgument("use_rviz", default_value="false", description="start RViz with the Interbotix driver"),
            driver,
            policy_system,
        ]
    )
