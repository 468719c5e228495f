#!/usr/bin/env bash
# Source ROS 2 Humble, the Interbotix workspace and this project's workspace, then run the command.
set -e
source /opt/ros/humble/setup.bash
source /opt/interbotix_ws/install/setup.bash
source /opt/mqe/ros2_ws/install/setup.bash
exec "$@"
