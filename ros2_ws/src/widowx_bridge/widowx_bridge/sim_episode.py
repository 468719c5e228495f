"""Run one scored episode of an mqe.sim task without ROS, through the real arm's ArmController.

    result = run_episode("double_pnp", seed=3, policy=my_policy, steps=60)

Each 5 Hz step: render the over-the-shoulder camera, ask `policy(observation)` for a 7-D Bridge
action, apply it with control.ArmController (clip, integrate on the last commanded pose, workspace
box, IK - exactly the real arm's path) on a MujocoArmBackend, then advance physics by one control
period. The score is mqe.sim.score of the world after the last step. Deterministic given the seed
and a deterministic policy.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

from mqe import sim

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


def observation(world: sim.World, goal_image: np.ndarray, image_size: int, gripper_open: bool) -> dict:
    """What a policy sees: the camera frame and the goal image at image_size, and the Bridge state."""
    state = np.concatenate([state_from_pose(world.ee_pose()), [1.0 if gripper_open else 0.0]])
    return {"image": world.render(image_size, image_size), "goal_image": goal_image, "state": state.astype(np.float32)}


def run_episode(task_name: str, seed: int, policy: Callable[[dict], np.ndarray], steps: int = 60,
                image_size: int = 256, world: sim.World | None = None,
                config: ControlConfig = ControlConfig()) -> EpisodeResult:
    world = world or sim.World()
    task = sim.make_task(task_name, seed, world)
    goal_image = sim.render_goal_image(task, world, image_size, image_size)
    world.reset(task.start)
    controller = ArmController(MujocoArmBackend(world), config)
    period = config.step_moving_time
    statuses: dict[str, int] = {}
    for _ in range(steps):
        action = policy(observation(world, goal_image, image_size, controller.gripper_open))
        status = controller.apply_action(action, world.time).status
        statuses[status] = statuses.get(status, 0) + 1
        world.step(period)
    points, max_points, details = sim.score(world, task)
    return EpisodeResult(task_name, seed, points, max_points, details, steps, statuses)
