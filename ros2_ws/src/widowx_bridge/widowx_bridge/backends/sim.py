"""A kinematic WidowX 250: joints jump to the IK solution (no dynamics). Like Interbotix's
set_ee_pose_matrix it refuses solutions outside the joint limits or faster than the joint velocity
limit over the requested moving time (so an IK branch flip is refused, not executed).

It lets the whole closed loop (camera -> policy -> arm) run on a machine without a robot; the sim
camera source renders the scene from this arm's commanded pose."""

from __future__ import annotations

import threading

import numpy as np

from widowx_bridge.backends.base import ArmBackend
from widowx_bridge.kinematics import allows_branch_change, forward_kinematics, get_model, inverse_kinematics


class SimArmBackend(ArmBackend):
    def __init__(self, robot_model: str = "wx250s"):
        self.model = get_model(robot_model)
        self._joints = self.model.sleep_positions.copy()
        self._gripper_open = True
        self.torque_enabled = True
        self._lock = threading.Lock()

    def startup(self) -> None:
        with self._lock:
            self._joints = self.model.sleep_positions.copy()
            self.torque_enabled = True

    def shutdown(self) -> None:
        pass

    def command_ee_pose(self, pose: np.ndarray, moving_time: float) -> bool:
        with self._lock:
            if not self.torque_enabled:
                return False
            joints = inverse_kinematics(self.model, pose, seed=self._joints,
                                        default_guesses=allows_branch_change(self.model, moving_time))
            if joints is None or np.abs(joints - self._joints).max() > self.model.velocity_limit * moving_time:
                return False
            self._joints = joints
            return True

    def set_gripper(self, open_: bool) -> None:
        with self._lock:
            if self.torque_enabled:
                self._gripper_open = bool(open_)

    def home(self, moving_time: float) -> None:
        self._move_joints(np.zeros(self.model.dof))

    def sleep(self, moving_time: float) -> None:
        self._move_joints(self.model.sleep_positions)

    def _move_joints(self, joints: np.ndarray) -> None:
        with self._lock:
            if self.torque_enabled:
                self._joints = np.array(joints, np.float64)

    def torque_off(self) -> None:
        with self._lock:
            self.torque_enabled = False

    def reboot_motors(self) -> None:
        with self._lock:
            self.torque_enabled = True

    def joint_positions(self) -> np.ndarray:
        with self._lock:
            return self._joints.copy()

    @property
    def gripper_open(self) -> bool:
        return self._gripper_open

    def ee_pose(self) -> np.ndarray:
        return forward_kinematics(self.model, self.joint_positions())
