"""The WidowX 250s in the simulated Bridge tabletop (mqe.sim.World), behind the real arm's interface.

Like the Interbotix backend, a pose is solved with the real arm's IK (widowx_bridge.kinematics,
seeded with the current joint commands; Interbotix's default guesses only for slow moves) and a
solution that would exceed the joint velocity limit over moving_time is refused, not executed. The
joints then move to it over moving_time (mqe.sim.World.command_joints). The gripper is
position-controlled, open = 1, closed = 0.

Physics is advanced by the owner of the world (the episode runner steps it between actions); the
backend never steps it, so one world can serve the arm and a camera.
"""

from __future__ import annotations

import numpy as np

from mqe.sim import World

from widowx_bridge.backends.base import ArmBackend
from widowx_bridge.kinematics import allows_branch_change, get_model, inverse_kinematics


class MujocoArmBackend(ArmBackend):
    def __init__(self, world: World, robot_model: str = "wx250s"):
        self.model = get_model(robot_model)
        if self.model.dof != 6:
            raise ValueError(f"robot_model: the MuJoCo tabletop has a wx250s (6-DOF), not {robot_model!r}")
        self.world = world
        self.torque_enabled = True

    def startup(self) -> None:
        self.torque_enabled = True

    def shutdown(self) -> None:
        pass

    def command_ee_pose(self, pose: np.ndarray, moving_time: float) -> bool:
        with self.world.lock:
            if not self.torque_enabled:
                return False
            current = self.world.joint_targets()
            joints = inverse_kinematics(self.model, pose, seed=current,
                                        default_guesses=allows_branch_change(self.model, moving_time))
            if joints is None or np.abs(joints - current).max() > self.model.velocity_limit * moving_time:
                return False
            self.world.command_joints(joints, moving_time)
            return True

    def set_gripper(self, open_: bool) -> None:
        with self.world.lock:
            if self.torque_enabled:
                self.world.command_gripper(1.0 if open_ else 0.0)

    def home(self, moving_time: float) -> None:
        self._move_joints(np.zeros(self.model.dof), moving_time)

    def sleep(self, moving_time: float) -> None:
        self._move_joints(self.model.sleep_positions, moving_time)

    def _move_joints(self, joints: np.ndarray, moving_time: float) -> None:
        with self.world.lock:
            if self.torque_enabled:
                self.world.command_joints(joints, moving_time)

    def torque_off(self) -> None:
        with self.world.lock:
            self.torque_enabled = False
            self.world.hold()

    def reboot_motors(self) -> None:
        with self.world.lock:
            self.torque_enabled = True

    def joint_positions(self) -> np.ndarray:
        with self.world.lock:
            return self.world.joint_positions()
