"""The real WidowX 250 through the Interbotix X-Series Python API (ROS 2 Humble and later).

Only on the robot PC: `interbotix_xs_modules` comes with the Interbotix stack and is imported
lazily in `startup`, so this module imports anywhere. The xs_sdk driver must be running
(`ros2 launch interbotix_xsarm_control xsarm_control.launch.py robot_model:=wx250s`); Interbotix's
constructor waits for it forever (xs_robot/core.py), so `startup` first waits at most
`driver_timeout` s for the driver's services on the ROS graph and otherwise fails with one line
that says what to start.

Steps are executed as bridge_data_robot executed them when BridgeData V2 was recorded
(widowx_envs/widowx_env.py start() -> widowx_controller.set_moving_time(0.2): moving time
1.25 x 0.2 = 0.25 s, accel time 0.1 s, written once; each step then publishes joint positions with no
register writes): the servo profile (Profile_Velocity / Profile_Acceleration) is written only when
the kind of move changes (reset, home, sleep vs. steps), never per step. Upstream's
set_trajectory_time waits for each write on a fresh 20 Hz rate (common_robot/robot.py
wait_until_future_complete), so one switch costs >= 100 ms; the controller switches back to the
step profile when a reset has finished, before the first step.

Nothing here blocks the control loop: poses go out with blocking=False, the gripper with delay=0
(Interbotix's grasp/release sleep 1 s by default). IK is Interbotix's own (modern-robotics
IKinSpace), seeded with the current joint commands and, for slow moves such as the reset from the
folded sleep pose, also with Interbotix's default guesses (kinematics.allows_branch_change).
Interbotix's joint-limit check also refuses any solution faster than the joint velocity limits over
the current moving time; it is kept for steps (see docs/robot.md): it costs no I/O and is what
stops an IK branch flip from being executed at full speed.
"""

from __future__ import annotations

import time

import numpy as np

from widowx_bridge.backends.base import ArmBackend
from widowx_bridge.kinematics import allows_branch_change, get_model

# accel_time as a fraction of moving_time: bridge_data_robot's 0.1 s of 0.25 s; Interbotix requires
# accel_time <= moving_time / 2
ACCEL_FRACTION = 0.4
DRIVER_LAUNCH = "ros2 launch interbotix_xsarm_control xsarm_control.launch.py robot_model:={model}"


class InterbotixArmBackend(ArmBackend):
    def __init__(self, robot_model: str = "wx250s", gripper_pressure: float = 0.5, driver_timeout: float = 30.0):
        self.model = get_model(robot_model)
        self.gripper_pressure = gripper_pressure
        self.driver_timeout = driver_timeout
        self._bot = None
        self._robot_shutdown = None
        self._torque_enabled = True
        self._moving_time = None

    def startup(self) -> None:
        if self._bot is not None:
            raise RuntimeError("interbotix backend: startup() called twice")
        try:
            from interbotix_common_modules.common_robot.robot import robot_shutdown, robot_startup
            from interbotix_xs_modules.xs_robot.arm import InterbotixManipulatorXS
        except ImportError as error:
            raise RuntimeError(
                "interbotix backend: the Interbotix X-Series Python API is not installed "
                f"({error}); install the Interbotix stack on the robot PC or use backend:=sim"
            ) from error
        self._wait_for_driver()
        self._bot = InterbotixManipulatorXS(
            robot_model=self.model.name, group_name="arm", gripper_name="gripper",
            gripper_pressure=self.gripper_pressure,
        )
        robot_startup()
        self._robot_shutdown = robot_shutdown
        self._torque_enabled = True

    def _wait_for_driver(self) -> None:
        """Wait (bounded) for the service Interbotix's core waits for forever (core.py: the xs_sdk's
        <ns>/set_operating_modes), on the default context, the one Interbotix's node uses."""
        import rclpy

        if not rclpy.ok():
            rclpy.init()  # as Interbotix's create_interbotix_global_node does
        service = f"/{self.model.name}/set_operating_modes"
        probe = rclpy.create_node("widowx_arm_driver_probe")
        try:
            deadline = time.monotonic() + self.driver_timeout
            while rclpy.ok():
                if any(name == service for name, _ in probe.get_service_names_and_types()):
                    return
                if time.monotonic() >= deadline:
                    break
                time.sleep(0.1)
        finally:
            probe.destroy_node()
        raise RuntimeError(
            f"interbotix backend: the xs_sdk driver is not running (no {service} after "
            f"{self.driver_timeout:g} s); start it first: {DRIVER_LAUNCH.format(model=self.model.name)}")

    def shutdown(self) -> None:
        """Interbotix's robot_shutdown destroys its node and calls rclpy.shutdown(). After Ctrl-C the
        context is already shut down, and Humble's rclpy raises RCLError ("rcl_shutdown already called
        on the given context") on a second shutdown (rclpy/src/rclpy/context.cpp, humble: rcl_shutdown
        unconditionally; later releases skip it), so then only the node is destroyed."""
        if self._robot_shutdown is None:
            return
        shutdown, self._robot_shutdown = self._robot_shutdown, None
        import rclpy

        if rclpy.ok():
            try:
                shutdown()
                return
            except RuntimeError:  # RCLError is a RuntimeError; raised if the context went down meanwhile
                if rclpy.ok():
                    raise
        self._bot.core.get_node().destroy_node()  # Interbotix's spin thread ends with the context

    def _arm(self):
        if self._bot is None:
            raise RuntimeError("interbotix backend: startup() was not called")
        return self._bot.arm

    def set_moving_time(self, moving_time: float) -> None:
        arm = self._arm()
        if moving_time != self._moving_time:
            # Interbotix checks joint speeds against the *current* moving time before a command
            # applies its own, so the profile is switched first, and only when it changes.
            arm.set_trajectory_time(moving_time=moving_time, accel_time=moving_time * ACCEL_FRACTION)
            self._moving_time = moving_time

    def command_ee_pose(self, pose: np.ndarray, moving_time: float) -> bool:
        arm = self._arm()
        if not self._torque_enabled:
            return False
        self.set_moving_time(moving_time)
        guesses = [list(arm.get_joint_commands())]
        if allows_branch_change(self.model, moving_time):
            guesses.append(None)  # None = Interbotix's own default guesses
        for guess in guesses:
            # moving_time/accel_time None: _publish_commands then writes no registers
            _, success = arm.set_ee_pose_matrix(np.asarray(pose, np.float64), custom_guess=guess, execute=True,
                                                blocking=False)
            if success:
                return True
        return False

    def set_gripper(self, open_: bool) -> None:
        self._arm()
        if open_:
            self._bot.gripper.release(delay=0.0)
        else:
            self._bot.gripper.grasp(delay=0.0)

    def home(self, moving_time: float) -> None:
        self.set_moving_time(moving_time)
        self._arm().go_to_home_pose(blocking=False)

    def sleep(self, moving_time: float) -> None:
        self.set_moving_time(moving_time)
        self._arm().go_to_sleep_pose(blocking=False)

    def torque_off(self) -> None:
        arm = self._arm()
        self._torque_enabled = False
        self._bot.core.robot_torque_enable("group", "arm", False)
        self._bot.core.robot_torque_enable("single", "gripper", False)
        arm.capture_joint_positions()  # the arm falls: commands would be stale (arm.py says to)

    def reboot_motors(self) -> None:
        arm = self._arm()
        self._bot.core.robot_reboot_motors("group", "arm", True, smart_reboot=True)
        self._bot.core.robot_reboot_motors("single", "gripper", True)
        # torqued on where it lies: seed IK and check speeds from the measured joints (arm.py:
        # "should be used whenever joints are torqued off, right after torquing them on again")
        arm.capture_joint_positions()
        self._torque_enabled = True

    def joint_positions(self) -> np.ndarray:
        return np.asarray(self._arm().get_joint_positions(), np.float64)

    def joint_efforts(self) -> np.ndarray:
        return np.asarray(self._arm().get_joint_efforts(), np.float64)

    def hold_position(self) -> None:
        arm = self._arm()
        arm.capture_joint_positions()
        arm.set_joint_positions(arm.get_joint_commands(), blocking=False)
