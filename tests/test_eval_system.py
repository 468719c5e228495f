"""mqe-eval over DDS against the simulated system: the replay camera and the kinematic sim arm as
their own processes (as ros2 run starts them), mqe-eval as its own process starting a real policy
node per run. The whole protocol runs non-interactively (answers piped in), mqe-eval is killed in the
middle of a run and resumed, and the per-run MCAP files are read back against what was sent.

The MuJoCo scene and its sim/score service have not landed, so points come from the evaluator's
prompt (target robot) - the sim/score path is exercised in test_eval_session.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import JointState

from mqe_policy import topics
from mqe_policy.evaluation.protocol import load_protocol, policy_fingerprint
from mqe_policy.evaluation.report import read_recording, timeline_chart, write_report
from mqe_policy.evaluation.results import read_records
from mqe_policy.evaluation.session import plan
from test_policy_artifacts import copy_export
from test_system import CameraProcess, wait_for, write_goal, write_replay_folder

# Real processes over DDS on 2 cores: the test's own observer joins each new policy process over
# discovery and, in a loaded full run, has missed a whole 8-action run (seen in 2 of 5 full runs,
# never alone); re-run up to twice like the other DDS timing tests (test_system.py).
pytestmark = pytest.mark.flaky(reruns=2)

POINTS = {"MQE": [2, 1], "GCBC": [0, 1]}  # per method, trial 0 and 1 of double_pnp (max 2)


class ActionObserver(Node):
    def __init__(self, context):
        super().__init__("eval_test_observer", context=context)
        self.lock = threading.Lock()
        self.actions: list[tuple[int, tuple[float, ...]]] = []
        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=100, reliability=ReliabilityPolicy.RELIABLE)
        self.create_subscription(JointState, topics.ACTION, self._on_action, qos)

    def _on_action(self, msg):
        with self.lock:
            self.actions.append((msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec, tuple(msg.position)))


def start_arm(log: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "widowx_bridge.arm_node", "--ros-args", "-p", "backend:=sim"],
                            stdout=log.open("w"), stderr=subprocess.STDOUT, env=dict(os.environ))


def start_eval(protocol: Path, results: Path, log: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "mqe_policy.evaluation.cli", "run", str(protocol), "--results", str(results),
               "--no-wait", "-p", "threads:=1"]
    return subprocess.Popen(command, stdin=subprocess.PIPE, stdout=log.open("a"), stderr=subprocess.STDOUT,
                            env=dict(os.environ), text=True)


def answers_for(runs) -> str:
    return "".join(f"{POINTS[run.method][run.trial]}\n" for run in runs)


def test_protocol_over_dds_with_kill_and_resume(tmp_path):
    replay = write_replay_folder(tmp_path / "replay", count=30)
    goal = write_goal(tmp_path / "double_pnp.png")
    mqe, gcbc = copy_export("mqe", tmp_path / "mqe"), copy_export("mqe", tmp_path / "gcbc")
    (gcbc / "marker.txt").write_text("a second method")  # distinct fingerprint
    protocol_path = tmp_path / "protocol.yaml"
    protocol_path.write_text(
        "name: dds-test\nmode: blinded\ntarget: robot\nsession_seed: 3\n"
        f"methods:\n  MQE: {mqe}\n  GCBC: {gcbc}\n"
        "tasks:\n  - name: double_pnp\n    max_points: 2\n    rubric: [\"1 point per object on its target\"]\n"
        f"    trials: 2\n    time_limit_steps: 8\n    goal_image: {goal}\n"
    )
    protocol = load_protocol(protocol_path)
    runs = [run for trial in plan(protocol) for run in trial]
    results = tmp_path / "session.jsonl"
    log = tmp_path / "eval.log"

    context = rclpy.Context()
    rclpy.init(context=context)
    observer = ActionObserver(context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(observer)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    camera = CameraProcess({"source": "replay", "replay_path": str(replay), "rate_hz": 15.0}, tmp_path / "camera.log")
    arm = start_arm(tmp_path / "arm.log")
    try:
        # First session: answers for the first run only; killed while the second run is under way.
        first = start_eval(protocol_path, results, log)
        first.stdin.write(answers_for(runs[:1]))
        first.stdin.flush()
        wait_for(lambda: sum(r["record"] == "started" for r in read_records(results)) >= 2, 90, "the second run to start")
        before_kill = results.read_bytes()
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        assert sum(r["record"] == "run" for r in read_records(results)) == 1

        # Resume: the half-finished second run is marked and redone, then the rest.
        second = start_eval(protocol_path, results, log)
        _, _ = second.communicate(answers_for(runs[1:]), timeout=120)
        assert second.returncode == 0, log.read_text()[-3000:]
    finally:
        camera.close()
        arm.send_signal(signal.SIGINT)
        arm.wait(timeout=10)
        executor.shutdown(timeout_sec=2)
        observer.destroy_node()
        rclpy.try_shutdown(context=context)

    # Nothing lost: the file before the kill is a prefix of the file after the resume.
    after = results.read_bytes()
    assert after.startswith(before_kill)
    records = read_records(results)
    kinds = [r["record"] for r in records]
    assert kinds.count("session") == 1 and kinds.count("run") == 4
    abandoned = [r for r in records if r["record"] == "abandoned"]
    assert [r["run_id"] for r in abandoned] == [runs[1].run_id]
    finished = {r["run_id"]: r for r in records if r["record"] == "run"}
    assert sorted(finished) == sorted(run.run_id for run in runs)
    for run in runs:
        record = finished[run.run_id]
        assert record["label"] == run.label and record["points"] == POINTS[run.method][run.trial]
        assert record["progress"] == POINTS[run.method][run.trial] / 2
        assert record["policy_fingerprint"] == policy_fingerprint(mqe if run.method == "MQE" else gcbc)
        assert record["facts"]["steps_run"] >= 8
    # The evaluator saw labels, never method names.
    shown = log.read_text()
    assert "policy A" in shown and "MQE" not in shown.split("== task")[1].split("session complete")[0]

    # The recordings hold exactly the frames the camera sent and the actions the policy sent.
    replay_images = [cv2.imread(str(p))[..., ::-1] for p in sorted(replay.glob("*.png"))]
    recordings_dir = Path(str(results.with_suffix("")) + "_recordings")
    for run in runs:
        recording = read_recording(recordings_dir / finished[run.run_id]["recording"])
        series = recording["series"]
        frames = series["/camera/image_raw"]
        assert len(frames) >= 5
        for _, msg in frames:
            image = np.frombuffer(bytes(msg.data), np.uint8).reshape(msg.height, msg.width, 3)
            assert any(np.array_equal(image, source) for source in replay_images)
        actions = [(m.header.stamp.sec * 10**9 + m.header.stamp.nanosec, tuple(m.position)) for _, m in series["/policy/action"]]
        assert len(actions) >= 8
        # The test's observer joins each new policy process over discovery and may miss its first
        # actions (reliable + volatile QoS delivers nothing published before the match); from the
        # first action it saw on, both must hold the same sequence, value for value.
        window = [a for a in sorted(observer.actions) if actions[0][0] <= a[0] <= actions[-1][0]]
        assert len(window) >= len(actions) - 3
        assert [a for a in sorted(actions) if a[0] >= window[0][0]] == window
        assert recording["attachments"]["goal.png"] == goal.read_bytes()
        assert json.loads(recording["attachments"]["protocol_entry.json"])["name"] == "double_pnp"
        meta = recording["metadata"]["mqe_eval"]
        assert meta["label"] == run.label and meta["policy_fingerprint"] == finished[run.run_id]["policy_fingerprint"]
        for channel in recording["channels"].values():
            assert channel.message_encoding == "cdr" and "offered_qos_profiles" in channel.metadata
        image_channel = recording["channels"]["/camera/image_raw"]
        assert "reliability: 2" in image_channel.metadata["offered_qos_profiles"]  # the camera publishes best effort
        assert recording["schemas"][image_channel.schema_id].encoding == "ros2msg"

    # Report and timeline from this session.
    files = write_report(results, tmp_path / "report", resamples=500)
    assert files["progress.png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "1.00 ± 0.00 (1/2)" in files["table.md"].read_text() or "0.75 ± 0.25 (1/2)" in files["table.md"].read_text()
    timeline = timeline_chart(recordings_dir / finished[runs[0].run_id]["recording"], tmp_path / "timeline.png")
    assert timeline.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
