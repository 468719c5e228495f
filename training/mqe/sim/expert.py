"""Scripted teleoperators for single primitives, as policies: observation -> 7-D Bridge action.

Each reads the privileged world state (object poses, the drawer handle) and moves through waypoints
with clipped steps (<= 3 cm, 0.2 rad per 5 Hz step), Gaussian action noise (1.5 mm, 0.01 rad) and
per-episode varied approach height (6-10 cm above) and grasp or hook height (+-2..4 mm), like a
person with a VR controller. Every primitive ends back at the start pose (mqe.robot.START_POSE)
with the gripper open, where goal images show the arm. Gripper commands are absolute (1 open,
0 closed) and held for a few steps to let the fingers close or open.

- PickPlaceExpert: pick an object, place it on a surface (the plate, the table, the drawer floor).
- OpenDrawerExpert: closed fingers, tipped forward, down between the handle bar and the drawer face; pull.
- CloseDrawerExpert: closed fingers down in front of the handle bar, push it home.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from mqe import robot
from mqe.sim import scene
from mqe.sim.world import World

STEP = 0.03  # m per step toward a waypoint
ROTATION_STEP = 0.2  # rad per step
REACHED = 0.006  # m
# The gripper pointing down (yaw 0: fingers along y): a pad's half size along world x is its z half
# size in the gripper frame; the handle bar's half thickness along x.
PAD_HALF = scene.PAD_HALF_SIZE[2]
BAR_HALF = scene.HANDLE_BAR_HALF_SIZE[0]
HOOK_CLEARANCE = 0.003  # m between the pads and the bar while going down beside it


def _yaw_for(name: str, pose: np.ndarray) -> float:
    """Gripper yaw that puts the fingers across the object (its symmetry folded toward 0)."""
    yaw = 2 * np.arctan2(pose[6], pose[3])
    if name == "cube":
        return float((yaw + np.pi / 4) % (np.pi / 2) - np.pi / 4)
    if name == "carrot":
        return float((yaw + np.pi / 2) % np.pi - np.pi / 2)
    return 0.0


class Waypoint(NamedTuple):
    xyz: tuple | None  # None: stay, only hold the gripper command
    yaw: float
    gripper: float  # 1 open, 0 closed
    hold: int = 0  # steps to wait when xyz is None
    pitch: float = 0.0  # rad, Bridge's pitch; negative tips the fingers forward (+x)


def handle_position(world: World) -> np.ndarray:
    """The drawer handle bar's centre (x, y, z) now (it moves with the drawer)."""
    return world.data.geom_xpos[world.model.geom("handle").id].copy()


class WaypointExpert:
    """Follows the Waypoints of `_plan()`, one clipped noisy step per call. The plan is
    recomputed from the world while the phase is below `follow` (e.g. following the object until it
    is grasped); the last waypoint is the start pose with the gripper open."""

    follow = 2

    def __init__(self, world: World, rng: np.random.Generator):
        self.world, self.rng = world, rng
        self.phase, self.wait = 0, 0
        self._waypoints = self._plan()

    def _plan(self) -> list[Waypoint]:
        raise NotImplementedError

    @property
    def done(self) -> bool:
        return self.phase >= len(self._waypoints)

    def __call__(self, observation: dict) -> np.ndarray:
        state = observation["state"]
        if self.phase < self.follow:
            self._waypoints = self._plan()
        action = np.zeros(7)
        if self.done:
            action[6] = 1.0
            return action
        xyz, yaw, gripper, hold, pitch = self._waypoints[self.phase]
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
        action[3:5] = np.clip(np.array([0.0, pitch]) - state[3:5], -ROTATION_STEP, ROTATION_STEP)
        if np.linalg.norm(error) < REACHED and abs(yaw_error) < 0.05:
            self.phase += 1
        return action


HOME = Waypoint(tuple(robot.START_POSE[:3]), 0.0, 1.0)  # every episode ends where the next begins


class PickPlaceExpert(WaypointExpert):
    """Pick `obj` and place it at `target_xy` on a surface of height `surface_z` (plate, table, drawer)."""

    def __init__(self, world: World, obj: str, target_xy, surface_z: float, rng: np.random.Generator):
        self.obj, self.target_xy, self.surface_z = obj, np.asarray(target_xy, float), surface_z
        self.approach = rng.uniform(0.06, 0.10)
        self.depth = rng.uniform(-0.004, 0.004)
        super().__init__(world, rng)

    def _plan(self):
        pose = self.world.object_poses()[self.obj]
        half = scene.OBJECT_HALF_HEIGHT[self.obj]
        grasp_z = max(pose[2] + (0.008 if self.obj == "mushroom" else 0.0) + self.depth, 0.014)
        place_z = self.surface_z + (grasp_z - pose[2]) + half + 0.01  # object bottom 1 cm above the surface
        carry = max(0.12, self.surface_z + 2 * half + 0.04)
        yaw = _yaw_for(self.obj, pose)
        return [
            Waypoint((pose[0], pose[1], grasp_z + self.approach), yaw, 1.0),
            Waypoint((pose[0], pose[1], grasp_z), yaw, 1.0),
            Waypoint(None, yaw, 0.0, 3),
            Waypoint((pose[0], pose[1], carry), yaw, 0.0),
            Waypoint((*self.target_xy, carry), 0.0, 0.0),
            Waypoint((*self.target_xy, place_z), 0.0, 0.0),
            Waypoint(None, 0.0, 1.0, 3),
            Waypoint((*self.target_xy, carry), 0.0, 1.0),
            HOME,
        ]


class OpenDrawerExpert(WaypointExpert):
    """Hook the closed fingers behind the handle bar (between it and the drawer face) and pull the
    drawer out until it is opened `goal_opening`.

    The gap behind the bar (3 cm) is barely wider than the pads (2 cm), and the palm above them (3.6 cm
    along x) would sit on the cabinet's top edge, flush with the closed drawer's face: going down, the
    fingers tip forward by TILT, which moves the palm 1 cm back, toward the bar (measured ee window:
    about 9 mm instead of 2 mm); pulling, they come upright again."""

    TILT = -0.25  # rad of pitch going down into the gap
    HOOK_BEHIND = 0.019  # m from the bar's centre to the ee: pads ~4 mm clear of the bar, palm of the cabinet
    PRESS = 0.005  # m below the hook height while pulling, or the pads ride up over the bar

    def __init__(self, world: World, goal_opening: float, rng: np.random.Generator):
        self.goal_opening = goal_opening
        self.approach = rng.uniform(0.06, 0.10)
        self.hook_z = scene.HANDLE_HEIGHT + rng.uniform(0.0, 0.006)  # tilted pad tips 0.3-0.9 cm below the bar
        super().__init__(world, rng)

    def _plan(self):
        handle = handle_position(self.world)
        behind = handle[0] + self.HOOK_BEHIND
        # pulling, the upright pads touch the bar's back: the bar is BAR_HALF + PAD_HALF in front of the ee
        pulled = handle[0] - (self.goal_opening - self.world.drawer_opening()) + BAR_HALF + PAD_HALF
        y, above = handle[1], self.hook_z + self.approach
        return [
            Waypoint((behind, y, above), 0.0, 0.0, pitch=self.TILT),
            Waypoint((behind, y, self.hook_z), 0.0, 0.0, pitch=self.TILT),
            Waypoint((pulled, y, self.hook_z - self.PRESS), 0.0, 0.0),
            Waypoint((pulled, y, above), 0.0, 0.0),
            HOME,
        ]


class CloseDrawerExpert(WaypointExpert):
    """Put the closed fingers down in front of the handle bar and push the drawer in, a few mm past
    closed (its stop holds it), then back off."""

    PUSH_PAST = 0.003  # m beyond the closed position: the drawer's stop takes it

    def __init__(self, world: World, rng: np.random.Generator):
        self.approach = rng.uniform(0.06, 0.10)
        self.push_z = scene.HANDLE_HEIGHT + rng.uniform(-0.002, 0.004)
        super().__init__(world, rng)

    def _plan(self):
        handle = handle_position(self.world)
        front = handle[0] - BAR_HALF - HOOK_CLEARANCE - PAD_HALF
        closed = handle[0] + self.world.drawer_opening() - BAR_HALF - PAD_HALF + self.PUSH_PAST
        y, above = handle[1], self.push_z + self.approach
        return [
            Waypoint((front, y, above), 0.0, 0.0),
            Waypoint((front, y, self.push_z), 0.0, 0.0),
            Waypoint((closed, y, self.push_z), 0.0, 0.0),
            Waypoint((closed - 0.03, y, self.push_z), 0.0, 0.0),
            Waypoint((closed - 0.03, y, above), 0.0, 0.0),
            HOME,
        ]
