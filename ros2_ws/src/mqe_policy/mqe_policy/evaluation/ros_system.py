"""The running system as mqe-eval drives it over ROS 2: the arm and camera keep running; each run
starts a fresh policy node process for its method (so methods swap without restarting the arm),
starts it through policy/start, lets it act for the task's time limit (counted in actions published),
stops it through policy/stop and ends the process. Every run is recorded (recorder.Recorder).

Simulator (target sim): before a run the arm node's parameters sim_task / sim_seed are set and
arm/reset resets the scene to that task instance; after it, sim/score (std_srvs/Trigger) answers
with JSON {"task", "seed", "points", "max_points", "details"}.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import rclpy
from diagnostic_msgs.msg import DiagnosticStatus
from geometry_msgs.msg import PoseStamped
from rcl_interfaces.msg import Parameter as ParameterMsg, ParameterType, ParameterValue
from rcl_interfaces.srv import SetParameters
from rclpy.executors import MultiThreadedExecutor
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Float32, String
from std_srvs.srv import Trigger

from mqe_policy import topics
from mqe_policy.evaluation.recorder import Recorder
from mqe_policy.evaluation.session import Run
from mqe_policy.system import config_dir
from widowx_bridge import topics as arm_topics

ARM_NODE = "widowx_arm"
RELIABLE = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=100, reliability=ReliabilityPolicy.RELIABLE)
# Frames: best effort (matches the camera's sensor-data publisher) with room for a burst.
FRAMES = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=30, reliability=qos_profile_sensor_data.reliability)
RECORDED_TOPICS = {
    topics.CAMERA_IMAGE: (Image, "sensor_msgs/msg/Image", FRAMES),
    topics.ACTION: (JointState, "sensor_msgs/msg/JointState", RELIABLE),
    topics.STEPS_TO_GOAL: (Float32, "std_msgs/msg/Float32", RELIABLE),
    topics.STATE: (String, "std_msgs/msg/String", RELIABLE),
    arm_topics.ARM_STATUS: (DiagnosticStatus, "diagnostic_msgs/msg/DiagnosticStatus", RELIABLE),
    arm_topics.ARM_COMMANDED_POSE: (PoseStamped, "geometry_msgs/msg/PoseStamped", RELIABLE),
    arm_topics.ARM_COMMANDED_GRIPPER: (Float32, "std_msgs/msg/Float32", RELIABLE),
}


def _end_with_parent() -> None:
    """In the policy process before exec: SIGINT it when mqe-eval dies (killed, crashed), so no
    orphaned policy keeps driving the arm (Linux prctl PR_SET_PDEATHSIG; elsewhere a no-op)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGINT)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class SystemUnavailable(RuntimeError):
    """A node or service of the running system did not answer."""


class RosSystem:
    def __init__(self, rate_hz: float = 5.0, policy_parameters: dict | None = None, log_dir: str | Path | None = None,
                 startup_timeout: float = 60.0, goal_for_sim=None, context=None):
        self.rate_hz = rate_hz
        self.policy_parameters = dict(policy_parameters or {})
        self.log_dir = Path(log_dir or tempfile.mkdtemp(prefix="mqe-eval-"))
        self.startup_timeout = startup_timeout
        self.goal_for_sim = goal_for_sim  # (sim_task, seed) -> PNG path; the sim's goal renderer
        self.context = context
        self.node = Node("mqe_eval", context=context)
        self.recorder = Recorder(self.node, RECORDED_TOPICS)
        self._actions = 0
        self._action_lock = threading.Lock()
        self.node.create_subscription(JointState, topics.ACTION, self._count_action, RELIABLE)
        self.executor = MultiThreadedExecutor(num_threads=3, context=context)
        self.executor.add_node(self.node)
        self._spinner = threading.Thread(target=self.executor.spin, daemon=True)
        self._spinner.start()

    def _count_action(self, _msg) -> None:
        with self._action_lock:
            self._actions += 1

    def close(self) -> None:
        self.executor.shutdown(timeout_sec=2.0)
        self.node.destroy_node()

    # --- services -------------------------------------------------------------------------------
    def _call(self, service_type, name: str, request, timeout: float = 15.0):
        client = self.node.create_client(service_type, name)
        try:
            if not client.wait_for_service(timeout_sec=timeout):
                raise SystemUnavailable(f"service {self.node.resolve_service_name(name)} is not available (is the system running?)")
            future = client.call_async(request)
            deadline = time.monotonic() + timeout
            while not future.done():
                if time.monotonic() > deadline:
                    raise SystemUnavailable(f"service {name} did not answer within {timeout} s")
                time.sleep(0.01)
            return future.result()
        finally:
            self.node.destroy_client(client)

    def trigger(self, name: str, timeout: float = 15.0) -> Trigger.Response:
        response = self._call(Trigger, name, Trigger.Request(), timeout)
        if not response.success:
            raise SystemUnavailable(f"{name}: {response.message}")
        return response

    def _set_arm_parameters(self, values: dict) -> None:
        request = SetParameters.Request()
        for name, value in values.items():
            if isinstance(value, int):
                parameter_value = ParameterValue(type=ParameterType.PARAMETER_INTEGER, integer_value=value)
            else:
                parameter_value = ParameterValue(type=ParameterType.PARAMETER_STRING, string_value=str(value))
            request.parameters.append(ParameterMsg(name=name, value=parameter_value))
        response = self._call(SetParameters, f"{ARM_NODE}/set_parameters", request)
        failed = [f"{p.name}: {r.reason}" for p, r in zip(request.parameters, response.results) if not r.successful]
        if failed:
            raise SystemUnavailable(f"{ARM_NODE}: parameters refused ({'; '.join(failed)})")

    # --- the session's System interface ---------------------------------------------------------
    def reset(self, run: Run) -> None:
        if run.task.sim_task is not None:
            self._set_arm_parameters({"sim_task": run.task.sim_task, "sim_seed": int(run.seed)})
        self.trigger(arm_topics.ARM_RESET, timeout=30.0)

    def sim_score(self, run: Run) -> dict:
        response = self.trigger(arm_topics.SIM_SCORE)
        try:
            score = json.loads(response.message)
        except json.JSONDecodeError as error:
            raise SystemUnavailable(f"{arm_topics.SIM_SCORE}: answer is not JSON ({error.msg}): {response.message[:200]!r}") from None
        if score.get("task") != run.task.sim_task or score.get("seed") != run.seed:
            raise SystemUnavailable(f"{arm_topics.SIM_SCORE}: scored {score.get('task')}/{score.get('seed')}, expected {run.task.sim_task}/{run.seed}")
        return score

    def goal_path(self, run: Run) -> Path:
        if run.task.goal_image is not None:
            return run.task.goal_image
        if self.goal_for_sim is None:
            raise SystemUnavailable(f"task {run.task.name}: no goal image and no simulator goal renderer")
        return Path(self.goal_for_sim(run.task.sim_task, run.seed, self.log_dir))

    def _start_policy(self, policy_dir: Path, goal: Path, log: Path) -> subprocess.Popen:
        parameters = {"model": str(policy_dir), "goal": str(goal), "autostart": False, "rate_hz": self.rate_hz,
                      **self.policy_parameters}
        command = [sys.executable, "-m", "mqe_policy.policy_node", "--ros-args",
                   "--params-file", str(config_dir() / "policy.yaml")]
        for name, value in parameters.items():
            text = ("true" if value else "false") if isinstance(value, bool) else str(value)
            command += ["-p", f"{name}:={text}"]
        return subprocess.Popen(command, stdout=log.open("wb"), stderr=subprocess.STDOUT, env=dict(os.environ),
                                preexec_fn=_end_with_parent)

    def _wait_policy_ready(self, process: subprocess.Popen, log: Path) -> None:
        client = self.node.create_client(Trigger, topics.START)
        try:
            deadline = time.monotonic() + self.startup_timeout
            while not client.wait_for_service(timeout_sec=0.2):
                if process.poll() is not None:
                    tail = log.read_text(errors="replace").strip().splitlines()[-1:] or ["(no output)"]
                    raise SystemUnavailable(f"the policy node exited with status {process.returncode}: {tail[0]}")
                if time.monotonic() > deadline:
                    raise SystemUnavailable(f"the policy node did not offer {topics.START} within {self.startup_timeout} s (log {log})")
        finally:
            self.node.destroy_client(client)

    @staticmethod
    def _end(process: subprocess.Popen) -> None:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)

    def run_policy(self, run: Run, policy_dir: Path, recording: Path, attachments: dict) -> dict:
        goal = self.goal_path(run)
        log = self.log_dir / (recording.stem + ".policy.log")
        log.parent.mkdir(parents=True, exist_ok=True)
        process = self._start_policy(policy_dir, goal, log)
        try:
            self._wait_policy_ready(process, log)
            self.recorder.start(recording, goal.read_bytes(), dict(attachments, goal=str(goal)))
            with self._action_lock:
                self._actions = 0
            started = time.monotonic()
            self.trigger(topics.START)
            steps = run.task.time_limit_steps
            # Actions can be held (stale frames, a parked arm): the wall-clock limit is generous but finite.
            wall_limit = 3.0 * steps / self.rate_hz + 10.0
            while True:
                with self._action_lock:
                    acted = self._actions
                if acted >= steps or time.monotonic() - started > wall_limit or process.poll() is not None:
                    break
                time.sleep(0.02)
            self.trigger(topics.STOP)
            elapsed = time.monotonic() - started
            time.sleep(0.2)  # the last messages in flight reach the recorder
            counts = self.recorder.stop()
        finally:
            self.recorder.stop()
            self._end(process)
        if process.returncode not in (0, -signal.SIGINT):
            raise SystemUnavailable(f"the policy node ended with status {process.returncode} (log {log})")
        return {"steps_run": acted, "steps_limit": steps, "seconds": round(elapsed, 3), "messages": counts}
