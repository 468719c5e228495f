"""The real WidowX 250 through the Interbotix X-Series Python API (ROS 2 Humble and later).

Only on the robot PC: `interbotix_xs_modules` comes with the Interbotix stack and is imported
lazily in `startup`, so this module imports anywhere. The xs_sdk driver must already be running
(`ros2 launch interbotix_xsarm_control xsarm_control.launch.py robot_model:=wx250s`).

Nothing here blocks the 5 Hz control loop: poses go out with blocking=False, the gripper with
delay=0 (Interbotix's grasp/release sleep 1 s by default). IK is Interbotix's own (modern-robotics
IKinSpace), seeded with the current joint commands and, for slow moves such as the reset from the
folded sleep pose, also with Interbotix's default guesses (kinematics.allows_branch_change). Interbotix refuses any solution that would
exceed the joint velocity limits over moving_time, so a jump to another IK branch is refused, not
executed.
"""

from __future__ import annotations

import numpy as np

from widowx_bridge.backends.base import ArmBackend
from widowx_bridge.kinematics import allows_branch_change, get_model

# accel_time as a fraction of moving_time; Interbotix requires accel_time <= moving_time / 2
_ACCEL_FRACTION = 0.5


class InterbotixArmBackend(ArmBackend):
    def __init__(self, robot_model: str = "wx250s", gripper_pressure: float = 0.5):
        self.model = get_model(robot_model)
        self.gripper_pressure = gripper_pressure
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
        self._bot = InterbotixManipulatorXS(
            robot_model=self.model.name, group_name="arm", gripper_name="gripper",
            gripper_pressure=self.gripper_pressure,
        )
        robot_startup()
        self._robot_shutdown = robot_shutdown
        self._torque_enabled = True

    def shutdown(self) -> None:
        if self._robot_shutdown is not None:
            shutdown, self._robot_shutdown = self._robot_shutdown, None
            shutdown()

    def _arm(self):
        if self._bot is None:
            raise RuntimeError("interbotix backend: startup() was not called")
        return self._bot.arm

    def command_ee_pose(self, pose: np.ndarray, moving_time: float) -> bool:
        arm = self._arm()
        if not self._torque_enabled:
            return False
        if moving_time != self._moving_time:
            # Interbotix checks joint speeds against the *previous* moving time before it applies
            # the new one, so a slow reset after fast steps would be refused: set it first.
            arm.set_trajectory_time(moving_time=moving_time, accel_time=moving_time * _ACCEL_FRACTION)
            self._moving_time = moving_time
        guesses = [list(arm.get_joint_commands())]
        if allows_branch_change(self.model, moving_time):
            guesses.append(None)  # None = Interbotix's own default guesses
        for guess in guesses:
            _, success = arm.set_ee_pose_matrix(
                np.asarray(pose, np.float64), custom_guess=guess, execute=True,
                moving_time=moving_time, accel_time=moving_time * _ACCEL_FRACTION, blocking=False,
            )
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
        self._moving_time = moving_time
        self._arm().go_to_home_pose(moving_time=moving_time, accel_time=moving_time * _ACCEL_FRACTION, blocking=False)

    def sleep(self, moving_time: float) -> None:
        self._moving_time = moving_time
        self._arm().go_to_sleep_pose(moving_time=moving_time, accel_time=moving_time * _ACCEL_FRACTION, blocking=False)

    def torque_off(self) -> None:
        self._arm()
        self._torque_enabled = False
        self._bot.core.robot_torque_enable("group", "arm", False)
        self._bot.core.robot_torque_enable("single", "gripper", False)

    def reboot_motors(self) -> None:
        self._arm()
        self._bot.core.robot_reboot_motors("group", "arm", True, smart_reboot=True)
        self._bot.core.robot_reboot_motors("single", "gripper", True)
        self._torque_enabled = True

    def joint_positions(self) -> np.ndarray:
        return np.asarray(self._arm().get_joint_positions(), np.float64)
