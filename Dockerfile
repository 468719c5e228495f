# Robot PC image: ROS 2 Humble + Interbotix X-Series arm stack + RealSense + this project's ROS packages
# and the torch-free policy runtime. Build on the robot PC (it downloads Interbotix's installer):
#   docker build -t mqe-robot .
#   docker run --rm -it --net=host --privileged -v /dev:/dev -v $PWD/policies:/policies mqe-robot \
#     ros2 launch /opt/mqe/launch/robot.launch.py goal:=drawer.png model:=/policies/mqe
FROM ros:humble-ros-base-jammy

SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV DEBIAN_FRONTEND=noninteractive \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# sudo/curl for Interbotix's installer; libusb for pyrealsense2; colcon for our workspace.
RUN apt-get update && apt-get install -y --no-install-recommends \
        sudo curl ca-certificates git python3-pip python3-colcon-common-extensions \
        libusb-1.0-0 ros-humble-diagnostic-msgs ros-humble-std-srvs \
    && rm -rf /var/lib/apt/lists/*

# Interbotix X-Series arm packages, installed the supported way (non-interactive, Humble).
ARG INTERBOTIX_INSTALLER=https://raw.githubusercontent.com/Interbotix/interbotix_ros_manipulators/humble/interbotix_ros_xsarms/install/amd64/xsarm_amd64_install.sh
WORKDIR /opt
RUN curl -fsSL "${INTERBOTIX_INSTALLER}" -o xsarm_amd64_install.sh \
    && chmod +x xsarm_amd64_install.sh \
    && ./xsarm_amd64_install.sh -d humble -n -p /opt/interbotix_ws \
    && rm -rf xsarm_amd64_install.sh /var/lib/apt/lists/*

# The policy runtime (numpy, OpenCV, onnxruntime; no torch) and the camera/sim extras.
COPY docker/requirements-robot.txt /opt/mqe/requirements-robot.txt
COPY training /opt/mqe/training
RUN python3 -m pip install -r /opt/mqe/requirements-robot.txt /opt/mqe/training

COPY ros2_ws/src /opt/mqe/ros2_ws/src
COPY goal_images /opt/mqe/goal_images
COPY launch /opt/mqe/launch
WORKDIR /opt/mqe/ros2_ws
RUN . /opt/ros/humble/setup.bash \
    && . /opt/interbotix_ws/install/setup.bash \
    && colcon build --packages-select widowx_bridge mqe_policy

ENV MQE_GOAL_DIR=/opt/mqe/goal_images
COPY docker/entrypoint.sh /entrypoint.sh
ENTRYPOINT ["/entrypoint.sh"]
CMD ["bash"]
