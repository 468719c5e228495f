"""Run one scored episode of an mqe.sim task without ROS, through the real arm's ArmController.

    result = run_episode("double_pnp", seed=3, policy=my_policy, steps=60)

Each 5 Hz step: render the over-the-shoulder camera, ask `policy(observation)` for a 7-D Bridge
action, apply it with control.ArmController (clip, integrate on the last commanded pose, workspace
box, IK - exactly the real arm's path) on a MujocoArmBackend, then advance physics by one control
period (0.2 s). The score is mqe.sim.score of the world after the last step. Deterministic given the seed
and a deterministic policy.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

from mqe import sim
from mqe.contract import DEFAULT_CONTROL_RATE_HZ

from widowx_bridge.backends.mujoco import MujocoArmBackend
from widowx_bridge.control import ArmController, ControlConfig, state_from_pose


@dataclasses.dataclass
class EpisodeResult:
    task: str
    seed: int
    points: int
    max_points: int
    details: dict
    steps: int
    statuses: dict  # ArmController step status -> count

    def as_dict(self) -> dict:
        return {"task": self.task, "seed": self.seed, "points": self.points, "max_points": self.max_points,
                "details": self.details}


# Physics time between two actions: the policy's period at the Bridge control rate. The ROS tabletop's
# lockstep clock advances the same amount per action, so both give the same episode.
CONTROL_PERIOD = 1.0 / DEFAULT_CONTROL_RATE_HZ
# Statuses after which the controller has taken its step (the arm may have moved): physics advances.
STEPPED_STATUSES = ("applied", "ik_failure", "rejected")


def observation(world: sim.World, goal_image: np.ndarray | None, frame_size: tuple[int, int] | None,
                gripper_open: bool) -> dict:
    """What a policy sees: the camera frame (width, height) and the goal image, and the Bridge state.
    frame_size None: no camera (state-based policies), no "image" / "goal_image"."""
    state = np.concatenate([state_from_pose(world.ee_pose()), [1.0 if gripper_open else 0.0]])
    if frame_size is None:
        return {"state": state.astype(np.float32)}
    return {"image": world.render(*frame_size), "goal_image": goal_image, "state": state.astype(np.float32)}


def run_episode(task_name: str, seed: int, policy: Callable[[dict], np.ndarray], steps: int = 60,
                image_size: int = 256, world: sim.World | None = None,
                config: ControlConfig = ControlConfig(), frame_size: tuple[int, int] | None = None,
                render: bool = True) -> EpisodeResult:
    """`frame_size` (width, height) renders camera and goal at that size instead of image_size squared;
    render=False renders nothing (a state-based policy: software rendering is most of a step's cost)."""
    world = world or sim.World()
    frame_size = (frame_size or (image_size, image_size)) if render else None
    task = sim.make_task(task_name, seed, world)
    goal_image = sim.render_goal_image(task, world, *frame_size) if render else None
    world.reset(task.start)
    controller = ArmController(MujocoArmBackend(world), config)
    statuses: dict[str, int] = {}
    for _ in range(steps):
        action = policy(observation(world, goal_image, frame_size, controller.gripper_open))
        status = controller.apply_action(action, world.time).status
        statuses[status] = statuses.get(status, 0) + 1
        if status in STEPPED_STATUSES:
            world.step(CONTROL_PERIOD)
    points, max_points, details = sim.score(world, task)
    return EpisodeResult(task_name, seed, points, max_points, details, steps, statuses)
