"""Robot constants shared by the real arm, the simulated tabletop, the synthetic renderer and the
benchmarks: defined once here (numpy only, so the robot PC, the sim and the learner all import it).

Frames and conventions are BridgeData V2's (see mqe.contract for the action convention): positions
in metres in the arm's base frame, orientations as (roll, pitch, yaw) with (0, 0, 0) = gripper
pointing straight down.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

# The box the commanded end-effector position is clipped to (m, base frame, x y z).
WORKSPACE_LOW: tuple[float, float, float] = (0.10, -0.15, -0.10)
WORKSPACE_HIGH: tuple[float, float, float] = (0.45, 0.25, 0.18)

# Where `arm/reset` puts the arm before a trial: x y z (m), roll pitch yaw (rad); gripper 1 = open.
START_POSE: tuple[float, float, float, float, float, float] = (0.3, 0.0, 0.15, 0.0, 0.0, 0.0)
START_GRIPPER: float = 1.0

# Per-step clip of the policy's deltas (one 5 Hz step).
MAX_TRANSLATION_STEP: float = 0.05  # m, per component of dx, dy, dz
MAX_ROTATION_STEP: float = 0.25  # rad, per component of droll, dpitch, dyaw

# Bridge's DEFAULT_ROTATION: the ee_gripper_link orientation that the state calls (0, 0, 0).
NEUTRAL_ROTATION = np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 0.0]])
NEUTRAL_ROTATION.setflags(write=False)


# The Bridge state's orientation convention, shared by the arm controller and the simulated tabletop.
def rotation_from_rpy(roll: float, pitch: float, yaw: float) -> np.ndarray:
    """R = Rz(yaw) @ Ry(pitch) @ Rx(roll)."""
    cr, sr, cp, sp, cy, sy = math.cos(roll), math.sin(roll), math.cos(pitch), math.sin(pitch), math.cos(yaw), math.sin(yaw)
    return np.array([[cy * cp, cy * sp * sr - sy * cr, cy * sp * cr + sy * sr],
                     [sy * cp, sy * sp * sr + cy * cr, sy * sp * cr - cy * sr],
                     [-sp, cp * sr, cp * cr]])


def rpy_from_rotation(rotation: np.ndarray) -> tuple[float, float, float]:
    """Inverse of rotation_from_rpy, pitch in [-pi/2, pi/2]."""
    pitch = math.asin(float(np.clip(-rotation[2, 0], -1.0, 1.0)))
    roll = math.atan2(rotation[2, 1], rotation[2, 2])
    yaw = math.atan2(rotation[1, 0], rotation[0, 0])
    return roll, pitch, yaw


def pose_from_state(state: Sequence[float]) -> np.ndarray:
    """Bridge state (x, y, z, roll, pitch, yaw) -> 4x4 ee_gripper_link pose in the base frame."""
    pose = np.eye(4)
    pose[:3, :3] = rotation_from_rpy(*state[3:6]) @ NEUTRAL_ROTATION
    pose[:3, 3] = state[:3]
    return pose


def state_from_pose(pose: np.ndarray) -> np.ndarray:
    """4x4 ee_gripper_link pose -> Bridge state (x, y, z, roll, pitch, yaw)."""
    return np.concatenate([pose[:3, 3], rpy_from_rotation(pose[:3, :3] @ NEUTRAL_ROTATION.T)])
