"""The interbotix backend against a stand-in for the Interbotix X-Series Python API.

The robot (xs_sdk driver + servos) is the only thing that cannot exist here, so the fake modules
injected into sys.modules mimic interbotix_xs_modules' API (names and signatures of the Humble
release): InterbotixManipulatorXS(...).arm.set_ee_pose_matrix(T_sd, custom_guess, execute,
moving_time, accel_time, blocking) -> (theta_list, success), gripper.grasp/release(delay=1.0),
core.robot_torque_enable / robot_reboot_motors, and robot_startup / robot_shutdown. Blocking calls
really sleep, as on the robot, so a blocking call from the control loop shows up as lost time."""

import sys
import time
import types

import modern_robotics as mr
import numpy as np
import pytest
import rclpy

from widowx_bridge.arm_node import ArmNode
from widowx_bridge.backends.interbotix import InterbotixArmBackend
from widowx_bridge.control import ArmController, ControlConfig
from widowx_bridge.kinematics import get_model


class FakeInterbotix:
    """State shared by the fake modules: every call the backend makes, in order."""

    def __init__(self):
        self.calls = []
        self.started = 0
        self.shut_down = 0
        self.manipulators = []


def install_fake_interbotix(monkeypatch) -> FakeInterbotix:
    record = FakeInterbotix()

    class Core:
        def robot_torque_enable(self, cmd_type, name, enable):
            record.calls.append(("torque_enable", cmd_type, name, enable))

        def robot_reboot_motors(self, cmd_type, name, enable, smart_reboot=False):
            record.calls.append(("reboot_motors", cmd_type, name, enable, smart_reboot))

    class Arm:
        def __init__(self, robot_model, moving_time, accel_time):
            model = get_model(robot_model)
            self.model, self.moving_time, self.accel_time = model, moving_time, accel_time
            self.joint_commands = list(model.sleep_positions)

        def set_trajectory_time(self, moving_time=None, accel_time=None):
            record.calls.append(("set_trajectory_time", moving_time, accel_time))
            self.moving_time = moving_time if moving_time is not None else self.moving_time
            self.accel_time = accel_time if accel_time is not None else self.accel_time

        def _within_limits(self, theta):
            # like Interbotix's _check_joint_limits: positions, and speeds over the *current* moving_time
            speed = np.abs(np.asarray(theta) - self.joint_commands) / self.moving_time
            return bool(np.all(theta >= self.model.lower_limits) and np.all(theta <= self.model.upper_limits)
                        and np.all(speed <= self.model.velocity_limit))

        def _publish(self, positions, moving_time, accel_time, blocking):
            self.set_trajectory_time(moving_time, accel_time)
            self.joint_commands = list(positions)
            if blocking:
                time.sleep(self.moving_time)

        def set_ee_pose_matrix(self, T_sd, custom_guess=None, execute=True, moving_time=None, accel_time=None,
                               blocking=True):
            record.calls.append(("set_ee_pose_matrix", custom_guess, execute, moving_time, accel_time, blocking))
            defaults = [[waist] + [0.0] * (self.model.dof - 1) for waist in (0.0, np.radians(-120), np.radians(120))]
            for guess in [custom_guess] if custom_guess is not None else defaults:
                theta, success = mr.IKinSpace(self.model.screw_axes, self.model.home_ee_pose, T_sd, guess, 0.001, 0.001)
                theta = (np.asarray(theta) + np.pi) % (2 * np.pi) - np.pi
                if success and self._within_limits(theta):
                    if execute:
                        self._publish(theta, moving_time, accel_time, blocking)
                    return theta, True
            return theta, False

        def go_to_home_pose(self, moving_time=None, accel_time=None, blocking=True):
            record.calls.append(("go_to_home_pose", moving_time, accel_time, blocking))
            self._publish([0.0] * self.model.dof, moving_time, accel_time, blocking)

        def go_to_sleep_pose(self, moving_time=None, accel_time=None, blocking=True):
            record.calls.append(("go_to_sleep_pose", moving_time, accel_time, blocking))
            self._publish(self.model.sleep_positions, moving_time, accel_time, blocking)

        def get_joint_commands(self):
            return list(self.joint_commands)

        def get_joint_positions(self):
            return list(self.joint_commands)

    class Gripper:
        def grasp(self, delay=1.0):
            record.calls.append(("grasp", delay))
            time.sleep(delay)

        def release(self, delay=1.0):
            record.calls.append(("release", delay))
            time.sleep(delay)

    class InterbotixManipulatorXS:
        def __init__(self, robot_model, group_name="arm", gripper_name="gripper", robot_name=None, moving_time=2.0,
                     accel_time=0.3, gripper_pressure=0.5, gripper_pressure_lower_limit=150,
                     gripper_pressure_upper_limit=350, topic_joint_states="joint_states", logging_level=None,
                     node_name="robot_manipulation", node=None, iterative_update_fk=True, args=None):
            record.manipulators.append((robot_model, group_name, gripper_name, gripper_pressure))
            self.core, self.arm, self.gripper = Core(), Arm(robot_model, moving_time, accel_time), Gripper()

    def robot_startup(node=None, node_name="interbotix_robot_manipulation", namespace=None):
        if record.started:
            raise RuntimeError("Startup has already been requested.")  # what Interbotix raises
        record.started += 1

    def robot_shutdown(node=None):
        record.shut_down += 1

    modules = {
        "interbotix_xs_modules": types.ModuleType("interbotix_xs_modules"),
        "interbotix_xs_modules.xs_robot": types.ModuleType("interbotix_xs_modules.xs_robot"),
        "interbotix_xs_modules.xs_robot.arm": types.ModuleType("interbotix_xs_modules.xs_robot.arm"),
        "interbotix_common_modules": types.ModuleType("interbotix_common_modules"),
        "interbotix_common_modules.common_robot": types.ModuleType("interbotix_common_modules.common_robot"),
        "interbotix_common_modules.common_robot.robot": types.ModuleType("interbotix_common_modules.common_robot.robot"),
    }
    modules["interbotix_xs_modules.xs_robot.arm"].InterbotixManipulatorXS = InterbotixManipulatorXS
    modules["interbotix_common_modules.common_robot.robot"].robot_startup = robot_startup
    modules["interbotix_common_modules.common_robot.robot"].robot_shutdown = robot_shutdown
    for name, module in modules.items():
        monkeypatch.setitem(sys.modules, name, module)
    return record


@pytest.fixture
def fake(monkeypatch):
    return install_fake_interbotix(monkeypatch)


def test_startup_and_shutdown_happen_once(fake):
    backend = InterbotixArmBackend("wx250s", gripper_pressure=0.7)
    backend.startup()
    assert fake.started == 1 and fake.manipulators == [("wx250s", "arm", "gripper", 0.7)]
    with pytest.raises(RuntimeError, match="startup\\(\\) called twice"):
        backend.startup()
    backend.shutdown()
    backend.shutdown()
    assert fake.shut_down == 1


def test_control_steps_are_non_blocking_and_seeded_with_the_current_joints(fake):
    backend = InterbotixArmBackend("wx250s")
    backend.startup()
    controller = ArmController(backend, ControlConfig())
    assert controller.reset()
    fake.calls.clear()
    for i in range(5):
        joints_before = backend.joint_positions()
        first_call = len(fake.calls)
        started = time.monotonic()
        assert controller.apply_action([0.01, 0.0, -0.01, 0.0, 0.0, 0.05, 0.0 if i >= 2 else 1.0], now=i * 0.2).status == "applied"
        assert time.monotonic() - started < 0.15  # a blocking move would take moving_time = 0.2 s
        name, guess, execute, moving_time, accel_time, blocking = [c for c in fake.calls[first_call:] if c[0] == "set_ee_pose_matrix"][0]
        assert execute and not blocking and moving_time == 0.2 and accel_time == pytest.approx(0.1)
        np.testing.assert_allclose(guess, joints_before)
    assert ("grasp", 0.0) in fake.calls  # the gripper closes without Interbotix's default 1 s sleep
    assert not any(c[0] in ("grasp", "release") and c[1] != 0.0 for c in fake.calls)


def test_operator_commands_map_to_interbotix_calls(fake):
    backend = InterbotixArmBackend("wx250")
    backend.startup()
    controller = ArmController(backend, ControlConfig())
    assert controller.reset()
    controller.apply_action([0.02, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0], now=0.0)
    assert ("set_trajectory_time", 0.2, pytest.approx(0.1)) in fake.calls  # fast steps after the slow reset
    controller.home()
    assert ("go_to_home_pose", 2.0, 1.0, False) in fake.calls
    controller.sleep()
    assert ("go_to_sleep_pose", 2.0, 1.0, False) in fake.calls
    controller.torque_off()
    assert ("torque_enable", "group", "arm", False) in fake.calls
    assert ("torque_enable", "single", "gripper", False) in fake.calls
    calls = len(fake.calls)
    assert not controller.reset()  # torque is off: the arm refuses to move, no command is sent
    assert not any(c[0] == "set_ee_pose_matrix" for c in fake.calls[calls:])
    controller.reboot_motors()
    assert ("reboot_motors", "group", "arm", True, True) in fake.calls
    assert controller.reset()
    np.testing.assert_allclose(backend.joint_positions(), fake_joint_commands(backend))


def fake_joint_commands(backend):
    return backend._bot.arm.get_joint_commands()


def test_missing_interbotix_stack_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "interbotix_common_modules", None)
    with pytest.raises(RuntimeError, match="not installed.*backend:=sim"):
        InterbotixArmBackend("wx250s").startup()


def test_arm_node_runs_on_the_interbotix_backend(fake):
    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        node = ArmNode(context=context, parameter_overrides={"backend": "interbotix", "robot_model": "wx250s"})
        assert fake.started == 1
        assert [c for c in fake.calls if c[0] == "set_ee_pose_matrix"][-1][3] == 2.0  # reset_on_start, slowly
        node.destroy_node()
        node.destroy_node()
        assert fake.shut_down == 1
    finally:
        rclpy.shutdown(context=context)
