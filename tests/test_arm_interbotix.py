"""The interbotix backend against a stand-in for the Interbotix X-Series Python API.

The robot (xs_sdk driver + servos) is the only thing that cannot exist here, so the fake modules
injected into sys.modules behave as the Humble release does (Interbotix/interbotix_ros_toolboxes,
branch humble, read for this stand-in):
- interbotix_xs_modules/xs_robot/core.py: InterbotixRobotXSCore waits for the xs_sdk's
  <ns>/set_operating_modes service forever (`while not wait_for_service(5.0) and rclpy.ok()`); here
  it polls the real ROS graph, and a real rclpy node (XsSdkStandIn) offers the services.
- xs_robot/arm.py: set_ee_pose_matrix(T_sd, custom_guess, execute, moving_time, accel_time,
  blocking) -> (theta, success); _check_joint_limits checks positions and speeds over the *current*
  moving_time (theta truncated to 1e-3); _publish_commands calls set_trajectory_time, which writes
  Profile_Velocity / Profile_Acceleration only when a value is given and differs, each write waiting
  on a new 20 Hz rate (common_robot/robot.py wait_until_future_complete: >= 50 ms, and the rate's
  timer stays behind); the constructor does not write the registers; capture_joint_positions()
  copies the encoders into joint_commands; get_joint_positions / get_joint_efforts read joint_states.
- xs_robot/gripper.py: grasp/release(delay=1.0) sleep `delay`.
- common_robot/robot.py: robot_startup raises if already up; robot_shutdown destroys the node and
  calls rclpy.shutdown(), which on Humble raises RCLError ("failed to shutdown: rcl_shutdown already
  called on the given context") when the context is already shut down, as after Ctrl-C
  (ros2/rclpy humble, src/rclpy/context.cpp Context::shutdown calls rcl_shutdown unconditionally;
  RCLError is registered as a RuntimeError in _rclpy_pybind11.cpp). The wheels here are newer and
  skip a second rcl_shutdown, so the stand-in raises what Humble raises.
Blocking calls really sleep, as on the robot, so a blocking call from the control loop shows up.
"""

import sys
import threading
import time
import types

import modern_robotics as mr
import numpy as np
import pytest
import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions
from std_srvs.srv import Trigger

from widowx_bridge.arm_node import ArmNode
from widowx_bridge.backends.interbotix import InterbotixArmBackend
from widowx_bridge.control import ArmController, ArmState, ControlConfig
from widowx_bridge.kinematics import get_model

REGISTER_WAIT = 0.05  # s, one period of the 20 Hz rate each register write waits on


class FakeInterbotix:
    """State shared by the fake modules: every call the backend makes, in order."""

    def __init__(self):
        self.calls = []
        self.started = 0
        self.shut_down = 0
        self.manipulators = []
        self.leftover_rate_timers = 0
        self.efforts = None  # joint efforts the "servos" report; None = all zero
        self.nodes_destroyed = 0  # Interbotix's global node


def install_fake_interbotix(monkeypatch) -> FakeInterbotix:
    record = FakeInterbotix()
    up = {"node": None}

    class InterbotixRobotNode(Node):
        def destroy_node(self):
            record.nodes_destroyed += 1
            super().destroy_node()

    class Core:
        def __init__(self, robot_model, arm_state):
            self.ns = f"/{robot_model}"
            if up["node"] is None:  # create_interbotix_global_node: init the context if needed
                if not rclpy.ok():
                    rclpy.init()
                up["node"] = InterbotixRobotNode("interbotix_robot_manipulation")
            self.node = up["node"]
            service = f"{self.ns}/set_operating_modes"
            while rclpy.ok() and not any(name == service for name, _ in self.node.get_service_names_and_types()):
                time.sleep(0.1)  # core.py: waits for the xs_sdk for as long as the context lives
            if not rclpy.ok():
                raise RuntimeError("context shut down while waiting for the xs_sdk")
            self.arm_state = arm_state

        def get_node(self):
            return self.node

        def robot_torque_enable(self, cmd_type, name, enable):
            record.calls.append(("torque_enable", cmd_type, name, enable))
            if cmd_type == "group" and not enable:  # limp: the arm folds down under gravity
                self.arm_state["measured"] = list(self.arm_state["fallen"])

        def robot_reboot_motors(self, cmd_type, name, enable, smart_reboot=False):
            record.calls.append(("reboot_motors", cmd_type, name, enable, smart_reboot))

    class Arm:
        def __init__(self, core, robot_model, moving_time, accel_time):
            model = get_model(robot_model)
            self.core, self.model, self.moving_time, self.accel_time = core, model, moving_time, accel_time
            self.state = core.arm_state
            self.joint_commands = list(self.state["measured"])
            self.initial_guesses = [[waist] + [0.0] * (model.dof - 1) for waist in (0.0, np.radians(-120), np.radians(120))]

        def _write_register(self, register, value):
            record.calls.append(("register", register, value))
            record.leftover_rate_timers += 1
            time.sleep(REGISTER_WAIT)

        def set_trajectory_time(self, moving_time=None, accel_time=None):
            if moving_time is not None and moving_time != self.moving_time:
                self.moving_time = moving_time
                self._write_register("Profile_Velocity", int(moving_time * 1000))
            if accel_time is not None and accel_time != self.accel_time:
                self.accel_time = accel_time
                self._write_register("Profile_Acceleration", int(accel_time * 1000))

        def _check_joint_limits(self, positions):
            theta = np.array([int(elem * 1000) / 1000.0 for elem in positions])
            speed = np.abs(theta - np.asarray(self.joint_commands)) / float(self.moving_time)
            return bool(np.all(theta >= self.model.lower_limits) and np.all(theta <= self.model.upper_limits)
                        and np.all(speed <= self.model.velocity_limit))

        def _publish_commands(self, positions, moving_time=None, accel_time=None, blocking=True):
            self.set_trajectory_time(moving_time, accel_time)
            self.joint_commands = list(positions)
            self.state["measured"] = list(positions)  # torqued servos track their goal
            record.calls.append(("publish", list(positions)))
            if blocking:
                time.sleep(self.moving_time)

        def set_ee_pose_matrix(self, T_sd, custom_guess=None, execute=True, moving_time=None, accel_time=None,
                               blocking=True):
            record.calls.append(("set_ee_pose_matrix", custom_guess, execute, moving_time, accel_time, blocking))
            for guess in [custom_guess] if custom_guess is not None else self.initial_guesses:
                theta, success = mr.IKinSpace(self.model.screw_axes, self.model.home_ee_pose, T_sd, guess, 0.001, 0.001)
                theta = (np.asarray(theta) + np.pi) % (2 * np.pi) - np.pi
                if success and self._check_joint_limits(theta):
                    if execute:
                        self._publish_commands(theta, moving_time, accel_time, blocking)
                    return theta, True
            return theta, False

        def set_joint_positions(self, joint_positions, moving_time=None, accel_time=None, blocking=True):
            record.calls.append(("set_joint_positions", list(joint_positions), moving_time, accel_time, blocking))
            if not self._check_joint_limits(joint_positions):
                return False
            self._publish_commands(joint_positions, moving_time, accel_time, blocking)
            return True

        def go_to_home_pose(self, moving_time=None, accel_time=None, blocking=True):
            record.calls.append(("go_to_home_pose", moving_time, accel_time, blocking))
            self._publish_commands([0.0] * self.model.dof, moving_time, accel_time, blocking)

        def go_to_sleep_pose(self, moving_time=None, accel_time=None, blocking=True):
            record.calls.append(("go_to_sleep_pose", moving_time, accel_time, blocking))
            self._publish_commands(list(self.model.sleep_positions), moving_time, accel_time, blocking)

        def capture_joint_positions(self):
            record.calls.append(("capture_joint_positions",))
            self.joint_commands = list(self.state["measured"])

        def get_joint_commands(self):
            return list(self.joint_commands)

        def get_joint_positions(self):
            return list(self.state["measured"])

        def get_joint_efforts(self):
            return [0.0] * self.model.dof if record.efforts is None else list(record.efforts)

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
            model = get_model(robot_model)
            fallen = model.sleep_positions.copy()
            fallen[1] += 0.2  # limp, the shoulder settles short of the folded sleep pose
            arm_state = {"measured": list(model.sleep_positions), "fallen": list(fallen)}
            self.core = Core(robot_model, arm_state)
            record.manipulators.append((robot_model, group_name, gripper_name, gripper_pressure))
            self.arm, self.gripper = Arm(self.core, robot_model, moving_time, accel_time), Gripper()

    def robot_startup(node=None, node_name="interbotix_robot_manipulation", namespace=None):
        if record.started:
            raise RuntimeError("Startup has already been requested.")  # what Interbotix raises
        record.started += 1

    def robot_shutdown(node=None):
        up["node"].destroy_node()
        if not rclpy.ok():  # Humble's rclpy on an already shut-down context
            raise RuntimeError("failed to shutdown: rcl_shutdown already called on the given context, "
                               "at ./src/rcl/init.c:241")
        rclpy.shutdown()
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


class XsSdkStandIn:
    """The xs_sdk driver's service names on the real ROS graph (own context, own thread). The
    services' type is std_srvs/Trigger, as interbotix_xs_msgs is not installed here: only the name
    is what the backend and Interbotix's core look for."""

    def __init__(self, robot_models=("wx250s", "wx250")):
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node("xs_sdk", context=self.context)
        for model in robot_models:
            self.node.create_service(Trigger, f"/{model}/set_operating_modes", lambda request, response: response)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self._spin, daemon=True)
        self.thread.start()

    def _spin(self):
        try:
            self.executor.spin()
        except ExternalShutdownException:  # a Ctrl-C test's SIGINT shuts every context down
            pass

    def close(self):
        self.executor.shutdown()
        self.thread.join(timeout=10)
        self.node.destroy_node()
        self.context.try_shutdown()


@pytest.fixture
def fake(monkeypatch):
    record = install_fake_interbotix(monkeypatch)
    yield record
    if rclpy.ok():  # the default context Interbotix's node lives in
        rclpy.shutdown()


@pytest.fixture
def xs_sdk():
    driver = XsSdkStandIn()
    yield driver
    driver.close()


def started_backend(robot_model="wx250s", **options):
    backend = InterbotixArmBackend(robot_model, **options)
    backend.startup()
    return backend


def registers(fake, since=0):
    return [c for c in fake.calls[since:] if c[0] == "register"]


def test_startup_and_shutdown_happen_once(fake, xs_sdk):
    backend = started_backend(gripper_pressure=0.7)
    assert fake.started == 1 and fake.manipulators == [("wx250s", "arm", "gripper", 0.7)]
    with pytest.raises(RuntimeError, match="startup\\(\\) called twice"):
        backend.startup()
    backend.shutdown()
    backend.shutdown()
    assert fake.shut_down == 1 and fake.nodes_destroyed == 1


def test_steps_run_on_bridge_data_robots_profile_with_no_register_writes(fake, xs_sdk):
    # bridge_data_robot (widowx_envs/widowx_env.py start(): set_moving_time(0.2) -> 0.25 s / 0.1 s,
    # written once; widowx_controller.py set_ee_pose_matrix_fast: steps publish, no register writes)
    backend = started_backend()
    controller = ArmController(backend, ControlConfig())
    assert controller.reset(now=0.0)
    assert registers(fake) == [("register", "Profile_Acceleration", 800)]  # 2.0 s is the motors' config already
    assert controller.check_watchdog(1.0) is ArmState.RESETTING
    written = len(fake.calls)
    assert controller.check_watchdog(2.0) is ArmState.WAITING  # the reset move is over: back to the step profile
    assert registers(fake, written) == [("register", "Profile_Velocity", 250), ("register", "Profile_Acceleration", 100)]
    assert (backend._bot.arm.moving_time, backend._bot.arm.accel_time) == (0.25, 0.1)
    fake.calls.clear()
    for i in range(5):
        joints_before = backend.joint_positions()
        first_call = len(fake.calls)
        started = time.monotonic()
        action = [0.01, 0.0, -0.01, 0.0, 0.0, 0.05, 0.0 if i >= 2 else 1.0]
        assert controller.apply_action(action, now=2.0 + i * 0.2).status == "applied"
        assert time.monotonic() - started < 0.15  # a blocking move would take the moving time
        name, guess, execute, moving_time, accel_time, blocking = [c for c in fake.calls[first_call:] if c[0] == "set_ee_pose_matrix"][0]
        assert execute and not blocking and moving_time is None and accel_time is None
        np.testing.assert_allclose(guess, joints_before)
    assert registers(fake) == [] and fake.leftover_rate_timers == 3
    assert ("grasp", 0.0) in fake.calls  # the gripper closes without Interbotix's default 1 s sleep
    assert not any(c[0] in ("grasp", "release") and c[1] != 0.0 for c in fake.calls)


def test_the_velocity_check_still_refuses_a_branch_flip_on_steps(fake, xs_sdk):
    backend = started_backend()
    controller = ArmController(backend, ControlConfig())
    assert controller.reset(now=0.0) and controller.check_watchdog(2.0) is ArmState.WAITING
    arm = backend._bot.arm
    flipped = list(arm.get_joint_commands())
    flipped[3] += 2.0  # forearm roll half a turn away: 8 rad/s over 0.25 s
    assert not arm._check_joint_limits(flipped)
    assert arm._check_joint_limits(arm.get_joint_commands())


def test_operator_commands_map_to_interbotix_calls(fake, xs_sdk):
    backend = started_backend("wx250")
    controller = ArmController(backend, ControlConfig())
    assert controller.reset(now=0.0)
    controller.apply_action([0.02, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0], now=2.0)
    assert ("register", "Profile_Velocity", 250) in fake.calls  # fast steps after the slow reset
    controller.home()
    assert ("go_to_home_pose", None, None, False) in fake.calls and backend._bot.arm.moving_time == 2.0
    controller.sleep()
    assert ("go_to_sleep_pose", None, None, False) in fake.calls
    controller.torque_off()
    assert ("torque_enable", "group", "arm", False) in fake.calls
    assert ("torque_enable", "single", "gripper", False) in fake.calls
    calls = len(fake.calls)
    assert not controller.reset(now=3.0)  # torque is off: the arm refuses to move, no command is sent
    assert not any(c[0] == "set_ee_pose_matrix" for c in fake.calls[calls:])
    controller.reboot_motors()
    assert ("reboot_motors", "group", "arm", True, True) in fake.calls
    assert controller.reset(now=4.0)
    np.testing.assert_allclose(backend.joint_positions(), backend._bot.arm.get_joint_commands())


def test_joint_positions_are_captured_after_torque_off_and_reboot(fake, xs_sdk):
    # arm.py capture_joint_positions: "should be used whenever joints are torqued off, right after
    # torquing them on again"; the IK seed and the speed check then start from the measured joints
    backend = started_backend()
    controller = ArmController(backend, ControlConfig())
    assert controller.reset(now=0.0)
    commanded = backend._bot.arm.get_joint_commands()
    controller.torque_off()
    fallen = backend.joint_positions()
    assert np.abs(fallen - commanded).max() > 0.1  # limp, the arm fell away from its commands
    np.testing.assert_allclose(backend._bot.arm.get_joint_commands(), fallen)
    controller.reboot_motors()
    assert fake.calls[-1] == ("capture_joint_positions",)
    calls = len(fake.calls)
    assert controller.reset(now=5.0)
    seed = [c for c in fake.calls[calls:] if c[0] == "set_ee_pose_matrix"][0][1]
    np.testing.assert_allclose(seed, fallen)


def test_effort_over_the_limit_holds_the_measured_pose_and_says_why(fake, xs_sdk):
    # bridge_data_robot widowx_controller.py move_to_eep: after each step, |effort| - limit > 10 fails
    backend = started_backend()
    controller = ArmController(backend, ControlConfig())
    assert controller.reset(now=0.0) and controller.check_watchdog(2.0) is ArmState.WAITING
    assert controller.apply_action([0.01, 0, 0, 0, 0, 0, 1.0], now=2.0).status == "applied"
    limits = backend.model.effort_limits
    fake.efforts = [0.0, -(limits[1] + 50.0), 0.0, 0.0, 0.0, 0.0]  # the shoulder pushes on something
    calls = len(fake.calls)
    result = controller.apply_action([0.0, 0, -0.02, 0, 0, 0, 1.0], now=2.2)
    assert result.status == "effort_limit" and controller.state is ArmState.PARKED
    assert "shoulder" in controller.status()["last_message"] and controller.counters.effort_holds == 1
    held = [c for c in fake.calls[calls:] if c[0] == "set_joint_positions"]
    assert held and held[0][1] == list(backend.joint_positions()) and held[0][4] is False
    assert not any(c[0] == "set_ee_pose_matrix" for c in fake.calls[calls:])  # the step was not sent
    assert controller.apply_action([0.01, 0, 0, 0, 0, 0, 1.0], now=2.4).status == "parked"
    fake.efforts = None
    assert controller.reset(now=3.0)


def test_missing_interbotix_stack_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "interbotix_common_modules", None)
    with pytest.raises(RuntimeError, match="not installed.*backend:=sim"):
        InterbotixArmBackend("wx250s").startup()


def test_without_the_driver_startup_gives_up_after_a_bounded_wait_saying_what_to_start(fake):
    # the stand-in waits forever, as Interbotix's core does
    from interbotix_xs_modules.xs_robot.arm import InterbotixManipulatorXS

    outcome = []

    def construct():
        try:
            InterbotixManipulatorXS("wx250s")
        except RuntimeError as error:
            outcome.append(error)

    waiting = threading.Thread(target=construct, daemon=True)
    waiting.start()
    waiting.join(1.5)
    assert waiting.is_alive() and not outcome
    started = time.monotonic()
    with pytest.raises(RuntimeError) as error:
        InterbotixArmBackend("wx250s", driver_timeout=1.0).startup()
    assert time.monotonic() - started < 5.0
    message = str(error.value)
    assert "\n" not in message and "/wx250s/set_operating_modes" in message
    assert "ros2 launch interbotix_xsarm_control xsarm_control.launch.py robot_model:=wx250s" in message
    rclpy.shutdown()  # ends the stand-in's wait, as the context's end ends Interbotix's
    waiting.join(5.0)
    assert not waiting.is_alive()


def test_arm_node_runs_on_the_interbotix_backend(fake, xs_sdk):
    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        node = ArmNode(context=context, parameter_overrides={"backend": "interbotix", "robot_model": "wx250s"})
        assert fake.started == 1
        assert controller_state(node) is ArmState.RESETTING  # reset_on_start, slowly
        assert ("register", "Profile_Acceleration", 800) in fake.calls
        node.destroy_node()
        node.destroy_node()
        assert fake.shut_down == 1
    finally:
        rclpy.shutdown(context=context)


def controller_state(node):
    return node.controller.state


def test_ctrl_c_on_humble_shuts_down_without_raising_and_destroy_node_completes(fake, xs_sdk):
    # run_node's context; Interbotix's node lives in it too
    rclpy.init(signal_handler_options=SignalHandlerOptions.NO)
    try:
        node = ArmNode(parameter_overrides={"backend": "interbotix"})
        assert list(node.publishers)
        # Ctrl-C: rclpy's SIGINT handler first shuts every context down (signal_handler.cpp,
        # shutdown_contexts), then raises KeyboardInterrupt, and run_node destroys the node. The
        # shutdown is done here directly: whether rclpy's handler or another one gets a real SIGINT
        # depends on what else this test process imported, and the state that matters is the same.
        rclpy.shutdown()
        assert not rclpy.ok()
        node.destroy_node()
        assert not list(node.publishers)  # Node.destroy_node ran to the end
        assert fake.nodes_destroyed == 1 and fake.shut_down == 0  # robot_shutdown's rclpy.shutdown() not repeated
    finally:
        rclpy.try_shutdown()
