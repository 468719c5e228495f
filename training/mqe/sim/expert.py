"""A scripted teleoperator for single primitives, as a policy: observation -> 7-D Bridge action.

It reads the privileged world state (object poses) and moves through waypoints with clipped steps
(<= 3 cm, 0.2 rad per 5 Hz step), Gaussian action noise (1.5 mm, 0.01 rad) and per-episode
varied approach height (6-10 cm above) and grasp depth (+-4 mm), like a person with a VR
controller. It ends back at the start pose (mqe.robot.START_POSE), where goal images show the arm. Gripper commands are absolute (1 open, 0 closed) and held for a few steps to let the
fingers close or open.
"""

from __future__ import annotations

import numpy as np

from mqe import robot
from mqe.sim import scene
from mqe.sim.world import World

STEP = 0.03  # m per step toward a waypoint
ROTATION_STEP = 0.2  # rad per step
REACHED = 0.006  # m
PHASES = 9  # waypoints of PickPlaceExpert._plan


def _yaw_for(name: str, pose: np.ndarray) -> float:
    """Gripper yaw that puts the fingers across the object (its symmetry folded toward 0)."""
    yaw = 2 * np.arctan2(pose[6], pose[3])
    if name == "cube":
        return float((yaw + np.pi / 4) % (np.pi / 2) - np.pi / 4)
    if name == "carrot":
        return float((yaw + np.pi / 2) % np.pi - np.pi / 2)
    return 0.0


class PickPlaceExpert:
    """Pick `obj` and place it at `target_xy` on a surface of height `surface_z` (plate, table, drawer)."""

    def __init__(self, world: World, obj: str, target_xy, surface_z: float, rng: np.random.Generator):
        self.world, self.obj, self.rng = world, obj, rng
        self.target_xy, self.surface_z = np.asarray(target_xy, float), surface_z
        self.approach = rng.uniform(0.06, 0.10)
        self.depth = rng.uniform(-0.004, 0.004)
        self.phase, self.wait = 0, 0

    def _plan(self):
        pose = self.world.object_poses()[self.obj]
        half = scene.OBJECT_HALF_HEIGHT[self.obj]
        grasp_z = max(pose[2] + (0.008 if self.obj == "mushroom" else 0.0) + self.depth, 0.014)
        place_z = self.surface_z + (grasp_z - pose[2]) + half + 0.01  # object bottom 1 cm above the surface
        carry = max(0.12, self.surface_z + 2 * half + 0.04)
        yaw = _yaw_for(self.obj, pose)
        return [  # (xyz, yaw, gripper, hold steps)
            ((pose[0], pose[1], grasp_z + self.approach), yaw, 1.0, 0),
            ((pose[0], pose[1], grasp_z), yaw, 1.0, 0),
            (None, yaw, 0.0, 3),
            ((pose[0], pose[1], carry), yaw, 0.0, 0),
            ((*self.target_xy, carry), 0.0, 0.0, 0),
            ((*self.target_xy, place_z), 0.0, 0.0, 0),
            (None, 0.0, 1.0, 3),
            ((*self.target_xy, carry), 0.0, 1.0, 0),
            # back to the start pose: every episode ends where the next begins and where goal images show the arm
            (tuple(robot.START_POSE[:3]), 0.0, 1.0, 0),
        ]

    @property
    def done(self) -> bool:
        return self.phase >= PHASES

    def __call__(self, observation: dict) -> np.ndarray:
        state = observation["state"]
        if self.phase == 0 or self.phase == 1:
            self._waypoints = self._plan()  # follow the object until it is grasped
        action = np.zeros(7)
        if self.done:
            action[6] = 1.0
            return action
        xyz, yaw, gripper, hold = self._waypoints[self.phase]
        action[6] = gripper
        if xyz is None:
            self.wait += 1
            if self.wait >= hold:
                self.phase, self.wait = self.phase + 1, 0
            return action
        error = np.asarray(xyz) - state[:3]
        yaw_error = (yaw - state[5] + np.pi) % (2 * np.pi) - np.pi
        action[:3] = np.clip(error, -STEP, STEP) + self.rng.normal(0, 0.0015, 3)
        action[5] = np.clip(yaw_error, -ROTATION_STEP, ROTATION_STEP) + self.rng.normal(0, 0.01)
        action[3:5] = np.clip(-state[3:5], -ROTATION_STEP, ROTATION_STEP)
        if np.linalg.norm(error) < REACHED and abs(yaw_error) < 0.05:
            self.phase += 1
        return action
