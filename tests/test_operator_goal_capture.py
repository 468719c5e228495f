"""Goal capture (mqe_policy.goal_capture): the command `mqe-capture-goal` as a real process and the
policy node's `policy/capture_goal` service, both against widowx_bridge's sim camera node over DDS
(loopback, private domain: tests/conftest.py), plus the file rules without ROS."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import cv2
import numpy as np
import pytest
import rclpy
from rclpy.executors import MultiThreadedExecutor
from std_srvs.srv import Trigger

from mqe.runtime import load_goal_image
from mqe_policy import goal_capture, topics
from mqe_policy.goal_capture import CaptureError
from widowx_bridge.camera_node import CameraNode

pytestmark = pytest.mark.flaky(reruns=2)  # real nodes over DDS on a loaded 2-core machine


def test_goal_names_are_bare_file_names():
    assert goal_capture.goal_file_name("drawer") == "drawer.png"
    assert goal_capture.goal_file_name("drawer.jpg") == "drawer.jpg"
    for bad in ("", "../drawer.png", "sub/drawer.png", ".hidden.png", "drawer.gif"):
        with pytest.raises(CaptureError, match="goal name"):
            goal_capture.goal_file_name(bad)


def test_save_refuses_to_overwrite_without_force_and_leaves_no_partial_file(tmp_path):
    first = np.full((48, 64, 3), 10, np.uint8)
    second = np.full((48, 64, 3), 200, np.uint8)
    path = goal_capture.save_goal(first, tmp_path, "drawer")
    with pytest.raises(CaptureError, match="exists; choose another name or pass --force"):
        goal_capture.save_goal(second, tmp_path, "drawer")
    assert np.array_equal(load_goal_image(path), first)  # the refused capture lost nothing
    goal_capture.save_goal(second, tmp_path, "drawer", force=True)
    assert np.array_equal(load_goal_image(path), second)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["drawer.png"]  # no temporary left behind
    with pytest.raises(ValueError, match="too small for a goal"):  # the policy's own goal check
        goal_capture.save_goal(np.zeros((8, 8, 3), np.uint8), tmp_path, "tiny")
    with pytest.raises(CaptureError, match="no such directory"):
        goal_capture.save_goal(first, tmp_path / "missing", "drawer")


class Ros:
    def __init__(self):
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.executor = MultiThreadedExecutor(num_threads=2, context=self.context)
        self.nodes = []
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)

    def add(self, node):
        self.nodes.append(node)
        self.executor.add_node(node)
        if not self.thread.is_alive():
            self.thread.start()
        return node

    def close(self):
        self.executor.shutdown()
        self.thread.join(timeout=10)
        for node in self.nodes:
            node.destroy_node()
        rclpy.try_shutdown(context=self.context)


@pytest.fixture
def sim_camera():
    ros = Ros()
    camera = ros.add(CameraNode(parameter_overrides={"source": "synthetic", "rate_hz": 30.0}, context=ros.context))
    yield ros, camera
    ros.close()


def capture(*words: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mqe_policy.goal_capture", *words], capture_output=True, text=True,
                          timeout=60, env=os.environ.copy())


def test_capture_command_saves_the_sim_camera_frame_and_refuses_to_overwrite(sim_camera, tmp_path):
    result = capture("drawer", "--goal-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    saved = tmp_path / "drawer.png"
    assert f"saved {saved}" in result.stdout and "goal:=drawer.png" in result.stdout
    goal = load_goal_image(saved)
    assert goal.shape == (256, 256, 3) and goal.std() > 5  # the rendered tabletop, not a blank frame
    preview = load_goal_image(tmp_path / "previews" / "drawer.png")
    assert preview.shape[1] > 2 * 256  # goal and live frame side by side, under their labels
    # The arm holds still (no arm node), so the live frame beside the goal is the same view.
    assert "mean |diff| 0.0" in result.stdout

    before = saved.read_bytes()
    result = capture("drawer.png", "--goal-dir", str(tmp_path))
    assert result.returncode == 1 and result.stderr.strip().count("\n") == 0
    assert "exists; choose another name or pass --force" in result.stderr
    assert saved.read_bytes() == before

    result = capture("drawer.png", "--goal-dir", str(tmp_path), "--force")
    assert result.returncode == 0, result.stderr
    result = capture("drawer.png", "--goal-dir", str(tmp_path), "--compare")
    assert result.returncode == 0 and "preview" in result.stdout and "saved" not in result.stdout


def test_capture_command_without_a_camera_says_so(tmp_path):
    result = capture("drawer", "--goal-dir", str(tmp_path), "--timeout", "1")
    assert result.returncode == 2 and "no frame on camera/image_raw within 1 s" in result.stderr
    assert not (tmp_path / "drawer.png").exists()


def test_policy_node_capture_service_saves_the_newest_frame(sim_camera, tmp_path):
    from test_policy_artifacts import exported_policy

    from mqe_policy.policy_node import PolicyNode

    ros, _ = sim_camera
    running_goal = tmp_path / "running.png"
    cv2.imwrite(str(running_goal), np.full((64, 64, 3), 90, np.uint8))
    policy = ros.add(PolicyNode(context=ros.context, cli_args=[
        "--ros-args", "-p", f"model:={exported_policy('mqe')}", "-p", "goal:=running.png", "-p", f"goal_dir:={tmp_path}",
        "-p", "reject_identical_frames:=false"]))
    client_node = ros.add(rclpy.create_node("operator", context=ros.context))
    client = client_node.create_client(Trigger, topics.CAPTURE_GOAL)
    assert client.wait_for_service(timeout_sec=10)
    deadline = time.monotonic() + 10
    while policy.capturer.latest is None and time.monotonic() < deadline:
        time.sleep(0.05)
    response = client.call(Trigger.Request(), timeout_sec=10)
    assert response.success, response.message
    captures = sorted(tmp_path.glob("capture-*.png"))
    assert len(captures) == 1 and f"goal:={captures[0].name}" in response.message
    assert load_goal_image(captures[0]).shape == (256, 256, 3)
    assert (tmp_path / "previews" / captures[0].name).is_file()  # beside the running goal
