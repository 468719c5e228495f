"""The policy node: camera frames + a goal image in, one end-effector action per tick out.

A thin shell over mqe_policy.control.PolicyLoop (the logic) and mqe.runtime.OnnxPolicy (the model).
Refuses to start, with one line on stderr and exit status 2, when the model or the goal image is
unusable, or when one probe inference on the goal image gives an action that does not match the
contract (wrong length, NaN/Inf).
"""

from __future__ import annotations

import dataclasses
import math
import signal
import sys

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import SetParametersResult
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, qos_profile_sensor_data
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Float32, String
from std_srvs.srv import Trigger

from mqe.contract import ACTION_FRAME, ACTION_NAMES, PolicyArtifactError
from mqe.runtime import GoalImageError, OnnxPolicy, check_goal_image, load_goal_image
from mqe_policy import parameters, topics
from mqe_policy.goal_capture import GoalCapturer
from mqe_policy.control import ARM_PARKED, INFERENCE_FAILING, WAITING_FOR_FRAMES, ControlClock, Frame, LoopConfig, Mode, PolicyLoop
from mqe_policy.system import default_goal_dir, resolve_goal
from widowx_bridge.topics import ARM_STATUS, image_from_msg

NODE_NAME = "policy"

# Camera frames: best effort and depth 1, so the newest frame replaces any unread one (no backlog).
CAMERA_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=1,
    reliability=qos_profile_sensor_data.reliability,
    durability=qos_profile_sensor_data.durability,
)


def stamp_seconds(stamp) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


class PolicyNode(Node):
    def __init__(self, **kwargs):
        super().__init__(NODE_NAME, **kwargs)
        self.clock = None
        self.loop = None
        try:
            self._start()
        except BaseException:
            # A refusal leaves nothing behind (no publisher, no thread) for a later shutdown to trip on.
            self.destroy_node()
            raise

    def _start(self) -> None:
        # Every parameter and default from mqe_policy.parameters (LoopConfig's and NodeParameters' fields).
        p = {name: self.declare_parameter(name, default).value for name, default in parameters.policy_defaults().items()}
        self.goal_dir = self.declare_parameter("goal_dir", str(default_goal_dir())).value
        model, goal, threads, precision, provider, autostart = (p[name] for name in
                                                                ("model", "goal", "threads", "precision", "provider", "autostart"))
        config = LoopConfig(**{field.name: p[field.name] for field in dataclasses.fields(LoopConfig)})

        if not model:
            raise PolicyArtifactError("model: no policy given (set model:=DIR, a directory written by mqe-export)")
        self.policy = OnnxPolicy(model, threads=threads, precision=precision, provider=provider)
        goal_path = resolve_goal(goal, self.goal_dir)
        goal_rgb = load_goal_image(goal_path)
        self.policy.set_goal(goal_rgb)
        self.policy.probe(goal_rgb)  # a graph that cannot give a usable action is refused here, not every tick
        self.goal_path = goal_path
        if abs(self.policy.control_rate_hz - config.rate_hz) > 1e-6:
            self.get_logger().warning(
                f"rate_hz {config.rate_hz} differs from the {self.policy.control_rate_hz} Hz the policy was trained at"
            )

        self.action_pub = self.create_publisher(JointState, topics.ACTION, 10)
        self.feedback_pubs = {
            name: self.create_publisher(String if name in ("state", "reason") else Float32, topic, 10)
            for name, topic in (
                ("state", topics.STATE),
                ("reason", topics.STATE_REASON),
                ("steps_to_goal", topics.STEPS_TO_GOAL),
                ("latency_ms", topics.INFERENCE_LATENCY_MS),
                ("frame_latency_ms", topics.FRAME_LATENCY_MS),
                ("frame_age_s", topics.FRAME_AGE_S),
                ("rate_hz", topics.RATE_HZ),
                ("tick_period_ms", topics.TICK_PERIOD_MS),
            )
        }
        self.diagnostics_pub = self.create_publisher(DiagnosticArray, topics.DIAGNOSTICS, 10)

        self.loop = PolicyLoop(
            self.policy,
            config,
            publish_action=self._publish_action,
            clock=lambda: self.get_clock().now().nanoseconds * 1e-9,
            log=self.get_logger().info,
            mode=Mode.RUNNING if autostart else Mode.STOPPED,
        )
        self.create_subscription(Image, topics.CAMERA_IMAGE, self._on_frame, CAMERA_QOS)
        self.create_subscription(Image, topics.GOAL_IMAGE, self._on_goal_image, 1)
        self.create_subscription(DiagnosticStatus, ARM_STATUS, self._on_arm_status, 10)
        self.create_service(Trigger, topics.START, self._service(self.loop.start))
        self.create_service(Trigger, topics.PAUSE, self._service(self.loop.pause))
        self.create_service(Trigger, topics.STOP, self._service(self.loop.stop))
        self.capturer = GoalCapturer(lambda: self.goal_dir, lambda: self.goal_path, image_from_msg)
        self.create_service(Trigger, topics.CAPTURE_GOAL, self.capturer.handle_trigger)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        # The control clock is a thread of its own, not an executor timer: the executor only moves
        # messages, and however late it runs, the ticks stay on their deadlines (control.ControlClock).
        self.clock = ControlClock(1.0 / config.rate_hz, self._on_tick, name="policy-clock").start()
        self.diagnostics_timer = self.create_timer(1.0, self._publish_diagnostics)
        self.get_logger().info(
            f"policy {model} ({self.policy.metadata['agent'] or 'agent'}, {self.policy.image_size}px, "
            f"{self.policy.precision} on {self.policy.provider}, "
            f"camera {self.policy.camera}), goal {goal_path}, {config.rate_hz} Hz, {self.loop.mode.value}"
        )

    # --- callbacks ------------------------------------------------------------------------------
    def _on_frame(self, msg: Image) -> None:
        self.capturer.latest = msg  # policy/capture_goal saves the newest frame
        self.loop.on_frame(Frame(stamp=stamp_seconds(msg.header.stamp), decode=lambda: image_from_msg(msg)))

    def _on_goal_image(self, msg: Image) -> None:
        try:
            self.loop.set_goal(check_goal_image(image_from_msg(msg), topics.GOAL_IMAGE))
            self.goal_path = f"from {topics.GOAL_IMAGE}"
        except ValueError as error:
            self.get_logger().error(f"{topics.GOAL_IMAGE}: ignored ({error})")

    def _on_arm_status(self, msg: DiagnosticStatus) -> None:
        # widowx_bridge's arm/status carries the controller's state; "parked" (after torque off, home,
        # sleep) means the arm ignores actions until arm/reset.
        state = next((value.value for value in msg.values if value.key == "state"), "")
        self.loop.set_arm_parked(f"arm parked: {msg.message}" if state == "parked" else "")

    def _on_set_parameters(self, params) -> SetParametersResult:
        for param in params:
            if param.name == "goal":
                try:
                    path = resolve_goal(param.value, self.goal_dir)
                    rgb = load_goal_image(path)
                except GoalImageError as error:
                    return SetParametersResult(successful=False, reason=str(error))
                self.loop.set_goal(rgb)
                self.goal_path = path
            elif param.name in parameters.FIXED_AT_STARTUP:
                return SetParametersResult(successful=False, reason=f"{param.name} is fixed at start-up; restart the node")
        return SetParametersResult(successful=True)

    def _service(self, transition):
        def handle(request, response):
            response.message = transition()
            response.success = True
            return response

        return handle

    def _on_tick(self) -> None:
        self.loop.tick()
        feedback = self.loop.feedback()
        try:
            self.feedback_pubs["state"].publish(String(data=feedback.state))
            self.feedback_pubs["reason"].publish(String(data=feedback.reason))
            for name in ("steps_to_goal", "latency_ms", "frame_latency_ms", "frame_age_s", "rate_hz", "tick_period_ms"):
                self.feedback_pubs[name].publish(Float32(data=float(getattr(feedback, name))))
        except Exception:  # noqa: BLE001
            # Ctrl-C: rclpy's signal handler shuts the context down at once, on another thread, while
            # this clock thread may be between a tick and the node's destroy_node (RCLError:
            # "publisher's context is invalid"). Feedback after shutdown has no reader; anything else is a bug.
            if self.context.ok():
                raise

    def _publish_action(self, action: np.ndarray, stamp: float) -> None:
        msg = JointState()
        msg.header.stamp.sec = int(math.floor(stamp))
        msg.header.stamp.nanosec = min(int(round((stamp - math.floor(stamp)) * 1e9)), 999_999_999)
        msg.header.frame_id = ACTION_FRAME  # deltas are in the arm base frame (mqe.contract)
        msg.name = list(ACTION_NAMES)
        msg.position = [float(value) for value in action]
        try:
            self.action_pub.publish(msg)
        except Exception:  # noqa: BLE001  the same shutdown race as _on_tick's, on the inference worker
            if self.context.ok():
                raise

    def _publish_diagnostics(self) -> None:
        feedback = self.loop.feedback()
        status = DiagnosticStatus(name=f"{self.get_name()}: mqe policy", hardware_id=str(self.policy.artifact_dir))
        if feedback.state == "running":
            status.level, status.message = DiagnosticStatus.OK, "running"
        elif feedback.state in (WAITING_FOR_FRAMES, ARM_PARKED):
            status.level, status.message = DiagnosticStatus.WARN, f"actions held: {feedback.reason}"
        elif feedback.state == INFERENCE_FAILING:
            status.level, status.message = DiagnosticStatus.ERROR, f"actions held: {feedback.reason}"
        else:
            status.level, status.message = DiagnosticStatus.OK, feedback.state
        status.values = [KeyValue(key=key, value=str(value)) for key, value in vars(feedback).items()]
        status.values.append(KeyValue(key="ticks_missed_late", value=str(self.clock.missed)))
        status.values.append(KeyValue(key="goal", value=str(self.goal_path)))
        status.values.append(KeyValue(key="precision", value=self.policy.precision))
        status.values.append(KeyValue(key="provider", value=self.policy.provider))
        array = DiagnosticArray(status=[status])
        array.header.stamp = self.get_clock().now().to_msg()
        self.diagnostics_pub.publish(array)

    def destroy_node(self):
        if self.clock is not None:
            self.clock.stop()
        if self.loop is not None:
            self.loop.close()
        return super().destroy_node()


def startup_error_line(error: Exception) -> str:
    """One line for any start-up failure. ValueErrors (PolicyArtifactError, GoalImageError, bad
    parameter values) carry their own message; anything else (a goal the model encodes to NaN, an
    onnxruntime failure) is named by its type."""
    text = " ".join(str(error).split()) or type(error).__name__
    return text if isinstance(error, ValueError) else f"{type(error).__name__}: {text}"


def ignore_further_interrupts() -> None:
    """Shutdown must complete: without a terminal (systemd, docker run without -t) `ros2 launch`
    forwards SIGINT to its processes as well as the signal reaching them directly (launch's
    execute_local.py: send_sigint=... or context.noninteractive), so a second SIGINT arrives while
    the node is being destroyed, and would raise KeyboardInterrupt in the middle of it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def main(args=None) -> int:
    rclpy.init(args=args)
    try:
        try:
            node = PolicyNode()
        except Exception as error:  # noqa: BLE001  every refusal: one line, exit 2, no traceback
            print(f"{NODE_NAME}: refusing to start: {startup_error_line(error)}", file=sys.stderr)
            return 2
        executor = SingleThreadedExecutor()  # frames, goal, services, diagnostics; the clock has its own thread
        executor.add_node(node)
        try:
            executor.spin()
        except (KeyboardInterrupt, ExternalShutdownException):
            pass
        finally:
            ignore_further_interrupts()
            node.destroy_node()
    finally:
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
