"""The arm control logic (plain Python) on the kinematic sim arm: clipping, integration order,
workspace, IK failures, rejects, watchdog, parking, gripper, and a property test over arbitrary
action sequences."""

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from widowx_bridge.backends.sim import SimArmBackend
from mqe.robot import pose_from_state, rotation_from_rpy, rpy_from_rotation, state_from_pose
from widowx_bridge.control import ArmController, ArmState, ControlConfig
from widowx_bridge.kinematics import forward_kinematics

STEP = 0.2  # s between actions, the 5 Hz policy rate


class RecordingSimBackend(SimArmBackend):
    """The real sim arm, plus a record of what the controller asked of it."""

    def __init__(self, robot_model="wx250s"):
        super().__init__(robot_model)
        self.gripper_commands = []
        self.pose_commands = []
        self.moving_times = []

    def set_gripper(self, open_):
        self.gripper_commands.append(open_)
        super().set_gripper(open_)

    def command_ee_pose(self, pose, moving_time):
        self.pose_commands.append((pose.copy(), moving_time))
        return super().command_ee_pose(pose, moving_time)

    def set_moving_time(self, moving_time):
        self.moving_times.append(moving_time)


class EffortSimBackend(RecordingSimBackend):
    """The sim arm with effort readings set by the test, and a record of holds."""

    def __init__(self, robot_model="wx250s"):
        super().__init__(robot_model)
        self.efforts = np.zeros(self.model.dof)
        self.holds = 0

    def joint_efforts(self):
        return self.efforts.copy()

    def hold_position(self):
        self.holds += 1


def make_controller(robot_model="wx250s", **config):
    backend = RecordingSimBackend(robot_model)
    backend.startup()
    controller = ArmController(backend, ControlConfig(**config))
    assert controller.reset(now=-controller.config.reset_moving_time)  # the reset move is over at t = 0
    assert controller.check_watchdog(0.0) is ArmState.WAITING
    return controller, backend


def test_reset_goes_to_the_bridge_start_pose():
    controller, backend = make_controller()
    np.testing.assert_allclose(state_from_pose(controller.commanded_pose), [0.3, 0, 0.15, 0, 0, 0], atol=1e-12)
    np.testing.assert_allclose(forward_kinematics(backend.model, backend.joint_positions())[:3, 3], [0.3, 0, 0.15], atol=2e-3)
    assert backend.pose_commands[-1][1] == 2.0  # the long move uses reset_moving_time
    assert controller.gripper_open and backend.gripper_open


def test_each_component_is_clipped():
    controller, backend = make_controller()
    before = controller.commanded_pose.copy()
    result = controller.apply_action([0.2, -0.3, 0.01, 0.0, 0.0, 0.0, 1.0], now=0.0)
    assert result.status == "applied"
    np.testing.assert_allclose(controller.commanded_pose[:3, 3] - before[:3, 3], [0.05, -0.05, 0.01], atol=1e-12)
    assert controller.counters.clipped_steps == 1
    assert backend.pose_commands[-1][1] == 0.25  # one step = step_moving_time, bridge_data_robot's 0.25 s
    controller.apply_action([0, 0, 0, 1.0, -2.0, 0.1, 1.0], now=STEP)
    delta = controller.commanded_pose[:3, :3] @ before[:3, :3].T
    np.testing.assert_allclose(rpy_from_rotation(delta), [0.25, -0.25, 0.1], atol=1e-9)


def test_rotation_is_rz_ry_rx_about_the_end_effector_in_base_axes():
    controller, _ = make_controller()
    controller.apply_action([0.01, 0.0, -0.02, 0.0, 0.0, 0.0, 1.0], now=0.0)  # leave the symmetric start pose
    controller.apply_action([0, 0, 0, 0.1, 0.2, 0.15, 1.0], now=STEP)
    first = controller.commanded_pose.copy()
    roll, pitch, yaw = 0.2, -0.15, 0.1
    controller.apply_action([0, 0, 0, roll, pitch, yaw, 1.0], now=2 * STEP)
    after = controller.commanded_pose
    np.testing.assert_allclose(after[:3, 3], first[:3, 3], atol=1e-12)  # rotation about the EE position
    expected = rotation_from_rpy(roll, pitch, yaw) @ first[:3, :3]  # base-frame axes: pre-multiplied
    np.testing.assert_allclose(after[:3, :3], expected, atol=1e-12)
    # and not the other orders a bug could produce
    rx, ry, rz = rotation_from_rpy(roll, 0, 0), rotation_from_rpy(0, pitch, 0), rotation_from_rpy(0, 0, yaw)
    assert np.abs(after[:3, :3] - rx @ ry @ rz @ first[:3, :3]).max() > 1e-3  # Rx Ry Rz
    assert np.abs(after[:3, :3] - first[:3, :3] @ rz @ ry @ rx).max() > 1e-3  # tool-frame axes
    np.testing.assert_allclose(rotation_from_rpy(roll, pitch, yaw), rz @ ry @ rx, atol=1e-15)


def test_integration_uses_the_last_commanded_pose_not_the_measured_one():
    controller, backend = make_controller()
    for i in range(3):
        controller.apply_action([0.02, 0.0, 0.0, 0, 0, 0, 1.0], now=i * STEP)
    # the sim reaches its targets within IK tolerance; commanded x is exactly 0.3 + 3 * 0.02
    assert controller.commanded_pose[0, 3] == pytest.approx(0.36, abs=1e-12)
    assert forward_kinematics(backend.model, backend.joint_positions())[0, 3] == pytest.approx(0.36, abs=2e-3)


def test_target_is_clipped_to_the_workspace():
    controller, _ = make_controller(workspace_high=(0.45, 0.25, 0.17))
    for i in range(5):
        controller.apply_action([0.0, 0.0, 0.05, 0, 0, 0, 1.0], now=i * STEP)
    assert controller.commanded_pose[2, 3] == pytest.approx(0.17)
    assert controller.counters.workspace_clips == 5  # 0.15 + 0.05 is already above the top


def test_ik_failure_skips_the_step_counts_it_and_never_raises():
    # a workspace that includes poses the arm cannot reach (x up to 0.7 m with the gripper down)
    controller, backend = make_controller(workspace_high=(0.7, 0.25, 0.18))
    failures_seen = 0
    for i in range(12):
        before_pose, before_joints = controller.commanded_pose.copy(), backend.joint_positions()
        result = controller.apply_action([0.05, 0, 0, 0, 0, 0, 1.0], now=i * STEP)
        if result.status == "ik_failure":
            failures_seen += 1
            np.testing.assert_array_equal(controller.commanded_pose, before_pose)
            np.testing.assert_array_equal(backend.joint_positions(), before_joints)
            assert "IK failed" in result.message
    assert failures_seen >= 3 and controller.counters.ik_failures == failures_seen
    assert controller.status()["ik_failures"] == str(failures_seen)
    # coming back into reach works again
    assert controller.apply_action([-0.05, 0, 0, 0, 0, 0, 1.0], now=20.0).status == "applied"


@pytest.mark.parametrize("action", [
    [0.0] * 6, [0.0] * 8, [float("nan")] + [0.0] * 6, [0.0] * 5 + [float("inf"), 1.0], [], "abcdefg", None,
])
def test_bad_actions_are_rejected_and_counted(action):
    controller, backend = make_controller()
    before = controller.commanded_pose.copy()
    commands = len(backend.pose_commands)
    assert controller.apply_action(action, now=0.0).status == "rejected"
    assert controller.counters.rejected == 1 and len(backend.pose_commands) == commands
    np.testing.assert_array_equal(controller.commanded_pose, before)


def test_watchdog_holds_then_resumes():
    controller, backend = make_controller(command_timeout=0.5)
    assert controller.check_watchdog(100.0) is ArmState.WAITING  # no action yet: nothing to hold
    controller.apply_action([0.01, 0, 0, 0, 0, 0, 1.0], now=0.0)
    assert controller.check_watchdog(0.4) is ArmState.ACTIVE
    assert controller.check_watchdog(0.6) is ArmState.HOLDING
    commands = len(backend.pose_commands)
    assert controller.check_watchdog(5.0) is ArmState.HOLDING and len(backend.pose_commands) == commands
    assert controller.counters.watchdog_holds == 1
    assert controller.apply_action([0.01, 0, 0, 0, 0, 0, 1.0], now=5.1).status == "applied"
    assert controller.state is ArmState.ACTIVE


def test_actions_faster_than_the_minimum_interval_are_dropped():
    controller, _ = make_controller(min_action_interval=0.1)
    assert controller.apply_action([0.01, 0, 0, 0, 0, 0, 1.0], now=0.0).status == "applied"
    assert controller.apply_action([0.01, 0, 0, 0, 0, 0, 1.0], now=0.05).status == "rate_limited"
    assert controller.apply_action([0.01, 0, 0, 0, 0, 0, 1.0], now=0.2).status == "applied"
    assert controller.counters.rate_limited == 1
    assert controller.commanded_pose[0, 3] == pytest.approx(0.32)


def test_gripper_threshold_and_only_changes_reach_the_arm():
    controller, backend = make_controller(gripper_threshold=0.6)
    backend.gripper_commands.clear()
    for i, gripper in enumerate([0.9, 0.7, 0.59, 0.1, 0.0, 0.6, 1.0]):
        controller.apply_action([0, 0, 0, 0, 0, 0, gripper], now=i * STEP)
    assert backend.gripper_commands == [False, True]
    assert controller.gripper_open and backend.gripper_open


@pytest.mark.parametrize("operation", ["home", "sleep", "torque_off", "reboot_motors"])
def test_parked_after_operator_commands_until_reset(operation):
    controller, backend = make_controller()
    getattr(controller, operation)()
    assert controller.state is ArmState.PARKED
    joints = backend.joint_positions()
    assert controller.apply_action([0.01, 0, 0, 0, 0, 0, 1.0], now=0.0).status == "parked"
    np.testing.assert_array_equal(backend.joint_positions(), joints)
    assert controller.counters.ignored_parked == 1
    if operation == "home":
        np.testing.assert_allclose(joints, 0.0)
    if operation == "sleep":
        np.testing.assert_allclose(joints, backend.model.sleep_positions)
    if operation == "torque_off":
        assert not controller.reset(now=0.0)  # e-stop: no motion until the motors are rebooted
        assert "torque" in controller.last_message
        controller.reboot_motors()
    assert controller.reset(now=0.0) and controller.state is ArmState.RESETTING
    assert controller.apply_action([0.01, 0, 0, 0, 0, 0, 1.0], now=2.0).status == "applied"


def test_bad_configuration_is_a_clear_error():
    with pytest.raises(ValueError, match="workspace"):
        ControlConfig(workspace_low=(0.5, 0, 0), workspace_high=(0.4, 1, 1))
    with pytest.raises(ValueError, match="start_pose"):
        ControlConfig(start_pose=(0.9, 0, 0.15, 0, 0, 0))


def test_five_dof_arm_follows_translation_and_stays_reachable():
    controller, backend = make_controller("wx250")
    for i in range(10):
        assert controller.apply_action([0.01, 0.01, -0.01, 0.05, 0.05, 0.05, 1.0], now=i * STEP).status == "applied"
    np.testing.assert_allclose(controller.commanded_pose[:3, 3], [0.4, 0.1, 0.05], atol=1e-9)
    np.testing.assert_allclose(forward_kinematics(backend.model, backend.joint_positions()), controller.commanded_pose, atol=3e-3)


finite = st.floats(-1.0, 1.0)
wild = st.one_of(finite, st.floats(-1e6, 1e6), st.just(float("nan")), st.just(float("inf")), st.just(-float("inf")))
actions = st.one_of(
    st.lists(finite, min_size=7, max_size=7),  # ordinary actions, often beyond the clip
    st.lists(wild, min_size=7, max_size=7),  # huge / non-finite values
    st.lists(wild, min_size=0, max_size=10),  # wrong lengths
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(actions, min_size=1, max_size=15))
def test_property_commanded_poses_stay_in_workspace_and_steps_in_clip(sequence):
    controller, backend = make_controller()
    low, high = np.array(controller.config.workspace_low), np.array(controller.config.workspace_high)
    previous = controller.commanded_pose.copy()
    for i, action in enumerate(sequence):
        result = controller.apply_action(action, now=i * STEP)
        pose = controller.commanded_pose
        assert np.all(np.isfinite(pose))
        assert np.all(pose[:3, 3] >= low - 1e-12) and np.all(pose[:3, 3] <= high + 1e-12)
        assert np.all(np.abs(pose[:3, 3] - previous[:3, 3]) <= 0.05 + 1e-12)
        step_rpy = rpy_from_rotation(pose[:3, :3] @ previous[:3, :3].T)
        assert all(abs(angle) <= 0.25 + 1e-9 for angle in step_rpy)
        np.testing.assert_allclose(pose[:3, :3] @ pose[:3, :3].T, np.eye(3), atol=1e-9)
        if result.status != "applied":
            np.testing.assert_array_equal(pose, previous)
        else:  # the sim arm really is there
            reached = forward_kinematics(backend.model, backend.joint_positions())
            assert np.abs(reached[:3, 3] - pose[:3, 3]).max() < 2e-3
        previous = pose.copy()
    counters = controller.counters
    assert counters.applied + counters.rejected + counters.ik_failures == len(sequence)


def test_five_dof_arm_keeps_yaw_about_a_downward_gripper_and_drops_sideways_tilt():
    controller, backend = make_controller("wx250")
    start = controller.commanded_pose.copy()
    assert controller.apply_action([0, 0, 0, 0, 0, 0.2, 1.0], now=0.0).status == "applied"  # dyaw: wrist rotate
    np.testing.assert_allclose(controller.commanded_pose[:3, :3], rotation_from_rpy(0, 0, 0.2) @ start[:3, :3], atol=1e-12)
    assert controller.apply_action([0, 0, 0, 0.2, 0, 0, 1.0], now=STEP).status == "applied"  # droll at y = 0: sideways
    np.testing.assert_allclose(controller.commanded_pose[:3, 0], [0, 0, -1], atol=1e-12)  # still pointing down
    np.testing.assert_allclose(forward_kinematics(backend.model, backend.joint_positions()), controller.commanded_pose, atol=3e-3)


def test_actions_during_the_reset_move_are_ignored_and_counted_until_it_has_finished():
    # on the real arm the next 0.25 s step would cut the 2 s reset move short
    controller, backend = make_controller()
    controller.apply_action([0.03, 0.02, 0, 0, 0, 0, 1.0], now=0.0)
    assert controller.reset(now=10.0) and controller.state is ArmState.RESETTING
    start = controller.commanded_pose.copy()
    commands = len(backend.pose_commands)
    for i in range(1, 10):  # 10.2 .. 11.8 s: the move is still under way
        result = controller.apply_action([0.01, 0, 0, 0, 0, 0, 1.0], now=10.0 + i * STEP)
        assert result.status == "resetting"
    assert controller.counters.ignored_resetting == 9 and len(backend.pose_commands) == commands
    np.testing.assert_array_equal(controller.commanded_pose, start)
    assert controller.status()["state"] == "resetting"
    assert controller.apply_action([0.01, 0, 0, 0, 0, 0, 1.0], now=12.0).status == "applied"
    assert backend.moving_times[-1] == 0.25  # back to the step profile before the first step
    np.testing.assert_allclose(controller.commanded_pose[:3, 3] - start[:3, 3], [0.01, 0, 0], atol=1e-12)


def test_the_watchdog_ends_a_finished_reset_and_switches_the_profile_between_moves():
    controller, backend = make_controller()
    assert controller.reset(now=5.0)
    backend.moving_times.clear()
    assert controller.check_watchdog(6.9) is ArmState.RESETTING and backend.moving_times == []
    assert controller.check_watchdog(7.0) is ArmState.WAITING and backend.moving_times == [0.25]


def test_an_effort_over_the_limit_holds_the_arm_and_parks_it_with_the_reason():
    backend = EffortSimBackend()
    backend.startup()
    controller = ArmController(backend, ControlConfig())
    assert controller.reset(now=-2.0) and controller.check_watchdog(0.0) is ArmState.WAITING
    assert controller.apply_action([0.01, 0, 0, 0, 0, 0, 1.0], now=0.0).status == "applied"
    limits = backend.model.effort_limits
    backend.efforts[2] = limits[2] - 1.0  # just under: nothing happens
    assert controller.apply_action([0.01, 0, 0, 0, 0, 0, 1.0], now=STEP).status == "applied"
    backend.efforts[2] = -(limits[2] + 1.0)  # the elbow pushes on something
    commands = len(backend.pose_commands)
    result = controller.apply_action([0.01, 0, 0, 0, 0, 0, 1.0], now=2 * STEP)
    assert result.status == "effort_limit" and len(backend.pose_commands) == commands  # the step is not sent
    assert controller.state is ArmState.PARKED and backend.holds == 1 and controller.counters.effort_holds == 1
    assert "elbow" in controller.park_reason and controller.status()["last_message"] == controller.park_reason
    assert controller.apply_action([0.01, 0, 0, 0, 0, 0, 1.0], now=3 * STEP).status == "parked"
    backend.efforts[:] = 0.0
    assert controller.reset(now=1.0) and controller.check_watchdog(3.0) is ArmState.WAITING

    backend.efforts[1] = limits[1] + 5.0  # between actions (holding): the 10 Hz watchdog tick catches it
    assert controller.check_watchdog(3.1) is ArmState.PARKED and backend.holds == 2
    assert "shoulder" in controller.park_reason
