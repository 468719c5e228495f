"""One source for every default: each node's parameters are declared from one definition (the arm's
from widowx_bridge.control.ControlConfig, whose robot constants are mqe.robot's; the policy's from
mqe_policy.parameters / control.LoopConfig), the package YAMLs are checked against it, the launch
description takes its argument defaults from it, and every parameter that is read once at start-up
refuses a change at run time."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest
import rclpy
import yaml
from rclpy.parameter import Parameter

from mqe_policy import parameters, system
from widowx_bridge import arm_node, camera_node, tabletop

REPO = Path(__file__).resolve().parents[1]
POLICY_CONFIG = REPO / "ros2_ws" / "src" / "mqe_policy" / "config"
BRIDGE_CONFIG = REPO / "ros2_ws" / "src" / "widowx_bridge" / "config"
NODE_DEFAULTS = {"camera": camera_node.DEFAULTS, "widowx_arm": arm_node.DEFAULTS,
                 "policy": {**parameters.policy_defaults(), "goal_dir": ""}}


def test_package_yamls_equal_the_declared_defaults():
    assert parameters.yaml_mismatches(BRIDGE_CONFIG / "arm.yaml", arm_node.DEFAULTS) == []
    assert parameters.yaml_mismatches(BRIDGE_CONFIG / "camera.yaml", camera_node.DEFAULTS) == []
    # goal_dir's default depends on the install (system.default_goal_dir), so the YAML leaves it out
    assert parameters.yaml_mismatches(POLICY_CONFIG / "policy.yaml", parameters.policy_defaults()) == []


def test_system_yaml_sets_only_parameters_its_nodes_declare_with_their_types():
    for node, section in yaml.safe_load((POLICY_CONFIG / "system.yaml").read_text()).items():
        for name, value in section["ros__parameters"].items():
            assert name in NODE_DEFAULTS[node], f"system.yaml: {node}.{name} is not a parameter"
            assert type(value) is type(NODE_DEFAULTS[node][name]), f"system.yaml: {node}.{name} has another type"


def test_the_check_names_each_difference(tmp_path):
    path = tmp_path / "arm.yaml"
    values = dict(arm_node.DEFAULTS, command_timeout=1, speling=2.0)
    del values["frame_id"]
    path.write_text(yaml.safe_dump({"/**": {"ros__parameters": values}}))
    lines = parameters.yaml_mismatches(path, arm_node.DEFAULTS)
    assert len(lines) == 3
    assert any("frame_id missing" in line for line in lines)
    assert any("speling is not a parameter" in line for line in lines)
    assert any("command_timeout is 1, the node's default is 0.5" in line for line in lines)  # an int is not a float


def test_robot_constants_reach_the_arm_node_from_mqe_robot():
    from mqe import robot

    assert arm_node.DEFAULTS["workspace_low"] == list(robot.WORKSPACE_LOW)
    assert arm_node.DEFAULTS["workspace_high"] == list(robot.WORKSPACE_HIGH)
    assert arm_node.DEFAULTS["start_pose"] == list(robot.START_POSE)
    assert arm_node.DEFAULTS["max_translation_step"] == robot.MAX_TRANSLATION_STEP
    arguments = {a.name: a.default for a in system.LAUNCH_ARGUMENTS}
    assert arguments["robot_model"] == arm_node.DEFAULTS["robot_model"]
    assert arguments["camera_rate_hz"] == ""  # resolved from the camera's node: the sim tabletop's or the camera node's
    real = system.resolve_arguments({"goal": "g.png", "model": "m"})
    assert real["camera_rate_hz"] == str(camera_node.DEFAULTS["rate_hz"])
    simulated = system.resolve_arguments({"goal": "g.png", "model": "m", "use_sim": "true"})
    assert simulated["camera_rate_hz"] == str(tabletop.DEFAULTS["camera_rate_hz"])
    assert arguments["rate_hz"] == str(parameters.policy_defaults()["rate_hz"])


# Run in a fresh interpreter: the one definition is edited in its source before anything imports it.
ONE_PLACE_SCRIPT = textwrap.dedent(
    """
    import importlib.util, json, sys
    from pathlib import Path

    def load_edited(module_name, old, new):
        spec = importlib.util.find_spec(module_name)
        source = Path(spec.origin).read_text()
        assert source.count(old) == 1, (module_name, old)
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        exec(compile(source.replace(old, new), spec.origin, "exec"), module.__dict__)
        parent, _, child = module_name.rpartition(".")
        setattr(sys.modules[parent], child, module)

    import mqe, mqe_policy, widowx_bridge
    load_edited("mqe.robot", "WORKSPACE_HIGH: tuple[float, float, float] = (0.45, 0.25, 0.18)",
                "WORKSPACE_HIGH: tuple[float, float, float] = (0.40, 0.25, 0.18)")
    load_edited("mqe_policy.control", "rate_hz: float = 5.0", "rate_hz: float = 4.0")
    load_edited("widowx_bridge.camera_node", '"rate_hz": 30.0,', '"rate_hz": 15.0,')

    import rclpy
    from mqe_policy import parameters, system
    from mqe_policy.policy_node import PolicyNode
    from widowx_bridge import arm_node
    from widowx_bridge.arm_node import ArmNode
    from widowx_bridge.camera_node import CameraNode

    model, goal, config = sys.argv[1:4]
    rclpy.init()
    arm = ArmNode(parameter_overrides={"reset_on_start": False})
    camera = CameraNode(parameter_overrides={"source": "synthetic"})
    policy = PolicyNode(cli_args=["--ros-args", "-p", f"model:={model}", "-p", f"goal:={goal}", "-p", "threads:=1"])
    arguments = system.resolve_arguments({"goal": goal, "model": model, "use_sim": "true", "camera": "synthetic"})
    _, _, policy_description = system.describe_nodes(arguments)
    print(json.dumps({
        "arm_node_workspace_high": list(arm.get_parameter("workspace_high").value),
        "camera_node_rate_hz": camera.get_parameter("rate_hz").value,
        "policy_node_rate_hz": policy.get_parameter("rate_hz").value,
        "arm_yaml_check": parameters.yaml_mismatches(f"{config}/widowx_bridge/config/arm.yaml", arm_node.DEFAULTS),
        "camera_yaml_check": parameters.yaml_mismatches(f"{config}/widowx_bridge/config/camera.yaml",
                                                        sys.modules["widowx_bridge.camera_node"].DEFAULTS),
        "policy_yaml_check": parameters.yaml_mismatches(f"{config}/mqe_policy/config/policy.yaml", parameters.policy_defaults()),
        "launch_defaults": {a.name: a.default for a in system.LAUNCH_ARGUMENTS},
        "launch_policy_rate_hz": policy_description.parameters["rate_hz"],
        "launch_camera_rate_hz": arguments["camera_rate_hz"],
    }))
    for node in (policy, camera, arm):
        node.destroy_node()
    rclpy.shutdown()
    """
)


def test_changing_a_default_in_its_one_place_changes_the_node_the_yaml_check_and_the_launch(tmp_path):
    from test_policy_artifacts import exported_policy

    from mqe import robot

    goal = tmp_path / "goal.png"
    cv2.imwrite(str(goal), np.zeros((64, 64, 3), np.uint8))
    result = subprocess.run([sys.executable, "-c", ONE_PLACE_SCRIPT, str(exported_policy("mqe")), str(goal), str(REPO / "ros2_ws" / "src")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen["arm_node_workspace_high"] == [0.40, 0.25, 0.18]  # mqe.robot -> ControlConfig -> arm_node.DEFAULTS
    assert seen["camera_node_rate_hz"] == 15.0 and seen["policy_node_rate_hz"] == 4.0
    assert [line.split(": ", 1)[1] for line in seen["arm_yaml_check"]] == [
        f"workspace_high is {list(robot.WORKSPACE_HIGH)}, the node's default is [0.4, 0.25, 0.18]"]
    assert [line.split(": ", 1)[1] for line in seen["camera_yaml_check"]] == ["rate_hz is 30.0, the node's default is 15.0"]
    assert [line.split(": ", 1)[1] for line in seen["policy_yaml_check"]] == ["rate_hz is 5.0, the node's default is 4.0"]
    assert seen["launch_defaults"]["rate_hz"] == "4.0" and seen["launch_camera_rate_hz"] == "15.0"
    assert seen["launch_policy_rate_hz"] == 4.0


@pytest.fixture
def context():
    context = rclpy.Context()
    rclpy.init(context=context)
    yield context
    rclpy.try_shutdown(context=context)


def refused(node, names):
    """{name: reason} of every name whose run-time change (to its own current value) is refused."""
    results = {}
    for name in names:
        (result,) = node.set_parameters([Parameter(name, value=node.get_parameter(name).value)])
        results[name] = "" if result.successful else result.reason
    return results


def test_every_parameter_read_at_start_up_refuses_a_change_at_run_time(context, tmp_path):
    from test_policy_artifacts import exported_policy

    from mqe_policy.policy_node import PolicyNode

    arm = arm_node.ArmNode(parameter_overrides={"reset_on_start": False}, context=context)
    camera = camera_node.CameraNode(parameter_overrides={"source": "synthetic"}, context=context)
    cv2.imwrite(str(tmp_path / "goal.png"), np.zeros((64, 64, 3), np.uint8))
    policy = PolicyNode(context=context, cli_args=["--ros-args", "-p", f"model:={exported_policy('mqe')}", "-p", "goal:=goal.png",
                                                   "-p", f"goal_dir:={tmp_path}", "-p", "threads:=1"])
    try:
        arm_fixed = [name for name in arm_node.DEFAULTS if name not in arm_node.RUNTIME_SETTABLE]
        for node, names in ((arm, arm_fixed), (camera, camera_node.DEFAULTS), (policy, parameters.FIXED_AT_STARTUP)):
            reasons = refused(node, names)
            assert all("is fixed at start-up; restart the node" in reason for reason in reasons.values()), reasons
        assert "goal_dir" in parameters.FIXED_AT_STARTUP  # it used to be accepted and do nothing
        assert set(parameters.FIXED_AT_STARTUP) | set(parameters.RUNTIME_SETTABLE) == set(NODE_DEFAULTS["policy"])
        assert refused(policy, ["goal"]) == {"goal": ""}  # the one parameter that acts while running
    finally:
        for node in (policy, camera, arm):
            node.destroy_node()
