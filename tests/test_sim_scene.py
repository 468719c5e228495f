"""The simulated Bridge tabletop (mqe.sim): kinematics, determinism, rendering and the scorer."""

import os

os.environ.setdefault("MUJOCO_GL", "egl")

import mujoco
import numpy as np
import pytest

from mqe import sim
from mqe.sim import scene
from widowx_bridge.kinematics import forward_kinematics, get_model

from sim_subprocess import run_in_fresh_process


@pytest.fixture(scope="module")
def world():
    w = sim.World()
    yield w
    w.close()


def test_forward_kinematics_agrees_with_widowx_bridge(world):
    """MuJoCo's ee_gripper site vs the Interbotix product of exponentials, random joints (<= 1 mm)."""
    model = get_model("wx250s")
    rng = np.random.default_rng(0)
    world.reset(sim.make_task("single_pnp", 0, world).start)
    for _ in range(50):
        joints = rng.uniform(model.lower_limits, model.upper_limits)
        world.data.qpos[world._arm_qpos] = joints
        mujoco.mj_kinematics(world.model, world.data)
        expected = forward_kinematics(model, joints)
        measured = world.ee_pose()
        assert np.abs(measured[:3, 3] - expected[:3, 3]).max() <= 1e-3
        assert np.abs(measured[:3, :3] - expected[:3, :3]).max() <= 1e-3


def test_tasks_are_deterministic_given_the_seed(world):
    for name in sim.TASKS:
        a, b = sim.make_task(name, 5, world), sim.make_task(name, 5, world)
        assert a.max_points == len(a.targets) >= 1 and a.rubric and a.instruction
        for obj in scene.OBJECTS:
            np.testing.assert_array_equal(a.start.objects[obj], b.start.objects[obj])
            np.testing.assert_array_equal(a.goal.objects[obj], b.goal.objects[obj])
    other = sim.make_task("single_pnp", 6, world)
    assert not np.allclose(other.start.objects["cube"], sim.make_task("single_pnp", 5, world).start.objects["cube"])
    with pytest.raises(ValueError, match="unknown task"):
        sim.make_task("fold_laundry", 0, world)


def test_physics_is_deterministic(world):
    task = sim.make_task("single_pnp", 2, world)
    runs = []
    for _ in range(2):
        world.reset(task.start)
        world.command_joints(task.start.arm_joints + np.array([0.3, 0.2, -0.1, 0.0, 0.2, 0.1]), 0.4)
        world.command_gripper(0.0)
        world.step(0.6)
        runs.append((world.joint_positions(), world.object_poses()["cube"]))
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    np.testing.assert_array_equal(runs[0][1], runs[1][1])


def test_start_state_scores_zero_goal_state_scores_full(world):
    for name in sim.TASKS:
        task = sim.make_task(name, 1, world)
        world.reset(task.start)
        world.step(0.2)
        assert sim.score(world, task)[0] == 0, name
        world.reset(task.goal)
        world.step(0.2)
        points, max_points, details = sim.score(world, task)
        assert points == max_points == task.max_points, details


def test_scorer_pulled_off_drawer_scores_zero(world):
    task = sim.make_task("open_drawer", 1, world)
    pulled = task.goal.copy()
    pulled.drawer = scene.DRAWER_RAIL_LENGTH + 0.03
    world.reset(pulled)
    points, _, details = sim.score(world, task)
    assert points == 0 and details["targets"][0]["pulled_off"] is True
    barely = task.goal.copy()
    barely.drawer = 0.03
    world.reset(barely)
    assert sim.score(world, task)[0] == 0


def test_scorer_not_released_scores_zero(world):
    """The object on the plate but still commanded-closed / held: no point (SimplerEnv issue #129)."""
    task = sim.make_task("single_pnp", 1, world)
    world.reset(task.goal)
    world.step(0.1)
    assert sim.score(world, task)[0] == 1
    world.command_gripper(0.0)
    points, _, details = sim.score(world, task)
    assert points == 0 and details["gripper_open"] is False and details["targets"][0]["released"] is False


def test_scorer_moving_object_is_not_at_rest(world):
    task = sim.make_task("single_pnp", 1, world)
    world.reset(task.goal)
    obj = task.targets[0].object
    dof = world._object_dof[obj]
    world.data.qvel[dof:dof + 3] = [0.3, 0.0, 0.0]
    points, _, details = sim.score(world, task)
    assert points == 0 and details["targets"][0]["at_rest"] is False


def test_frames_render_at_bridge_and_small_sizes():
    run_in_fresh_process(_frames_render)


def _frames_render():
    world = sim.World()
    task = sim.make_task("double_pnp", 0, world)
    world.reset(task.start)
    frame = world.render(640, 480)
    assert frame.shape == (480, 640, 3) and frame.dtype == np.uint8 and frame.std() > 10
    small = world.render(256, 256)
    assert small.shape == (256, 256, 3)
    goal = sim.render_goal_image(task, world, 256, 256)
    assert np.abs(goal.astype(int) - small.astype(int)).mean() > 1.0  # objects moved to the plate


def test_friction_grasp_holds_while_the_arm_moves(world):
    """Grasp the cube by friction, lift, move through four poses for 2 s: slip in the gripper <= 5 mm."""
    from mqe.robot import pose_from_state

    task = sim.make_task("single_pnp", 0, world)
    world.reset(task.start)
    cube = world.object_poses()["cube"]
    yaw = (2 * np.arctan2(cube[6], cube[3]) + np.pi / 4) % (np.pi / 2) - np.pi / 4  # a face pair across the fingers
    joints = world.joint_positions()

    def move(xyz, seconds):
        nonlocal joints
        joints = world.solve_ik(pose_from_state([*xyz, 0.0, 0.0, yaw]), joints)
        assert joints is not None, xyz
        world.command_joints(joints, seconds)
        world.step(seconds)

    move([cube[0], cube[1], 0.10], 1.0)
    move([cube[0], cube[1], 0.018], 1.0)
    assert np.abs(world.ee_pose()[:3, 3] - [cube[0], cube[1], 0.018]).max() < 2e-3  # the servos track
    world.command_gripper(0.0)
    world.step(0.5)
    move([cube[0], cube[1], 0.12], 0.6)
    held = np.linalg.inv(world.ee_pose()) @ np.r_[world.object_poses()["cube"][:3], 1.0]
    for xyz in ([0.3, 0.1, 0.15], [0.2, -0.05, 0.1], [0.35, 0.15, 0.12], [0.25, 0.0, 0.14]):
        move(xyz, 0.5)
    after = np.linalg.inv(world.ee_pose()) @ np.r_[world.object_poses()["cube"][:3], 1.0]
    assert world.object_poses()["cube"][2] > 0.1  # still in the air
    assert np.linalg.norm(after[:3] - held[:3]) <= 5e-3
    assert world.finger_positions().min() > scene.FINGER_CLOSED + 0.01  # fingers stopped by the cube
