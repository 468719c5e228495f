"""Kinematics of the simulated WidowX 250s (6-DOF) and 250 (5-DOF): FK/IK round trips, joint limits,
and the 5-DOF orientation projection."""

import math

import numpy as np
import pytest

from widowx_bridge.control import pose_from_state, state_from_pose
from widowx_bridge import kinematics
from widowx_bridge.kinematics import (
    MODELS, allows_branch_change, forward_kinematics, get_model, inverse_kinematics, reachable_pose, within_limits,
)

MODEL_NAMES = sorted(MODELS)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_zero_joints_give_interbotix_home_pose(name):
    model = get_model(name)
    pose = forward_kinematics(model, np.zeros(model.dof))
    # ee_gripper_link at home: 0.458325 m forward, 0.36065 m up, axes aligned with the base
    np.testing.assert_allclose(pose, [[1, 0, 0, 0.458325], [0, 1, 0, 0], [0, 0, 1, 0.36065], [0, 0, 0, 1]], atol=1e-12)
    assert model.dof == (6 if name == "wx250s" else 5)
    assert within_limits(model, model.sleep_positions)


def test_joint_limits_are_the_interbotix_ones():
    model = get_model("wx250s")
    # shoulder -108..114 deg, elbow -123..92 deg, wrist angle -100..123 deg (Interbotix specs)
    np.testing.assert_allclose(np.degrees(model.lower_limits[[1, 2, 4]]), [-108, -123, -100], atol=0.1)
    np.testing.assert_allclose(np.degrees(model.upper_limits[[1, 2, 4]]), [114, 92, 123], atol=0.1)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_fk_ik_round_trip_on_random_configurations(name):
    model = get_model(name)
    rng = np.random.default_rng(0)
    solved = 0
    for _ in range(25):
        # configurations inside the limits, away from the +-pi wrap of the continuous joints
        joints = rng.uniform(np.maximum(model.lower_limits, -2.5), np.minimum(model.upper_limits, 2.5))
        pose = forward_kinematics(model, joints)
        seed = joints + rng.normal(0, 0.1, model.dof)  # a nearby seed, as in closed-loop control
        solution = inverse_kinematics(model, pose, seed=seed)
        if solution is None:
            continue
        solved += 1
        assert within_limits(model, solution)
        reached = forward_kinematics(model, solution)
        np.testing.assert_allclose(reached[:3, 3], pose[:3, 3], atol=2e-3)
        np.testing.assert_allclose(reached[:3, :3], pose[:3, :3], atol=3e-3)
    assert solved >= 22, f"IK solved only {solved}/25 poses that FK produced"


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_bridge_start_pose_and_workspace_are_reachable(name):
    model = get_model(name)
    start = reachable_pose(model, pose_from_state([0.3, 0.0, 0.15, 0.0, 0.0, 0.0]))
    joints = inverse_kinematics(model, start)
    assert joints is not None and within_limits(model, joints)
    np.testing.assert_allclose(forward_kinematics(model, joints), start, atol=3e-3)
    # the gripper points straight down at the start pose (Bridge's neutral orientation)
    np.testing.assert_allclose(start[:3, 0], [0, 0, -1], atol=1e-9)
    reachable = 0
    grid = [(x, y, z) for x in np.linspace(0.1, 0.45, 4) for y in np.linspace(-0.15, 0.25, 3) for z in (-0.1, 0.04, 0.18)]
    for xyz in grid:
        target = reachable_pose(model, pose_from_state([*xyz, 0.0, 0.0, 0.0]))
        reachable += inverse_kinematics(model, target) is not None
    assert reachable >= 0.85 * len(grid)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_out_of_reach_and_invalid_poses_return_none(name):
    model = get_model(name)
    far = pose_from_state([0.9, 0.0, 0.1, 0.0, 0.0, 0.0])
    assert inverse_kinematics(model, far) is None
    assert inverse_kinematics(model, np.full((4, 4), np.nan)) is None


def test_five_dof_projection_keeps_position_and_makes_the_pose_reachable():
    model = get_model("wx250")
    rng = np.random.default_rng(1)
    for _ in range(10):
        state = [rng.uniform(0.2, 0.35), rng.uniform(-0.1, 0.15), rng.uniform(0.0, 0.12),
                 *rng.uniform(-0.4, 0.4, 3)]
        target = pose_from_state(state)
        projected = reachable_pose(model, target)
        np.testing.assert_allclose(projected[:3, 3], target[:3, 3])
        bearing = math.atan2(target[1, 3], target[0, 3])
        sideways = np.array([-math.sin(bearing), math.cos(bearing), 0.0])
        assert abs(projected[:3, 0] @ sideways) < 1e-9  # approach axis in the arm's vertical plane
        np.testing.assert_allclose(projected[:3, :3] @ projected[:3, :3].T, np.eye(3), atol=1e-9)
        joints = inverse_kinematics(model, projected)
        assert joints is not None
        np.testing.assert_allclose(forward_kinematics(model, joints), projected, atol=3e-3)
    # an already reachable pose is left alone; the 6-DOF arm never projects
    start = pose_from_state([0.3, 0.0, 0.15, 0.0, 0.0, 0.0])
    np.testing.assert_allclose(reachable_pose(model, start), start, atol=1e-12)
    tilted = pose_from_state([0.3, 0.1, 0.1, 0.2, -0.3, 0.4])
    np.testing.assert_array_equal(reachable_pose(get_model("wx250s"), tilted), tilted)


def test_state_pose_round_trip():
    state = np.array([0.31, -0.05, 0.02, 0.2, -0.3, 1.1])
    np.testing.assert_allclose(state_from_pose(pose_from_state(state)), state, atol=1e-12)


def test_unknown_model_is_a_clear_error():
    with pytest.raises(ValueError, match="robot_model: unknown arm 'px100'"):
        get_model("px100")


def test_only_slow_moves_may_change_ik_branch():
    model = get_model("wx250s")
    assert model.velocity_limit == pytest.approx(math.pi, rel=0.01)  # 131 x 0.229 rpm
    assert not allows_branch_change(model, 0.2)  # a 5 Hz control step: current-joint seed only
    assert allows_branch_change(model, 2.0)  # the reset move may also use the default guesses


def test_reach_check_rejects_far_wrists_without_iterating(monkeypatch):
    model = get_model("wx250s")
    calls = []
    original = kinematics.mr.IKinSpace
    monkeypatch.setattr(kinematics.mr, "IKinSpace", lambda *a: calls.append(1) or original(*a))
    assert inverse_kinematics(model, pose_from_state([0.45, 0.25, 0.18 + 0.3, 0, 0, 0])) is None
    assert calls == []
    home = forward_kinematics(model, np.zeros(6))  # fully stretched: exactly at the reach limit
    assert inverse_kinematics(model, home, seed=np.zeros(6)) is not None
