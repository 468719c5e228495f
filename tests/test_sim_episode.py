"""The ROS-free episode runner: actions go through the real ArmController onto the MuJoCo arm."""

import os

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np

from mqe import sim
from widowx_bridge.control import state_from_pose
from widowx_bridge.sim_episode import run_episode

from sim_subprocess import run_in_fresh_process


def _reach_and_release(observation):
    """A fixed script: down 4 cm in two steps, close, then right 3 cm/step, then open."""
    _reach_and_release.t = getattr(_reach_and_release, "t", 0) + 1
    t = _reach_and_release.t
    action = np.zeros(7)
    action[6] = 1.0
    if t <= 2:
        action[2] = -0.02
    elif t <= 6:
        action[1] = 0.03
        action[6] = 0.0
    return action


def test_episode_moves_the_arm_through_arm_controller_and_is_deterministic():
    run_in_fresh_process(_episode_moves_the_arm_through_arm_controller_and_is_deterministic)


def _episode_moves_the_arm_through_arm_controller_and_is_deterministic():
    world = sim.World()
    results = []
    for _ in range(2):
        _reach_and_release.t = 0
        result = run_episode("single_pnp", 4, _reach_and_release, steps=8, image_size=64, world=world)
        results.append((result, world.ee_pose(), world.object_poses()))
    (first, ee_a, objects_a), (second, ee_b, objects_b) = results
    assert first.statuses == {"applied": 8}
    assert first.points == second.points == 0 and first.max_points == 1
    np.testing.assert_array_equal(ee_a, ee_b)
    for name in objects_a:
        np.testing.assert_array_equal(objects_a[name], objects_b[name])
    # the commanded path: start (0.3, 0, 0.15) -> down 4 cm -> +y 12 cm; the measured ee is there
    state = state_from_pose(ee_a)
    np.testing.assert_allclose(state[:3], [0.3, 0.12, 0.11], atol=3e-3)
    assert first.details["gripper_open"] is True


def test_bad_actions_never_move_the_arm():
    run_in_fresh_process(_bad_actions_never_move_the_arm)


def _bad_actions_never_move_the_arm():
    world = sim.World()

    def nan_policy(observation):
        assert observation["image"].shape == (32, 32, 3) and observation["goal_image"].shape == (32, 32, 3)
        return np.full(7, np.nan)

    result = run_episode("open_drawer", 0, nan_policy, steps=3, image_size=32, world=world)
    assert result.statuses == {"rejected": 3}
    np.testing.assert_allclose(state_from_pose(world.ee_pose())[:3], [0.3, 0.0, 0.15], atol=2e-3)


def test_scripted_pick_and_place_expert_scores_through_the_runner():
    run_in_fresh_process(_scripted_pick_and_place_expert_scores_through_the_runner)


def _scripted_pick_and_place_expert_scores_through_the_runner():
    """The teleoperator-like expert (mqe.sim.expert) places the task's object on the plate, through
    ArmController, for most seeds; the runner's score counts it only after release."""
    from mqe.sim import scene
    from mqe.sim.expert import PickPlaceExpert

    world = sim.World()
    points = 0
    for seed in (0, 1, 2):
        task = sim.make_task("single_pnp", seed, world)
        expert = {}

        def policy(observation, seed=seed, task=task, expert=expert):
            if "e" not in expert:
                expert["e"] = PickPlaceExpert(world, task.targets[0].object, task.start.plate_xy, scene.PLATE_TOP,
                                              np.random.default_rng(seed))
            return expert["e"](observation)

        result = run_episode("single_pnp", seed, policy, steps=40, image_size=32, world=world)
        assert result.statuses.get("ik_failure", 0) == 0
        points += result.points
    assert points >= 2
