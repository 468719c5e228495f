"""run.launch.py and mqe-run share mqe_policy.system; these tests keep the three (and the robot PC's
bring-up launch/robot.launch.py) from drifting.

`launch` and `launch_ros` exist only on the robot PC (they are not on PyPI), so the launch files are
checked by parsing them, and the plain-Python checks they call are run here on the launch
configurations that ROS 2 launch (humble) hands them. Upstream behaviour relied on, read in the
humble branches of ros2/launch and ros2/launch_ros:
- launch/actions/include_launch_description.py: arguments that match no DeclareLaunchArgument are
  still set as launch configurations (so a misspelled name reaches context.launch_configurations);
- launch/launch_service.py: run_async returns 1 only when an exception reaches its loop (logged as
  "Caught exception in launch ..."), 0 after a Shutdown action; ros2launch/api/api.py returns it;
- launch/actions/group_action.py: scoped=True, forwarding=False clears the scope's configurations
  and sets only the ones given;
- ros2launch/api/api.py: --launch-prefix / --launch-prefix-filter become launch-prefix:= and
  launch-prefix-filter:= arguments.
"""

from __future__ import annotations

import ast
import re
import importlib
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import rclpy
import yaml
from rclpy.node import Node

from mqe_policy import system

REPO = Path(__file__).resolve().parents[1]
PACKAGE_DIR = REPO / "ros2_ws" / "src" / "mqe_policy"
LAUNCH_FILE = PACKAGE_DIR / "launch" / "run.launch.py"
ROBOT_LAUNCH_FILE = REPO / "launch" / "robot.launch.py"
ROS_BUILTIN_PARAMETERS = {"use_sim_time", "start_type_description_service"}  # declared by rclpy itself
ARGUMENT_SETS = [
    {"goal": "drawer.png", "model": "m"},
    {"goal": "drawer.png", "model": "m", "use_sim": "true"},
    {"goal": "drawer.png", "model": "m", "use_sim": "true", "camera": "replay", "camera_path": "frames", "robot_model": "wx250"},
    {"goal": "drawer.png", "model": "m", "camera": "usb", "camera_path": "/dev/video2", "rate_hz": "10"},
]


def console_scripts(package: str) -> dict[str, str]:
    """entry_points["console_scripts"] of a package's setup.py, read with ast."""
    tree = ast.parse((REPO / "ros2_ws" / "src" / package / "setup.py").read_text())
    for call in ast.walk(tree):
        if isinstance(call, ast.Call) and getattr(call.func, "id", "") == "setup":
            entry_points = next(k.value for k in call.keywords if k.arg == "entry_points")
            scripts = ast.literal_eval(entry_points)["console_scripts"]
            return dict((part.strip() for part in line.split("=", 1)) for line in scripts)
    raise AssertionError(f"{package}/setup.py has no setup() call")


def test_launch_file_takes_its_arguments_and_nodes_from_the_system_description():
    tree = ast.parse(LAUNCH_FILE.read_text())
    imports = {(node.module, alias.name) for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) for alias in node.names}
    assert ("mqe_policy", "system") in imports
    calls = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            calls.setdefault(node.func.id, []).append(node)
    attributes = {ast.unparse(node) for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
    assert {"system.LAUNCH_ARGUMENTS", "system.describe_nodes", "system.resolve_arguments"} <= attributes

    # Every argument is declared from the description (name, default and description), none by hand.
    (declare,) = calls["DeclareLaunchArgument"]
    assert [ast.unparse(arg) for arg in declare.args] == ["argument.name"]
    keywords = {k.arg: ast.unparse(k.value) for k in declare.keywords}
    assert keywords == {"default_value": "argument.default", "description": "argument.description"}
    loops = [c for c in ast.walk(tree) if isinstance(c, ast.comprehension) and ast.unparse(c.iter) == "system.LAUNCH_ARGUMENTS"]
    assert len(loops) == 2  # the declarations and the values read back at launch time

    # Every node is one of the description's, with its package, executable, name and parameters.
    (node_call,) = calls["Node"]
    keywords = {k.arg: ast.unparse(k.value) for k in node_call.keywords}
    assert keywords["package"] == "node.package" and keywords["executable"] == "node.executable"
    assert keywords["name"] == "node.name"
    assert keywords["parameters"] == "[*node.parameter_files, node.parameters]"
    assert keywords["on_exit"] == "_exit_handler(node.name) if node.required else None"
    node_loops = [c for c in ast.walk(tree) if isinstance(c, ast.comprehension) and ast.unparse(c.iter).startswith("system.describe_nodes(")]
    assert len(node_loops) == 1
    literals = [c for c in ast.walk(tree) if isinstance(c, ast.Constant) and c.value in ("policy_node", "arm_node", "camera_node")]
    assert literals == [], "executables are named only in mqe_policy.system"


def function_body_calls(tree: ast.Module, name: str) -> list[str]:
    """The calls a module-level function makes, in source order."""
    (function,) = [node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == name]
    calls = sorted((node.lineno, node.col_offset, ast.unparse(node.func)) for node in ast.walk(function) if isinstance(node, ast.Call))
    return [call for _, _, call in calls]


def test_run_launch_checks_argument_names_and_inputs_before_it_creates_any_node():
    tree = ast.parse(LAUNCH_FILE.read_text())
    calls = function_body_calls(tree, "_nodes")
    order = [calls.index(name) for name in ("system.check_launch_configurations", "system.resolve_arguments", "system.check_inputs")]
    assert order == sorted(order) and order[-1] < min(calls.index("Node"), calls.index("system.describe_nodes")), calls
    (check,) = [c for c in ast.walk(tree) if isinstance(c, ast.Call) and ast.unparse(c.func) == "system.check_launch_configurations"]
    assert [ast.unparse(arg) for arg in check.args] == ["context.launch_configurations"]


def load_function(path: Path, name: str, **namespace):
    """Compile one module-level function of a launch file on its own (the launch modules it imports
    are not installable here); `namespace` supplies the names it uses."""
    tree = ast.parse(path.read_text())
    (function,) = [node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == name]
    exec(compile(ast.Module(body=[function], type_ignores=[]), str(path), "exec"), namespace)
    return namespace[name]


def test_a_required_node_that_fails_makes_the_launch_exit_non_zero():
    """launch_ros calls on_exit(event, context) with a ProcessExited event (launch/event_handlers/
    on_action_event_base.py, humble: a callable on_event is called with the event); an exception
    there reaches LaunchService.run_async, which shuts everything down and returns 1."""
    from types import SimpleNamespace

    shutdowns = []
    exit_handler = load_function(LAUNCH_FILE, "_exit_handler", Shutdown=lambda reason: shutdowns.append(reason) or reason)
    on_exit = exit_handler("policy")
    with pytest.raises(RuntimeError, match="policy exited with status 2"):
        on_exit(SimpleNamespace(returncode=2), None)
    assert shutdowns == []
    assert on_exit(SimpleNamespace(returncode=0), None) == "policy exited" and shutdowns == ["policy exited"]


def humble_launch_configurations(launch_file_arguments: dict, declared: tuple) -> dict:
    """context.launch_configurations as Humble's launch has them when the launch file's first action
    runs: `ros2 launch` includes the file with every name:=value, IncludeLaunchDescription sets each
    one as a configuration, declared or not, and each DeclareLaunchArgument adds its default for the
    names not given."""
    configurations = dict(launch_file_arguments)
    for argument in declared:
        configurations.setdefault(argument.name, argument.default)
    return configurations


def test_unknown_launch_argument_names_are_refused_naming_them_and_the_valid_ones():
    configurations = humble_launch_configurations({"goal": "drawer.png", "use_sm": "true"}, system.LAUNCH_ARGUMENTS)
    assert configurations["use_sim"] == "false"  # what launch alone would start with: the real arm
    with pytest.raises(system.SystemArgumentError) as caught:
        system.check_launch_configurations(configurations)
    message = str(caught.value)
    assert message.startswith("unknown launch argument(s) ['use_sm']; valid arguments: ")
    assert all(name in message for name in system.ARGUMENT_NAMES) and "\n" not in message
    system.check_launch_configurations(humble_launch_configurations({"goal": "g.png", "use_sim": "true"}, system.LAUNCH_ARGUMENTS))
    # `ros2 launch --launch-prefix 'gdb -ex run'` sets launch-prefix itself
    system.check_launch_configurations(humble_launch_configurations({"launch-prefix": "gdb"}, system.LAUNCH_ARGUMENTS))
    # robot.launch.py: the system's names and use_rviz; run.launch.py alone does not take use_rviz
    accepted = load_function(ROBOT_LAUNCH_FILE, "_check_arguments", system=system, ROBOT_ARGUMENTS=("use_rviz",))
    context = type("Context", (), {})()
    context.launch_configurations = {"use_rviz": "true", "goal": "g.png"}
    accepted(context)
    context.launch_configurations = {"use_rvis": "true"}
    with pytest.raises(system.SystemArgumentError, match=r"\['use_rvis'\]; valid arguments: .*use_rviz"):
        accepted(context)
    with pytest.raises(system.SystemArgumentError, match=r"\['use_rviz'\]"):
        system.check_launch_configurations({"use_rviz": "true"})


def test_inputs_are_checked_before_any_node_with_the_policy_nodes_own_lines(tmp_path):
    from test_policy_artifacts import copy_export, exported_policy
    from test_runtime import truncate_action

    goal = tmp_path / "goal.png"
    cv2.imwrite(str(goal), np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8))
    good = system.resolve_arguments({"goal": str(goal), "model": str(exported_policy("mqe")), "use_sim": "true"})
    system.check_inputs(good)
    six_d = copy_export("mqe", tmp_path / "six_d")
    truncate_action(six_d / "policy.onnx", keep=6)
    for values, expected in [
        ({"goal": ""}, "goal: no goal image given"),
        ({"goal": "missing.png", "goal_dir": str(tmp_path)}, f"goal image {tmp_path / 'missing.png'}: no such file"),
        ({"model": str(tmp_path / "none")}, "no such policy directory"),
        ({"model": str(six_d)}, "probe inference failed"),
    ]:
        with pytest.raises(ValueError) as caught:
            system.check_inputs({**good, **values})
        assert expected in str(caught.value) and "\n" not in str(caught.value)


def test_an_installed_package_has_no_default_model(monkeypatch):
    monkeypatch.delenv("MQE_MODEL", raising=False)
    monkeypatch.setattr(system, "find_repository_dir", lambda name: None)  # as in a colcon install space
    arguments = system.resolve_arguments({"goal": "g.png"})
    assert arguments["model"] == ""
    with pytest.raises(ValueError, match=r"model: no policy given \(set model:=DIR.*\$MQE_MODEL\)"):
        system.check_inputs(arguments)


def test_robot_bringup_starts_the_interbotix_driver_and_passes_every_argument_to_run_launch():
    tree = ast.parse(ROBOT_LAUNCH_FILE.read_text())
    calls = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            calls.setdefault(node.func.id, []).append(node)
    declarations = {ast.unparse(c.args[0]): {k.arg: ast.unparse(k.value) for k in c.keywords} for c in calls["DeclareLaunchArgument"]}
    assert declarations["argument.name"] == {"default_value": "argument.default", "description": "argument.description"}
    assert set(declarations) == {"argument.name", "'use_rviz'"}  # the system's arguments, and RViz for the driver
    includes = {}
    for include in calls["IncludeLaunchDescription"]:
        keywords = {k.arg: ast.unparse(k.value) for k in include.keywords}
        includes[ast.unparse(include.args[0])] = keywords
    (run_source,) = [source for source in includes if "'run.launch.py'" in source]
    assert "FindPackageShare(system.PACKAGE)" in run_source
    # run.launch.py sees exactly the system's arguments: a group that does not forward the scope
    (group,) = calls["GroupAction"]
    group_keywords = {k.arg: ast.unparse(k.value) for k in group.keywords}
    assert run_source in ast.unparse(group.args[0])
    assert group_keywords == {
        "scoped": "True", "forwarding": "False",
        "launch_configurations": "{argument.name: LaunchConfiguration(argument.name) for argument in system.LAUNCH_ARGUMENTS}",
    }
    # the argument check is the first action after the declarations, before the driver
    (description,) = [c for c in calls["LaunchDescription"]]
    entries = [ast.unparse(entry) for entry in description.args[0].elts]
    assert entries.index("OpaqueFunction(function=_check_arguments)") < entries.index("driver") < entries.index("policy_system")
    (driver_source,) = [source for source in includes if "'xsarm_control.launch.py'" in source]
    assert "FindPackageShare('interbotix_xsarm_control')" in driver_source
    assert "'robot_model': LaunchConfiguration('robot_model')" in includes[driver_source]["launch_arguments"]
    assert includes[driver_source]["condition"] == "UnlessCondition(LaunchConfiguration('use_sim'))"  # no driver in sim
    assert {"robot_model", "use_sim"} <= {argument.name for argument in system.LAUNCH_ARGUMENTS}


def test_required_arguments_and_defaults():
    arguments = {a.name: a for a in system.LAUNCH_ARGUMENTS}
    assert {"goal", "model", "robot_model", "use_sim", "camera", "rate_hz", "params_file"} <= set(arguments)
    assert arguments["robot_model"].default == "wx250s" and "wx250" in arguments["robot_model"].choices
    assert arguments["use_sim"].default == "false" and float(arguments["rate_hz"].default) == 5.0
    assert all(a.description for a in system.LAUNCH_ARGUMENTS)


@pytest.mark.parametrize("values", ARGUMENT_SETS)
def test_every_described_node_exists_as_an_entry_point_and_a_node_class(values):
    arguments = system.resolve_arguments(values)
    descriptions = system.describe_nodes(arguments)
    hardware = ["sim_tabletop"] if arguments["camera"] == "sim" else ["camera_node", "arm_node"]
    assert [d.executable for d in descriptions] == hardware + ["policy_node"]
    for description in descriptions:
        module_name, class_name = description.node_class.split(":")
        assert console_scripts(description.package)[description.executable] == f"{module_name}:main"
        module = importlib.import_module(module_name)
        node_class = getattr(module, class_name)
        assert issubclass(node_class, Node)
        assert module.NODE_NAME == description.name, "YAML sections are keyed by the node's own name"
        for path in description.parameter_files:
            sections = yaml.safe_load(Path(path).read_text())
            assert description.name in sections or "/**" in sections, f"{path} has no section for {description.name}"


def test_arguments_become_node_parameters():
    camera, arm, policy = system.describe_nodes(system.resolve_arguments(ARGUMENT_SETS[2]))
    assert camera.parameters == {"source": "replay", "rate_hz": 30.0, "replay_path": "frames"}
    assert arm.parameters == {"backend": "sim", "robot_model": "wx250"}
    assert policy.parameters["goal"] == "drawer.png" and policy.parameters["model"] == "m"
    assert policy.required and not camera.required
    camera, arm, policy = system.describe_nodes(system.resolve_arguments(ARGUMENT_SETS[0]))
    assert camera.parameters["source"] == "realsense" and arm.parameters["backend"] == "interbotix"
    assert policy.parameters["reject_identical_frames"] is True
    tabletop, policy = system.describe_nodes(system.resolve_arguments(ARGUMENT_SETS[1]))
    assert tabletop.node_class == "widowx_bridge.tabletop:TabletopNode" and tabletop.name == "widowx_arm"
    assert tabletop.parameters == {"backend": "sim", "robot_model": "wx250s", "sim_task": "single_pnp", "sim_seed": 0,
                                   "camera_rate_hz": 10.0}
    assert policy.parameters["reject_identical_frames"] is False


def test_a_sim_goal_name_chooses_the_tabletop_scene_and_bad_sim_arguments_are_refused():
    named = system.SIM_GOAL_NAME.search(system.sim_goal_name("open_drawer_and_place", 12))
    assert (named["task"], named["seed"]) == ("open_drawer_and_place", "12")  # the writer's name reads back
    tabletop, _ = system.describe_nodes(system.resolve_arguments({"goal": "sim_double_pnp_seed7.png", "use_sim": "true"}))
    assert (tabletop.parameters["sim_task"], tabletop.parameters["sim_seed"]) == ("double_pnp", 7)
    tabletop, _ = system.describe_nodes(system.resolve_arguments(
        {"goal": "sim_double_pnp_seed7.png", "use_sim": "true", "sim_task": "open_drawer", "sim_seed": "2"}))
    assert (tabletop.parameters["sim_task"], tabletop.parameters["sim_seed"]) == ("open_drawer", 2)
    for values, message in [
        ({"goal": "g.png", "camera": "sim"}, "camera:=sim is the simulated tabletop's camera; it needs use_sim:=true"),
        ({"goal": "g.png", "use_sim": "true", "robot_model": "wx250"}, "the simulated tabletop has a wx250s"),
        ({"goal": "g.png", "use_sim": "true", "sim_task": "juggle"}, "sim_task:=juggle: expected one of"),
        ({"goal": "g.png", "use_sim": "true", "sim_seed": "-1"}, "sim_seed:=-1: expected a whole number"),
        ({"goal": "g.png", "camera": "replay", "camera_path": "f", "sim_seed": "1"}, "only the sim camera's tabletop"),
    ]:
        with pytest.raises(system.SystemArgumentError, match=re.escape(message)):
            system.resolve_arguments(values)


@pytest.mark.parametrize(
    "values, message",
    [
        ({"gaol": "x.png"}, "unknown argument(s) ['gaol']"),
        ({"robot_model": "wx200"}, "robot_model:=wx200: expected one of ['wx250s', 'wx250']"),
        ({"use_sim": "yes"}, "use_sim:=yes"),
        ({"rate_hz": "0"}, "rate_hz:=0: expected a positive number"),
        ({"camera": "replay"}, "camera:=replay needs camera_path"),
        ({"params_file": "/nonexistent.yaml"}, "no such file"),
    ],
)
def test_bad_arguments_are_refused(values, message):
    with pytest.raises(system.SystemArgumentError) as caught:
        system.resolve_arguments(values)
    assert message in str(caught.value)


def test_cli_syntax():
    assert system.parse_cli(["goal:=drawer.png", "use_sim:=true", "params_file:="]) == {
        "goal": "drawer.png", "use_sim": "true", "params_file": ""}
    with pytest.raises(system.SystemArgumentError, match="expected name:=value"):
        system.parse_cli(["goal=drawer.png"])


def test_policy_yaml_lists_exactly_the_declared_parameters(tmp_path):
    from test_policy_artifacts import exported_policy

    goal = tmp_path / "goal.png"
    cv2.imwrite(str(goal), np.zeros((32, 32, 3), np.uint8))
    from mqe_policy.policy_node import NODE_NAME, PolicyNode

    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        node = PolicyNode(context=context, cli_args=["--ros-args", "-p", f"model:={exported_policy('mqe')}", "-p", f"goal:={goal}"])
        declared = {name: p.value for name, p in node.get_parameters_by_prefix("").items() if name not in ROS_BUILTIN_PARAMETERS}
        node.destroy_node()
    finally:
        rclpy.try_shutdown(context=context)
    from_yaml = yaml.safe_load((PACKAGE_DIR / "config" / "policy.yaml").read_text())[NODE_NAME]["ros__parameters"]
    assert set(from_yaml) == set(declared) - {"goal_dir"}  # goal_dir's default depends on the install
    for name in ("rate_hz", "max_frame_age", "reject_identical_frames", "threads", "autostart"):
        assert from_yaml[name] == declared[name], name


def run_cli(*words: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mqe_policy.run", *words], capture_output=True, text=True, timeout=60)


def test_mqe_run_refuses_bad_arguments_and_bad_inputs_with_one_line(tmp_path):
    result = run_cli("goal:=drawer.png", "robot:=wx250")
    assert result.returncode == 2 and result.stderr.strip().count("\n") == 0
    assert "unknown argument(s) ['robot']" in result.stderr
    result = run_cli("goal:=drawer.png", "use_sm:=true")
    assert result.returncode == 2 and result.stderr.strip().count("\n") == 0
    assert "unknown argument(s) ['use_sm']; arguments are: goal, goal_dir, model, robot_model, use_sim" in result.stderr
    result = run_cli(f"model:={tmp_path / 'missing'}", "goal:=drawer.png", "use_sim:=true")
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.startswith("mqe-run")]
    assert lines == [f"mqe-run: refusing to start: {tmp_path / 'missing'}: no such policy directory (expected the output of mqe-export)"]


def test_dds_profile_for_full_frames_is_set_unless_the_operator_chose_one():
    path = system.dds_environment({})["FASTDDS_DEFAULT_PROFILES_FILE"]
    assert Path(path).is_file() and "<segment_size>16777216</segment_size>" in Path(path).read_text()
    assert set(system.dds_environment({"ROS_DISTRO": "humble"})) == {"FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE"}
    assert system.dds_environment({"FASTRTPS_DEFAULT_PROFILES_FILE": "/etc/mine.xml"}) == {}
    tree = ast.parse(LAUNCH_FILE.read_text())
    setters = [c for c in ast.walk(tree) if isinstance(c, ast.comprehension) and ast.unparse(c.iter) == "system.dds_environment().items()"]
    assert len(setters) == 1


def test_model_defaults_to_the_kept_sim_policy_or_mqe_model(monkeypatch):
    from mqe.sim.demo_policy import KEPT_EXPORT

    monkeypatch.delenv("MQE_MODEL", raising=False)
    assert system.resolve_arguments({})["model"] == str(REPO / "training" / "mqe" / "sim" / "policy") == str(KEPT_EXPORT)
    monkeypatch.setenv("MQE_MODEL", "/opt/policies/drawer")
    assert system.resolve_arguments({})["model"] == "/opt/policies/drawer"
    assert system.resolve_arguments({"model": "/x"})["model"] == "/x"


def test_mqe_run_shuts_down_cleanly_on_two_sigints(tmp_path):
    """Without a terminal SIGINT arrives twice (see test_system); the second must not interrupt the
    nodes' destruction: exit 0, no traceback."""
    import os
    import signal
    import time

    from test_policy_artifacts import exported_policy

    goal = tmp_path / "goal.png"
    cv2.imwrite(str(goal), np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8))
    log = tmp_path / "mqe-run.log"
    with log.open("w") as output:
        process = subprocess.Popen([sys.executable, "-m", "mqe_policy.run", f"goal:={goal}", f"model:={exported_policy('mqe')}",
                                    "use_sim:=true"], stdout=output, stderr=subprocess.STDOUT, env=dict(os.environ))
    try:
        deadline = time.monotonic() + 60
        while "Ctrl-C stops" not in log.read_text() and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.1)
        assert "Ctrl-C stops" in log.read_text(), log.read_text()
        time.sleep(1.0)
        process.send_signal(signal.SIGINT)
        time.sleep(0.02)
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0, log.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert "Traceback" not in log.read_text() and "KeyboardInterrupt" not in log.read_text(), log.read_text()


def test_goal_directory_is_never_the_current_directory(monkeypatch, tmp_path):
    monkeypatch.delenv("MQE_GOAL_DIR", raising=False)
    assert system.default_goal_dir() == REPO / "goal_images"  # this editable checkout
    monkeypatch.setattr(system, "find_repository_dir", lambda name: None)  # a plain pip install
    monkeypatch.chdir(tmp_path)
    assert system.default_goal_dir() == Path(sys.prefix) / "share" / "mqe_policy" / "goal_images"
    monkeypatch.setenv("MQE_GOAL_DIR", "/opt/goals")
    assert system.default_goal_dir() == Path("/opt/goals")


ROBOT_IMPORTS_SCRIPT = """
import importlib.abc, sys

class NoMujoco(importlib.abc.MetaPathFinder):  # the robot image installs mqe without the [sim] extra
    def find_spec(self, name, path=None, target=None):
        if name == "mujoco" or name.startswith("mujoco."):
            raise ImportError("no mujoco on the robot PC")

sys.meta_path.insert(0, NoMujoco())
from mqe_policy import system
import mqe_policy.policy_node, mqe_policy.run, mqe_policy.evaluation.cli, widowx_bridge.arm_node, widowx_bridge.camera_node
nodes = system.describe_nodes(system.resolve_arguments({"goal": "drawer.png", "model": "m"}))
print([n.executable for n in nodes], "mujoco" in sys.modules)
"""


def test_robot_imports_no_mujoco():
    """The robot PC runs the real system without MuJoCo: only the simulated tabletop imports it."""
    done = subprocess.run([sys.executable, "-c", ROBOT_IMPORTS_SCRIPT], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "['camera_node', 'arm_node', 'policy_node'] False"
