"""Apply policy actions to an arm the way BridgeData V2 was collected. Plain Python, no ROS.

One action = (dx, dy, dz, droll, dpitch, dyaw, gripper) in mqe.contract's convention. Each step:
  1. reject NaN/Inf/wrong-length actions (counted; topics.action_from_joint_state decodes them),
  2. clip every delta component (default +-0.05 m, +-0.25 rad),
  3. integrate on the last *commanded* end-effector pose, never on the measured one, so servo
     tracking error does not accumulate: position += (dx, dy, dz); orientation R <- dR @ R with
     dR = Rz(dyaw) Ry(dpitch) Rx(droll), i.e. a rotation about the end-effector position with axes
     in the base frame,
  4. clip the target position to the workspace box,
  5. (5-DOF arms) project the orientation onto what the arm can reach (kinematics.reachable_pose),
  6. send it to the backend without blocking; if IK fails the step is skipped (nothing moves, the
     commanded pose stays), counted and logged,
  7. gripper: absolute command, open when >= gripper_threshold; only state changes reach the arm.

Orientation convention (Bridge's widowx_controller): the state's (roll, pitch, yaw) = (0, 0, 0)
means the gripper points straight down, i.e. ee_gripper_link rotation = R(rpy) @ NEUTRAL_ROTATION.

Watchdog: if no valid action arrives for `command_timeout` seconds the controller holds (commands
nothing, so the position-controlled arm stays at its last commanded pose) and resumes with the
next valid action. After home, sleep or torque-off the controller is *parked*: actions are ignored
(counted) until `reset` brings the arm back to the start pose, so a policy that keeps publishing
can never drag the arm from the home pose (outside the workspace) or re-energise it after an
emergency stop.

Reset: the move to the start pose takes reset_moving_time; actions that arrive before it has
finished are ignored (counted), since on the real arm the next step would cut the slow move short.
When it has finished the backend is switched back to the step profile (set_moving_time), between
moves rather than on the first step.

Effort guard (bridge_data_robot's widowx_controller checks joint efforts after each step): when a
joint's measured effort exceeds model.effort_limits (checked before each step and on every watchdog
tick), the arm holds its measured pose (backend.hold_position, so it stops pushing) and is parked
with the reason; reset moves it away again.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from typing import Sequence

import numpy as np

from mqe import robot
from mqe.robot import pose_from_state, rotation_from_rpy, state_from_pose
from mqe.contract import ACTION_DIM, GRIPPER_INDEX

from widowx_bridge.backends.base import ArmBackend
from widowx_bridge.kinematics import reachable_pose

NEUTRAL_ROTATION = robot.NEUTRAL_ROTATION


@dataclasses.dataclass(frozen=True)
class ControlConfig:
    max_translation_step: float = robot.MAX_TRANSLATION_STEP  # m, per-component clip of dx, dy, dz
    max_rotation_step: float = robot.MAX_ROTATION_STEP  # rad, per-component clip of droll, dpitch, dyaw
    workspace_low: tuple[float, float, float] = robot.WORKSPACE_LOW  # m, x y z
    workspace_high: tuple[float, float, float] = robot.WORKSPACE_HIGH  # m, x y z
    gripper_threshold: float = 0.5  # gripper command >= threshold opens, below closes
    command_timeout: float = 0.5  # s without a valid action before the arm holds
    min_action_interval: float = 0.1  # s, actions arriving faster are dropped (bounds the speed)
    step_moving_time: float = 0.25  # s the servos take for one step: bridge_data_robot's 1.25 x the 0.2 s period
    reset_moving_time: float = 2.0  # s for the long moves: start pose, home, sleep
    start_pose: tuple[float, ...] = robot.START_POSE  # x y z m, roll pitch yaw rad
    start_gripper: float = robot.START_GRIPPER  # 1 open .. 0 closed

    def __post_init__(self):
        low, high = np.asarray(self.workspace_low, float), np.asarray(self.workspace_high, float)
        if low.shape != (3,) or high.shape != (3,) or not np.all(low < high):
            raise ValueError(f"workspace: expected 3 lows below 3 highs, got {self.workspace_low} / {self.workspace_high}")
        if len(self.start_pose) != 6 or not all(math.isfinite(v) for v in self.start_pose):
            raise ValueError(f"start_pose: expected 6 finite numbers (x y z roll pitch yaw), got {self.start_pose}")
        if not np.all((low <= self.start_pose[:3]) & (np.asarray(self.start_pose[:3]) <= high)):
            raise ValueError(f"start_pose: position {self.start_pose[:3]} is outside the workspace {low}..{high}")
        for name in ("max_translation_step", "max_rotation_step", "command_timeout", "step_moving_time",
                     "reset_moving_time"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name}: must be > 0, got {getattr(self, name)}")
        if self.min_action_interval < 0 or not 0.0 < self.gripper_threshold < 1.0:
            raise ValueError("min_action_interval must be >= 0 and gripper_threshold in (0, 1)")


class ArmState(enum.Enum):
    RESETTING = "resetting"  # moving to the start pose: actions ignored until the move has finished
    WAITING = "waiting"  # running, no action received yet since start or reset
    ACTIVE = "active"  # actions are arriving and being applied
    HOLDING = "holding"  # watchdog: no action for command_timeout, arm holds its pose
    PARKED = "parked"  # after home / sleep / torque off / effort limit: actions ignored until reset


@dataclasses.dataclass
class ControlCounters:
    applied: int = 0  # actions that moved the arm
    rejected: int = 0  # NaN/Inf/wrong length/wrong names
    ik_failures: int = 0  # steps skipped because IK found no solution within the joint limits
    ignored_parked: int = 0  # actions that arrived while parked
    ignored_resetting: int = 0  # actions that arrived before the reset move had finished
    rate_limited: int = 0  # actions that arrived sooner than min_action_interval after the last
    clipped_steps: int = 0  # actions with at least one delta component clipped
    workspace_clips: int = 0  # targets moved back inside the workspace
    watchdog_holds: int = 0  # times the watchdog stopped the arm
    effort_holds: int = 0  # times a joint effort over its limit stopped the arm


@dataclasses.dataclass(frozen=True)
class StepResult:
    status: str  # "applied" | "rejected" | "ik_failure" | "parked" | "resetting" | "rate_limited" | "effort_limit"
    commanded_pose: np.ndarray  # 4x4, the pose the arm is commanded to after this step
    message: str = ""


class ArmController:
    """The control logic between decoded actions and an ArmBackend; every method takes `now` (s,
    a monotonic clock) so it is deterministic under test."""

    def __init__(self, backend: ArmBackend, config: ControlConfig = ControlConfig()):
        self.backend = backend
        self.config = config
        self.counters = ControlCounters()
        self.state = ArmState.WAITING
        self._low = np.asarray(config.workspace_low, np.float64)
        self._high = np.asarray(config.workspace_high, np.float64)
        self.commanded_pose = reachable_pose(backend.model, pose_from_state(config.start_pose))
        self.gripper_open = config.start_gripper >= config.gripper_threshold
        self._last_action_time: float | None = None
        self._reset_done_at = 0.0
        self.park_reason = ""
        self.last_message = ""

    # -- actions ---------------------------------------------------------------------------
    def reject(self, reason: str) -> StepResult:
        """Count an action that could not be decoded (the node calls this for bad messages)."""
        self.counters.rejected += 1
        self.last_message = f"rejected action: {reason}"
        return StepResult("rejected", self.commanded_pose.copy(), self.last_message)

    def apply_action(self, action: Sequence[float], now: float) -> StepResult:
        values = np.asarray(action, np.float64).reshape(-1) if _is_numeric(action) else None
        if values is None or values.shape != (ACTION_DIM,) or not np.all(np.isfinite(values)):
            return self.reject(f"expected {ACTION_DIM} finite numbers, got {action!r}")
        if self.state is ArmState.RESETTING and not self._finish_reset(now):
            self.counters.ignored_resetting += 1
            return StepResult("resetting", self.commanded_pose.copy(), "resetting: the start-pose move has not finished")
        if self.state is ArmState.PARKED:
            self.counters.ignored_parked += 1
            return StepResult("parked", self.commanded_pose.copy(), f"parked: call reset to resume ({self.park_reason})")
        if self._effort_exceeded():
            return StepResult("effort_limit", self.commanded_pose.copy(), self.last_message)
        if self._last_action_time is not None and now - self._last_action_time < self.config.min_action_interval:
            self.counters.rate_limited += 1
            return StepResult("rate_limited", self.commanded_pose.copy(), "action arrived too soon after the last")
        self._last_action_time = now
        self.state = ArmState.ACTIVE

        delta = values[:GRIPPER_INDEX].copy()
        limits = np.array([self.config.max_translation_step] * 3 + [self.config.max_rotation_step] * 3)
        clipped = np.clip(delta, -limits, limits)
        if np.any(clipped != delta):
            self.counters.clipped_steps += 1
        target = self.commanded_pose.copy()
        target[:3, 3] += clipped[:3]
        target[:3, :3] = rotation_from_rpy(*clipped[3:6]) @ target[:3, :3]
        inside = np.clip(target[:3, 3], self._low, self._high)
        if np.any(inside != target[:3, 3]):
            self.counters.workspace_clips += 1
            target[:3, 3] = inside
        target = reachable_pose(self.backend.model, target)

        self._set_gripper(values[GRIPPER_INDEX] >= self.config.gripper_threshold)
        if not self.backend.command_ee_pose(target, self.config.step_moving_time):
            self.counters.ik_failures += 1
            self.last_message = f"IK failed for target position {np.round(target[:3, 3], 4).tolist()}; step skipped"
            return StepResult("ik_failure", self.commanded_pose.copy(), self.last_message)
        self.commanded_pose = target
        self.counters.applied += 1
        return StepResult("applied", target.copy())

    def _set_gripper(self, open_: bool) -> None:
        if open_ != self.gripper_open:
            self.backend.set_gripper(open_)
            self.gripper_open = open_

    # -- watchdog --------------------------------------------------------------------------
    def check_watchdog(self, now: float) -> ArmState:
        """Call periodically: ends a finished reset, parks on an effort over the limit, and switches
        ACTIVE -> HOLDING after command_timeout without actions."""
        if self.state is ArmState.RESETTING:
            self._finish_reset(now)
        if self.state is not ArmState.PARKED:
            self._effort_exceeded()
        if self.state is ArmState.ACTIVE and now - self._last_action_time > self.config.command_timeout:
            self.state = ArmState.HOLDING
            self.counters.watchdog_holds += 1
        return self.state

    def _finish_reset(self, now: float) -> bool:
        if now < self._reset_done_at:
            return False
        self.backend.set_moving_time(self.config.step_moving_time)
        self.state = ArmState.WAITING
        return True

    def _effort_exceeded(self) -> bool:
        efforts = self.backend.joint_efforts()
        if efforts is None:
            return False
        over = np.abs(efforts) > self.backend.model.effort_limits
        if not np.any(over):
            return False
        joint = int(np.argmax(np.abs(efforts) - self.backend.model.effort_limits))
        name = self.backend.model.joint_names[joint]
        self.backend.hold_position()
        self.counters.effort_holds += 1
        self.park_reason = (f"effort limit: {name} at {abs(efforts[joint]):.0f} > {self.backend.model.effort_limits[joint]:.0f}"
                            "; holding the measured pose")
        self.last_message = self.park_reason
        self.state = ArmState.PARKED
        return True

    # -- operator commands -----------------------------------------------------------------
    def reset(self, now: float) -> bool:
        """Move to the start pose (slowly) with the gripper open; actions are accepted again once the
        move has finished (reset_moving_time after `now`)."""
        start = reachable_pose(self.backend.model, pose_from_state(self.config.start_pose))
        if not self.backend.command_ee_pose(start, self.config.reset_moving_time):
            self.last_message = "reset: the arm refused the start pose (IK failure, or torque is off: reboot motors first)"
            return False
        self.commanded_pose = start
        self.backend.set_gripper(self.config.start_gripper >= self.config.gripper_threshold)
        self.gripper_open = self.config.start_gripper >= self.config.gripper_threshold
        self.state = ArmState.RESETTING
        self._reset_done_at = now + self.config.reset_moving_time
        self._last_action_time = None
        self.park_reason = ""
        return True

    def home(self) -> None:
        self.state, self.park_reason = ArmState.PARKED, "home"
        self.backend.home(self.config.reset_moving_time)

    def sleep(self) -> None:
        self.state, self.park_reason = ArmState.PARKED, "sleep"
        self.backend.sleep(self.config.reset_moving_time)

    def torque_off(self) -> None:
        self.state, self.park_reason = ArmState.PARKED, "torque off"
        self.backend.torque_off()

    def reboot_motors(self) -> None:
        """Reboot the servos (clears hardware errors); the arm stays parked until reset."""
        self.state, self.park_reason = ArmState.PARKED, "motors rebooted"
        self.backend.reboot_motors()

    def status(self) -> dict[str, str]:
        """Key/values for the diagnostic status message."""
        values = {"state": self.state.value, "gripper_open": str(self.gripper_open)}
        values.update({name: str(value) for name, value in dataclasses.asdict(self.counters).items()})
        values["commanded_state"] = " ".join(f"{v:.4f}" for v in state_from_pose(self.commanded_pose))
        values["last_message"] = self.last_message
        return values


def _is_numeric(action) -> bool:
    try:
        np.asarray(action, np.float64)
    except (TypeError, ValueError):
        return False
    return True
