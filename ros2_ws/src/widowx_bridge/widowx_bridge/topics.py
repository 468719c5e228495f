"""Topic and service names and the action message convention shared by the camera, the arm bridge
and the policy node. Names are relative so a launch namespace moves the whole system at once.

Camera frames travel as sensor_msgs/Image (rgb8; `image_from_msg` decodes them for every reader).
The action travels as sensor_msgs/JointState: header.stamp is the stamp of the camera frame the
action was computed from, `name` is mqe.contract.ACTION_NAMES and `position` the 7 values in robot
units (m, rad, gripper 1 open .. 0 closed). One message carries all components atomically, and the
type exists unchanged in every ROS 2 distribution from Humble on.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from mqe.contract import ACTION_DIM, ACTION_NAMES

# camera -> policy
CAMERA_IMAGE = "camera/image_raw"  # sensor_msgs/Image, encoding rgb8, sensor-data QoS
CAMERA_STATUS = "camera/status"  # diagnostic_msgs/DiagnosticStatus: source, rate, dropped frames

# policy -> arm
ACTION = "policy/action"  # sensor_msgs/JointState, see module docstring; the arm subscribes
# best-effort with depth 1 (always the newest action, never a backlog), which matches publishers of
# either reliability

# arm -> operator
ARM_COMMANDED_POSE = "arm/commanded_pose"  # geometry_msgs/PoseStamped, base frame
ARM_COMMANDED_GRIPPER = "arm/commanded_gripper"  # std_msgs/Float32, 1.0 open .. 0.0 closed
ARM_JOINT_STATES = "arm/joint_states"  # sensor_msgs/JointState, the arm joints (rad)
ARM_STATUS = "arm/status"  # diagnostic_msgs/DiagnosticStatus: watchdog, IK failures, rejects

# arm services (std_srvs/Trigger)
ARM_HOME = "arm/home"
ARM_SLEEP = "arm/sleep"
ARM_TORQUE_OFF = "arm/torque_off"  # emergency stop: motors go limp
ARM_REBOOT_MOTORS = "arm/reboot_motors"
ARM_RESET = "arm/reset"  # go to the start pose [0.3, 0, 0.15, 0, 0, 0, gripper open]

# simulated tabletop only (widowx_bridge.tabletop), std_srvs/Trigger
SIM_SCORE = "sim/score"  # the scene scored now: JSON {"task", "seed", "points", "max_points", "details", ...}


class ActionMessageError(ValueError):
    pass


def action_from_joint_state(names: Sequence[str], positions: Sequence[float]) -> list[float]:
    """Decode an action message; raise ActionMessageError for wrong names, length or non-finite values."""
    if len(positions) != ACTION_DIM:
        raise ActionMessageError(f"action has {len(positions)} values, expected {ACTION_DIM}")
    if list(names) != list(ACTION_NAMES):
        raise ActionMessageError(f"action names {list(names)} differ from {list(ACTION_NAMES)}")
    values = [float(v) for v in positions]
    if not all(math.isfinite(v) for v in values):
        raise ActionMessageError(f"action has non-finite values {values}")
    return values


def image_from_msg(msg) -> np.ndarray:
    """sensor_msgs/Image (rgb8 or bgr8, any row padding) -> HxWx3 uint8 RGB; ValueError otherwise."""
    if msg.encoding not in ("rgb8", "bgr8"):
        raise ValueError(f"encoding {msg.encoding!r}, expected rgb8 or bgr8")
    height, width, step = msg.height, msg.width, msg.step
    data = np.frombuffer(memoryview(msg.data), np.uint8)
    if height == 0 or width == 0 or step < 3 * width or data.size < height * step:
        raise ValueError(f"{width}x{height} image with step {step} has {data.size} bytes")
    image = data[: height * step].reshape(height, step)[:, : 3 * width].reshape(height, width, 3)
    return np.ascontiguousarray(image[..., ::-1] if msg.encoding == "bgr8" else image)
