"""Kinematic models of the Interbotix WidowX 250 arms, forward and inverse kinematics.

The screw axes (Slist) and home configurations (M) are Interbotix's published modern-robotics
descriptions (interbotix_xs_modules/xs_robot/mr_descriptions.py): the space frame is
`<robot>/base_link`, the end-effector frame `<robot>/ee_gripper_link`. Joint limits are the
Interbotix motor-config limits (interbotix_xsarm_control/config/<model>.yaml, ticks -> rad).

The 5-DOF wx250 has no forearm roll, so it can only point its gripper inside the vertical plane
that contains the base z axis and the gripper position. `reachable_pose` projects any target onto
that set: the position is kept exactly, the approach axis (the gripper's x axis) is replaced by
its nearest direction in that plane (the smallest rotation that gets it there) and the rotation
about the approach axis is kept. The 6-DOF wx250s reaches every orientation in its workspace.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import modern_robotics as mr
import numpy as np


@dataclasses.dataclass(frozen=True)
class ArmModel:
    name: str
    joint_names: tuple[str, ...]
    screw_axes: np.ndarray  # 6 x n, columns are the joint screw axes in the space frame at home
    home_ee_pose: np.ndarray  # 4 x 4, end-effector pose with all joints at 0
    lower_limits: np.ndarray  # rad
    upper_limits: np.ndarray  # rad
    sleep_positions: np.ndarray  # rad, Interbotix's folded rest pose
    velocity_limit: float  # rad/s, every joint (motor-config Velocity_Limit 131 x 0.229 rpm)
    effort_limits: np.ndarray  # per joint, in xs_sdk joint_states effort units (mA); see _EFFORT_LIMIT

    @property
    def dof(self) -> int:
        return len(self.joint_names)


def _ticks_to_rad(ticks: float) -> float:
    """Dynamixel position ticks (4096 per turn, 2048 = 0 rad) to radians."""
    return (ticks - 2048) * 2 * math.pi / 4096


_WAIST = (-math.pi, math.pi)
_SHOULDER = (_ticks_to_rad(819), _ticks_to_rad(3345))  # -108 .. 114 deg
_ELBOW = (_ticks_to_rad(648), _ticks_to_rad(3094))  # -123 .. 92 deg
_WRIST_ANGLE = (_ticks_to_rad(910), _ticks_to_rad(3447))  # -100 .. 123 deg
_ROLL = (-math.pi, math.pi)
_VELOCITY_LIMIT = 131 * 0.229 * 2 * math.pi / 60  # ~3.14 rad/s

# bridge_data_robot's effort guard (widowx_envs/widowx_controller/src/widowx_controller/
# widowx_controller.py: ABS_MAX_JOINT_EFFORTS = [800, 1000, 600, 600, 600, 700] * 1.7, "experimental
# values", a step fails when |effort| - limit > 10), per wx250s joint; the 5-DOF wx250 has the same
# motors less the forearm roll.
_EFFORT_LIMIT = {name: 1.7 * value + 10.0 for name, value in zip(
    ("waist", "shoulder", "elbow", "forearm_roll", "wrist_angle", "wrist_rotate"), (800, 1000, 600, 600, 600, 700))}

_HOME_EE_POSE = np.array([[1.0, 0.0, 0.0, 0.458325],
                          [0.0, 1.0, 0.0, 0.0],
                          [0.0, 0.0, 1.0, 0.36065],
                          [0.0, 0.0, 0.0, 1.0]])

MODELS: dict[str, ArmModel] = {
    "wx250s": ArmModel(
        name="wx250s",
        joint_names=("waist", "shoulder", "elbow", "forearm_roll", "wrist_angle", "wrist_rotate"),
        screw_axes=np.array([[0.0, 0.0, 1.0, 0.0, 0.0, 0.0],
                             [0.0, 1.0, 0.0, -0.11065, 0.0, 0.0],
                             [0.0, 1.0, 0.0, -0.36065, 0.0, 0.04975],
                             [1.0, 0.0, 0.0, 0.0, 0.36065, 0.0],
                             [0.0, 1.0, 0.0, -0.36065, 0.0, 0.29975],
                             [1.0, 0.0, 0.0, 0.0, 0.36065, 0.0]]).T,
        home_ee_pose=_HOME_EE_POSE,
        lower_limits=np.array([_WAIST[0], _SHOULDER[0], _ELBOW[0], _ROLL[0], _WRIST_ANGLE[0], _ROLL[0]]),
        upper_limits=np.array([_WAIST[1], _SHOULDER[1], _ELBOW[1], _ROLL[1], _WRIST_ANGLE[1], _ROLL[1]]),
        sleep_positions=np.array([0.0, -1.80, 1.55, 0.0, 0.8, 0.0]),
        velocity_limit=_VELOCITY_LIMIT,
        effort_limits=np.array([_EFFORT_LIMIT[name] for name in
                                ("waist", "shoulder", "elbow", "forearm_roll", "wrist_angle", "wrist_rotate")]),
    ),
    "wx250": ArmModel(
        name="wx250",
        joint_names=("waist", "shoulder", "elbow", "wrist_angle", "wrist_rotate"),
        screw_axes=np.array([[0.0, 0.0, 1.0, 0.0, 0.0, 0.0],
                             [0.0, 1.0, 0.0, -0.11065, 0.0, 0.0],
                             [0.0, 1.0, 0.0, -0.36065, 0.0, 0.04975],
                             [0.0, 1.0, 0.0, -0.36065, 0.0, 0.29975],
                             [1.0, 0.0, 0.0, 0.0, 0.36065, 0.0]]).T,
        home_ee_pose=_HOME_EE_POSE,
        lower_limits=np.array([_WAIST[0], _SHOULDER[0], _ELBOW[0], _WRIST_ANGLE[0], _ROLL[0]]),
        upper_limits=np.array([_WAIST[1], _SHOULDER[1], _ELBOW[1], _WRIST_ANGLE[1], _ROLL[1]]),
        sleep_positions=np.array([0.0, -1.80, 1.55, 0.8, 0.0]),
        velocity_limit=_VELOCITY_LIMIT,
        effort_limits=np.array([_EFFORT_LIMIT[name] for name in
                                ("waist", "shoulder", "elbow", "wrist_angle", "wrist_rotate")]),
    ),
}


def get_model(name: str) -> ArmModel:
    if name not in MODELS:
        raise ValueError(f"robot_model: unknown arm {name!r}, expected one of {sorted(MODELS)}")
    return MODELS[name]


def forward_kinematics(model: ArmModel, joints: np.ndarray) -> np.ndarray:
    """End-effector pose (4x4, base frame) for joint positions in rad."""
    return mr.FKinSpace(model.home_ee_pose, model.screw_axes, np.asarray(joints, np.float64))


def within_limits(model: ArmModel, joints: np.ndarray, tolerance: float = 1e-9) -> bool:
    joints = np.asarray(joints)
    return bool(np.all(joints >= model.lower_limits - tolerance) and np.all(joints <= model.upper_limits + tolerance))


def _wrap_into_limits(model: ArmModel, joints: np.ndarray) -> np.ndarray:
    """Wrap angles to [-pi, pi) and, where that leaves a joint outside its limits, by one turn more."""
    wrapped = (np.asarray(joints, np.float64) + np.pi) % (2 * np.pi) - np.pi
    wrapped = np.where(wrapped < model.lower_limits, wrapped + 2 * np.pi, wrapped)
    return np.where(wrapped > model.upper_limits, wrapped - 2 * np.pi, wrapped)


def _initial_guesses(model: ArmModel, seed: np.ndarray | None, default_guesses: bool) -> list[np.ndarray]:
    """The caller's seed (normally the current joints) first, then Interbotix's default guesses."""
    guesses = [] if seed is None else [np.asarray(seed, np.float64)]
    if default_guesses or seed is None:
        for waist in (0.0, math.radians(-120), math.radians(120)):
            guess = np.zeros(model.dof)
            guess[0] = waist
            guesses.append(guess)
    return guesses


@functools.lru_cache(maxsize=None)
def _reach(model_name: str) -> tuple[np.ndarray, float, float]:
    """(shoulder pivot, longest shoulder-to-wrist distance, wrist-to-gripper offset), all read off
    the screw axes: the pitch joints (axis +y) pass through q = (v_z, 0, -v_x)."""
    model = MODELS[model_name]
    pivots = [np.array([axis[5], 0.0, -axis[3]]) for axis in model.screw_axes.T if np.allclose(axis[:3], [0, 1, 0])]
    shoulder, elbow, wrist = pivots
    longest = float(np.linalg.norm(elbow - shoulder) + np.linalg.norm(wrist - elbow))
    return shoulder, longest, float(model.home_ee_pose[0, 3] - wrist[0])


def inverse_kinematics(model: ArmModel, pose: np.ndarray, seed: np.ndarray | None = None,
                       default_guesses: bool = True, position_tolerance: float = 1e-3,
                       orientation_tolerance: float = 1e-3) -> np.ndarray | None:
    """Joint positions reaching `pose` within the tolerances and the joint limits, or None.

    Tries modern-robotics' IKinSpace from `seed` and, if `default_guesses` (or without a seed),
    from Interbotix's default guesses. Wrist positions beyond the arm's reach fail at once."""
    pose = np.asarray(pose, np.float64)
    if pose.shape != (4, 4) or not np.all(np.isfinite(pose)):
        return None
    shoulder, longest, tool_offset = _reach(model.name)
    wrist = pose[:3, 3] - tool_offset * pose[:3, 0]
    if np.linalg.norm(wrist - shoulder) > longest + position_tolerance:
        return None
    for guess in _initial_guesses(model, seed, default_guesses):
        joints, converged = mr.IKinSpace(model.screw_axes, model.home_ee_pose, pose, guess,
                                         orientation_tolerance, position_tolerance)
        if not converged:
            continue
        joints = _wrap_into_limits(model, joints)
        if within_limits(model, joints):
            return joints
    return None


def allows_branch_change(model: ArmModel, moving_time: float) -> bool:
    """Whether a move of `moving_time` s may swing a joint by half a turn within the velocity
    limit. Only such slow moves (reset, home) try IK's default guesses: for a 0.2 s control step a
    solution away from the current joints would be refused anyway, and each failed guess costs ~10 ms."""
    return model.velocity_limit * moving_time >= math.pi


def reachable_pose(model: ArmModel, pose: np.ndarray) -> np.ndarray:
    """The pose the arm will be asked for instead of `pose` (see the module docstring)."""
    pose = np.array(pose, np.float64)
    if model.dof >= 6:
        return pose
    x, y = pose[0, 3], pose[1, 3]
    bearing = math.atan2(y, x) if math.hypot(x, y) > 1e-9 else 0.0
    radial = np.array([math.cos(bearing), math.sin(bearing), 0.0])
    vertical = np.array([0.0, 0.0, 1.0])
    approach = pose[:3, 0]
    in_plane = approach @ radial * radial + approach @ vertical * vertical
    if np.linalg.norm(in_plane) < 1e-9:  # approach is horizontal and sideways: point it outwards
        in_plane = radial
    in_plane /= np.linalg.norm(in_plane)
    axis = np.cross(approach, in_plane)
    sin_angle, cos_angle = np.linalg.norm(axis), float(np.clip(approach @ in_plane, -1.0, 1.0))
    if sin_angle > 1e-12:
        correction = mr.MatrixExp3(mr.VecToso3(axis / sin_angle * math.atan2(sin_angle, cos_angle)))
        pose[:3, :3] = correction @ pose[:3, :3]
    return pose
