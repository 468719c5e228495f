"""docs/operators.md names only commands that exist: every `mqe-*` tool is a console script of one of
the project's packages (and every --flag it is given is one the tool takes), every `make X` a
Makefile target, every launch file one the project ships (or Interbotix's driver launch), every
`ros2 run` executable an entry point, every topic, service and node parameter one the project
defines, and every `name:=value` a launch argument."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

from mqe_policy import parameters, system
from mqe_policy import topics as policy_topics
from widowx_bridge import arm_node, camera_node, tabletop
from widowx_bridge import topics as bridge_topics

REPO = Path(__file__).resolve().parents[1]
GUIDE = REPO / "docs" / "operators.md"
# Interbotix's driver launch (interbotix_ros_manipulators, humble: interbotix_ros_xsarms/
# interbotix_xsarm_control/launch/xsarm_control.launch.py), started by launch/robot.launch.py.
EXTERNAL_LAUNCH = {("interbotix_xsarm_control", "xsarm_control.launch.py")}
ROS2_VERBS = {"launch", "run", "service", "topic", "param", "bag"}


def console_scripts() -> dict[str, str]:
    scripts = {}
    for package in ("mqe_policy", "widowx_bridge"):
        tree = ast.parse((REPO / "ros2_ws" / "src" / package / "setup.py").read_text())
        call = next(c for c in ast.walk(tree) if isinstance(c, ast.Call) and getattr(c.func, "id", "") == "setup")
        entry_points = ast.literal_eval(next(k.value for k in call.keywords if k.arg == "entry_points"))
        for line in entry_points["console_scripts"]:
            name, target = (part.strip() for part in line.split("=", 1))
            scripts[name] = target
    import tomllib

    scripts.update(tomllib.loads((REPO / "training" / "pyproject.toml").read_text())["project"]["scripts"])
    return scripts


def makefile_targets() -> set[str]:
    return set(re.findall(r"^([A-Za-z][\w-]*):", (REPO / "Makefile").read_text(), re.MULTILINE))


def guide_commands() -> list[str]:
    """Every command line in the guide: lines of its ```bash blocks and inline code spans that start
    with a command word, with comments and line continuations removed."""
    text = GUIDE.read_text()
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.DOTALL):
        lines += [line.split("#", 1)[0].strip() for line in block.splitlines()]
    lines += re.findall(r"`([^`\n]+)`", re.sub(r"```.*?```", "", text, flags=re.DOTALL))
    starts = ("mqe-", "make ", "ros2 ", "docker ", "colcon ", "python3 ")
    return [line.strip() for line in lines if line.strip().startswith(starts)]


def topic_names() -> set[str]:
    return {value for module in (policy_topics, bridge_topics) for name, value in vars(module).items()
            if name.isupper() and isinstance(value, str) and "/" in value}


NODE_PARAMETERS = {"policy": {*parameters.policy_defaults(), "goal_dir"}, "camera": set(camera_node.DEFAULTS),
                   "widowx_arm": set(arm_node.DEFAULTS) | set(tabletop.DEFAULTS)}


def check(command: str, scripts: dict[str, str], targets: set[str]) -> list[str]:
    """What in one command does not exist (empty: all of it does)."""
    words = command.split()
    problems = []
    if words[0].startswith("mqe-"):
        if words[0] not in scripts:
            problems.append(f"{words[0]} is no console script")
        elif words[0] in ("mqe-capture-goal", "mqe-live-view"):
            usage = subprocess.run([sys.executable, "-m", scripts[words[0]].split(":")[0], "--help"], capture_output=True,
                                   text=True, timeout=60).stdout
            problems += [f"{words[0]} has no {flag}" for flag in words[1:] if flag.startswith("--") and flag not in usage]
    elif words[0] == "make":
        problems += [f"make {target}: no such target" for target in words[1:] if target not in targets]
    elif words[0] == "docker" and words[1] == "build":
        if not (REPO / "Dockerfile").is_file():
            problems.append("no Dockerfile")
    elif words[0] == "ros2":
        verb = words[1]
        if verb not in ROS2_VERBS:
            problems.append(f"ros2 {verb}: not a command the guide should use")
        if verb == "launch":
            if words[2].endswith(".launch.py"):  # a path: the repository's launch/ folder, in any checkout or the image
                if not (REPO / "launch" / Path(words[2]).name).is_file():
                    problems.append(f"{words[2]}: no such launch file in launch/")
                accepted = set(system.ARGUMENT_NAMES) | {"use_rviz"}
            else:
                package, launch_file = words[2], words[3]
                if (package, launch_file) in EXTERNAL_LAUNCH:
                    accepted = {"robot_model", "use_rviz"}
                elif not (REPO / "ros2_ws" / "src" / package / "launch" / launch_file).is_file():
                    problems.append(f"{package} {launch_file}: no such launch file")
                    accepted = set()
                else:
                    accepted = set(system.ARGUMENT_NAMES)
            problems += [f"{word}: unknown launch argument" for word in words if ":=" in word and word.split(":=")[0] not in accepted]
        elif verb == "run":
            if words[3] not in scripts or not (REPO / "ros2_ws" / "src" / words[2]).is_dir():
                problems.append(f"ros2 run {words[2]} {words[3]}: no such executable")
            for word in words:
                if ":=" in word and word.split(":=")[0] not in NODE_PARAMETERS["camera"] | NODE_PARAMETERS["widowx_arm"]:
                    problems.append(f"{word}: no such parameter")
        elif verb in ("service", "topic", "bag") and len(words) > 3:
            named = words[3] if verb != "bag" else next(word for word in words if word.startswith("/"))
            name = named.lstrip("/")
            if name not in topic_names() and "/" + name != policy_topics.DIAGNOSTICS:
                problems.append(f"{named}: no such topic or service")
            if verb == "service" and words[4:5] != ["std_srvs/srv/Trigger"]:
                problems.append(f"{command}: every service is a std_srvs/srv/Trigger")
        elif verb == "param":
            node, name = words[3].lstrip("/"), words[4]
            if name not in NODE_PARAMETERS.get(node, set()):
                problems.append(f"{node} has no parameter {name}")
    return problems


def test_the_guide_names_only_commands_that_exist():
    commands = guide_commands()
    scripts, targets = console_scripts(), makefile_targets()
    problems = [f"{command!r}: {problem}" for command in commands for problem in check(command, scripts, targets)]
    assert problems == []
    # the guide covers what an operator needs: each tool and each stop/recover service is named
    named = " ".join(commands)
    for needed in ("mqe-capture-goal", "mqe-live-view", "robot.launch.py", "run.launch.py", "xsarm_control.launch.py",
                   "/policy/stop", "/arm/torque_off", "/arm/reboot_motors", "/arm/reset", "/policy/capture_goal"):
        assert needed in named, needed


def test_the_check_catches_a_command_that_does_not_exist():
    scripts, targets = console_scripts(), makefile_targets()
    assert check("mqe-capture-gaol drawer.png", scripts, targets) == ["mqe-capture-gaol is no console script"]
    assert check("mqe-capture-goal drawer.png --overwrite", scripts, targets) == ["mqe-capture-goal has no --overwrite"]
    assert check("make bench-everything", scripts, targets) == ["make bench-everything: no such target"]
    assert check("ros2 launch mqe_policy run.launch.py use_sm:=true", scripts, targets) == ["use_sm:=true: unknown launch argument"]
    assert check("ros2 service call /arm/estop std_srvs/srv/Trigger", scripts, targets) == ["/arm/estop: no such topic or service"]
    assert check("ros2 param set /policy rate 10.0", scripts, targets) == ["policy has no parameter rate"]


@pytest.mark.parametrize("section", ["Hardware checklist", "Bring-up", "capturing a goal", "Watching a run",
                                     "Stopping and recovering", "Troubleshooting"])
def test_the_guide_has_each_section(section):
    assert re.search(rf"^## \d\. .*{section}", GUIDE.read_text(), re.MULTILINE | re.IGNORECASE), section


def test_troubleshooting_covers_the_known_failure_modes():
    text = GUIDE.read_text().split("## 6. Troubleshooting", 1)[1]
    for failure in ("No IK solution", "Camera not found", "Stale or repeated frames", "Motor errors and reboot",
                    "Driver not started", "Misspelled launch argument"):
        assert f"**{failure}**" in text, failure
