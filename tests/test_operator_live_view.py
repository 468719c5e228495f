"""The live view (mqe_policy.live_view): the composite drawn without ROS, then the real node beside the
sim camera and a real policy node over DDS (loopback, private domain: tests/conftest.py), read back
from policy/live_view as any viewer would."""

from __future__ import annotations

import time

import cv2
import numpy as np
import pytest
import rclpy
from sensor_msgs.msg import Image

from mqe_policy import live_view, topics
from mqe_policy.live_view import PANEL_HEIGHT, LiveViewConfig, LiveViewNode
from widowx_bridge.camera_node import CameraNode
from widowx_bridge.topics import image_from_msg

from test_operator_goal_capture import Ros

pytestmark = pytest.mark.flaky(reruns=2)  # real nodes over DDS on a loaded 2-core machine


def state_colour_pixels(view: np.ndarray, colour) -> int:
    return int(np.all(view[PANEL_HEIGHT:] == np.array(colour, np.uint8), axis=-1).sum())


def test_composite_shows_camera_and_goal_side_by_side_and_the_state_in_its_colour():
    rng = np.random.default_rng(0)
    camera = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    goal = rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)
    view = live_view.render(camera, goal, {"state": "running", "steps_to_goal": "12.5", "goal": "/g/drawer.png"})
    assert view.shape == (PANEL_HEIGHT + live_view.TEXT_HEIGHT, 320 + 4 + 240, 3) and view.dtype == np.uint8
    expected_camera = cv2.resize(camera, (320, PANEL_HEIGHT), interpolation=cv2.INTER_AREA)
    expected_goal = cv2.resize(goal, (240, PANEL_HEIGHT), interpolation=cv2.INTER_AREA)
    # below the panels' labels, the pixels are the images themselves
    assert np.array_equal(view[30:PANEL_HEIGHT, :320], expected_camera[30:])
    assert np.array_equal(view[30:PANEL_HEIGHT, 324:], expected_goal[30:])
    assert state_colour_pixels(view, live_view.STATE_COLOURS["running"]) > 20
    held = live_view.render(camera, None, {"state": "waiting-for-frames", "reason": "camera frame 0.9 s old"})
    assert state_colour_pixels(held, live_view.STATE_COLOURS["running"]) == 0
    assert state_colour_pixels(held, (255, 80, 80)) > 20  # held actions in red
    assert live_view.render(None, None, {}).shape[0] == PANEL_HEIGHT + live_view.TEXT_HEIGHT  # nothing yet: still a view


def test_live_view_node_publishes_camera_goal_and_policy_state_over_dds(tmp_path):
    from test_policy_artifacts import exported_policy

    from mqe_policy.policy_node import PolicyNode

    goal = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "drawer.png"), cv2.cvtColor(goal, cv2.COLOR_RGB2BGR))
    ros = Ros()
    try:
        ros.add(CameraNode(parameter_overrides={"source": "synthetic", "rate_hz": 30.0}, context=ros.context))
        ros.add(PolicyNode(context=ros.context, cli_args=[
            "--ros-args", "-p", f"model:={exported_policy('mqe')}", "-p", "goal:=drawer.png", "-p", f"goal_dir:={tmp_path}",
            "-p", "reject_identical_frames:=false", "-p", "threads:=1"]))
        view_node = ros.add(LiveViewNode(LiveViewConfig(rate_hz=5.0), context=ros.context))
        viewer = ros.add(rclpy.create_node("viewer", context=ros.context))
        views, frames = [], []
        viewer.create_subscription(Image, topics.LIVE_VIEW, views.append, 5)
        viewer.create_subscription(Image, topics.CAMERA_IMAGE, frames.append, rclpy.qos.qos_profile_sensor_data)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not (views and view_node.status.get("state") == "running" and view_node._goal_rgb is not None):
            time.sleep(0.1)
        assert view_node.status.get("state") == "running", view_node.status  # from the policy's /diagnostics
        assert view_node.status["goal"] == str(tmp_path / "drawer.png")
        time.sleep(0.5)
        view = image_from_msg(views[-1])
        assert view.shape == (PANEL_HEIGHT + live_view.TEXT_HEIGHT, PANEL_HEIGHT + 4 + PANEL_HEIGHT, 3)
        # goal panel: the goal file as the policy loaded it; camera panel: the sim camera's frame
        expected_goal = cv2.resize(goal, (PANEL_HEIGHT, PANEL_HEIGHT), interpolation=cv2.INTER_AREA)
        assert np.array_equal(view[30:PANEL_HEIGHT, PANEL_HEIGHT + 4:], expected_goal[30:])
        expected_camera = cv2.resize(image_from_msg(frames[-1]), (PANEL_HEIGHT, PANEL_HEIGHT), interpolation=cv2.INTER_AREA)
        assert np.abs(view[30:PANEL_HEIGHT, :PANEL_HEIGHT].astype(int) - expected_camera[30:]).mean() < 2.0
        assert state_colour_pixels(view, live_view.STATE_COLOURS["running"]) > 20
    finally:
        ros.close()
