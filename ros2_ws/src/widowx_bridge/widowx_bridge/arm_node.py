"""ROS 2 node around ArmController: actions in, commanded pose and status out, operator services.

A thin shell: all decisions live in control.ArmController (tested without ROS). Construct it
in-process with `ArmNode(parameter_overrides={"backend": "sim"})` or run `arm_node` /
`python -m widowx_bridge.arm_node --ros-args --params-file config/arm.yaml`.
"""

from __future__ import annotations

import sys
import time

import numpy as np
from diagnostic_msgs.msg import DiagnosticStatus, KeyValue
from geometry_msgs.msg import PoseStamped
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy, HistoryPolicy
from sensor_msgs.msg import JointState
from std_msgs.msg import Float32
from std_srvs.srv import Trigger

from widowx_bridge import topics
from widowx_bridge.backends import make_backend
from widowx_bridge.backends.base import ArmBackend
from widowx_bridge.control import ArmController, ArmState, ControlConfig, StepResult
from widowx_bridge.params import as_parameter_list, declare_all, refuse_changes_at_run_time, run_node

NODE_NAME = "widowx_arm"

# Declared defaults: the controller's from ControlConfig (robot constants from mqe.robot), defined
# there once; config/arm.yaml repeats them for operators (a test keeps the two equal).
_CONTROL = ControlConfig()
DEFAULTS = {
    "backend": "sim",  # "sim" (kinematic arm, runs anywhere) or "interbotix" (robot PC)
    "robot_model": "wx250s",  # "wx250s" (6-DOF, the Bridge arm) or "wx250" (5-DOF)
    "max_translation_step": _CONTROL.max_translation_step,  # m, per-step clip of each of dx, dy, dz
    "max_rotation_step": _CONTROL.max_rotation_step,  # rad, per-step clip of each of droll, dpitch, dyaw
    "workspace_low": list(_CONTROL.workspace_low),  # m, x y z lower corner of the target box (base frame)
    "workspace_high": list(_CONTROL.workspace_high),  # m, x y z upper corner
    "gripper_threshold": _CONTROL.gripper_threshold,  # gripper command >= threshold opens, below closes
    "command_timeout": _CONTROL.command_timeout,  # s without a valid action -> hold
    "min_action_interval": _CONTROL.min_action_interval,  # s, faster actions are dropped (keep below the policy period)
    "step_moving_time": _CONTROL.step_moving_time,  # s the servos take per action (bridge_data_robot: 1.25 x the 0.2 s period)
    "reset_moving_time": _CONTROL.reset_moving_time,  # s for reset / home / sleep moves
    "start_pose": list(_CONTROL.start_pose),  # x y z m, roll pitch yaw rad (0 = gripper down)
    "start_gripper": _CONTROL.start_gripper,  # gripper at the start pose: 1 open .. 0 closed
    "reset_on_start": True,  # move to the start pose when the node starts
    "status_rate_hz": 10.0,  # watchdog checks and status/pose publishing
    "gripper_pressure": 0.5,  # interbotix only: fraction of the gripper's effort range
    "driver_timeout": 30.0,  # interbotix only: s to wait for the xs_sdk driver's services at start-up
    "frame_id": "",  # frame of the commanded pose; empty = "<robot_model>/base_link"
}

# Parameters the node applies while it runs (each needs its own on-set handling); every other one is
# read once at start-up and a change is refused (params.refuse_changes_at_run_time).
RUNTIME_SETTABLE: tuple[str, ...] = ()


class ArmNode(Node):
    def __init__(self, *, backend: ArmBackend | None = None, parameter_overrides=None, **node_kwargs):
        self._backend_up = False
        super().__init__(NODE_NAME, parameter_overrides=as_parameter_list(parameter_overrides), **node_kwargs)
        p = declare_all(self, DEFAULTS)
        refuse_changes_at_run_time(self, [name for name in DEFAULTS if name not in RUNTIME_SETTABLE])
        config = ControlConfig(
            max_translation_step=p["max_translation_step"], max_rotation_step=p["max_rotation_step"],
            workspace_low=tuple(p["workspace_low"]), workspace_high=tuple(p["workspace_high"]),
            gripper_threshold=p["gripper_threshold"], command_timeout=p["command_timeout"],
            min_action_interval=p["min_action_interval"], step_moving_time=p["step_moving_time"],
            reset_moving_time=p["reset_moving_time"], start_pose=tuple(p["start_pose"]),
            start_gripper=p["start_gripper"],
        )
        if backend is None:
            options = ({"gripper_pressure": p["gripper_pressure"], "driver_timeout": p["driver_timeout"]}
                       if p["backend"] == "interbotix" else {})
            backend = make_backend(p["backend"], p["robot_model"], **options)
        self.backend = backend
        self.backend.startup()
        self._backend_up = True
        self.controller = ArmController(backend, config)
        self.frame_id = p["frame_id"] or f"{backend.model.name}/base_link"
        if p["reset_on_start"] and not self.controller.reset(time.monotonic()):
            self.get_logger().error(self.controller.last_message)

        latest_only = QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT, history=HistoryPolicy.KEEP_LAST)
        self.create_subscription(JointState, topics.ACTION, self._on_action, latest_only)
        self.pose_publisher = self.create_publisher(PoseStamped, topics.ARM_COMMANDED_POSE, 10)
        self.gripper_publisher = self.create_publisher(Float32, topics.ARM_COMMANDED_GRIPPER, 10)
        self.joint_publisher = self.create_publisher(JointState, topics.ARM_JOINT_STATES, 10)
        self.status_publisher = self.create_publisher(DiagnosticStatus, topics.ARM_STATUS, 10)
        for name, handler in [(topics.ARM_HOME, self.controller.home), (topics.ARM_SLEEP, self.controller.sleep),
                              (topics.ARM_TORQUE_OFF, self.controller.torque_off),
                              (topics.ARM_REBOOT_MOTORS, self.controller.reboot_motors),
                              (topics.ARM_RESET, self.reset_arm)]:
            self.create_service(Trigger, name, self._trigger_handler(name, handler))
        self.create_timer(1.0 / p["status_rate_hz"], self._on_timer)
        self._last_logged_state = self.controller.state
        self._publish_state()
        self.get_logger().info(
            f"arm ready: backend={p['backend']} model={backend.model.name} workspace "
            f"{config.workspace_low}..{config.workspace_high} m, command_timeout {config.command_timeout} s"
        )

    def reset_arm(self) -> bool:
        """arm/reset: the start pose, slowly, then actions again (the simulated tabletop also resets its scene)."""
        return self.controller.reset(time.monotonic())

    def _on_action(self, message: JointState) -> StepResult:
        try:
            action = topics.action_from_joint_state(message.name, message.position)
        except topics.ActionMessageError as error:
            result = self.controller.reject(str(error))
            self.get_logger().warning(result.message, throttle_duration_sec=1.0)
            return result
        result = self.controller.apply_action(action, time.monotonic())
        if result.status == "ik_failure":
            self.get_logger().warning(result.message, throttle_duration_sec=1.0)
        elif result.status in ("parked", "effort_limit"):
            self.get_logger().warning(f"action ignored: {result.message}", throttle_duration_sec=5.0)
        elif result.status == "rate_limited":
            self.get_logger().warning("actions arrive faster than min_action_interval; extra ones are dropped",
                                      throttle_duration_sec=5.0)
        self._publish_state()
        return result

    def _on_timer(self) -> None:
        state = self.controller.check_watchdog(time.monotonic())
        if state is not self._last_logged_state:
            self.get_logger().info(f"arm state: {self._last_logged_state.value} -> {state.value}")
            self._last_logged_state = state
        self._publish_state()

    def _publish_state(self) -> None:
        stamp = self.get_clock().now().to_msg()
        pose = PoseStamped()
        pose.header.stamp, pose.header.frame_id = stamp, self.frame_id
        position, quaternion = self.controller.commanded_pose[:3, 3], quaternion_from_rotation(self.controller.commanded_pose[:3, :3])
        pose.pose.position.x, pose.pose.position.y, pose.pose.position.z = (float(v) for v in position)
        (pose.pose.orientation.x, pose.pose.orientation.y, pose.pose.orientation.z,
         pose.pose.orientation.w) = (float(v) for v in quaternion)
        self.pose_publisher.publish(pose)
        self.gripper_publisher.publish(Float32(data=1.0 if self.controller.gripper_open else 0.0))
        joints = JointState()
        joints.header.stamp = stamp
        joints.name = list(self.backend.model.joint_names)
        joints.position = [float(v) for v in self.backend.joint_positions()]
        self.joint_publisher.publish(joints)
        status = DiagnosticStatus(name=f"{self.get_name()}: arm", hardware_id=self.backend.model.name)
        state = self.controller.state
        status.level = DiagnosticStatus.OK if state in (ArmState.ACTIVE, ArmState.WAITING) else DiagnosticStatus.WARN
        status.message = {
            ArmState.RESETTING: "resetting: moving to the start pose, actions ignored until it has finished",
            ArmState.WAITING: "waiting for actions",
            ArmState.ACTIVE: "applying actions",
            ArmState.HOLDING: "holding: no action within command_timeout",
            ArmState.PARKED: f"parked: call reset to accept actions ({self.controller.park_reason})",
        }[state]
        status.values = [KeyValue(key=k, value=v) for k, v in self.controller.status().items()]
        self.status_publisher.publish(status)

    def _trigger_handler(self, name: str, handler):
        def callback(request, response):
            outcome = handler()
            response.success = outcome is not False
            response.message = f"{name}: done" if response.success else f"{name}: {self.controller.last_message}"
            self.get_logger().info(response.message)
            self._publish_state()
            return response

        return callback

    def destroy_node(self):
        try:
            if self._backend_up:
                self._backend_up = False
                self.backend.shutdown()
        finally:  # the node's own entities go whatever the backend's shutdown did
            super().destroy_node()


def quaternion_from_rotation(rotation: np.ndarray) -> np.ndarray:
    """Unit quaternion (x, y, z, w) of a rotation matrix (Shepperd's method)."""
    m = rotation
    trace = m[0, 0] + m[1, 1] + m[2, 2]
    if trace > 0:
        s = 2.0 * np.sqrt(trace + 1.0)
        q = [(m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s, 0.25 * s]
    elif m[0, 0] > m[1, 1] and m[0, 0] > m[2, 2]:
        s = 2.0 * np.sqrt(1.0 + m[0, 0] - m[1, 1] - m[2, 2])
        q = [0.25 * s, (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s, (m[2, 1] - m[1, 2]) / s]
    elif m[1, 1] > m[2, 2]:
        s = 2.0 * np.sqrt(1.0 + m[1, 1] - m[0, 0] - m[2, 2])
        q = [(m[0, 1] + m[1, 0]) / s, 0.25 * s, (m[1, 2] + m[2, 1]) / s, (m[0, 2] - m[2, 0]) / s]
    else:
        s = 2.0 * np.sqrt(1.0 + m[2, 2] - m[0, 0] - m[1, 1])
        q = [(m[0, 2] + m[2, 0]) / s, (m[1, 2] + m[2, 1]) / s, 0.25 * s, (m[1, 0] - m[0, 1]) / s]
    q = np.asarray(q)
    return q / np.linalg.norm(q)


def main(args=None) -> int:
    return run_node(ArmNode, "arm_node", (RuntimeError, ValueError), args)


if __name__ == "__main__":
    sys.exit(main())
