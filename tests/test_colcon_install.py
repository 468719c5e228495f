"""Both ROS packages built by colcon in a fresh workspace outside the repository, then used from the
install space only, as on a robot PC with Humble + Interbotix (docs/launch.md, "Existing workspace").

The workspace has the shape of the documented install (the repository cloned into a workspace's
src/), built with the documented colcon command; the install space's own setup.sh gives the
environment. From there: every executable the launch description names is where `ros2 run` and
launch_ros look for it (lib/<package>/<executable>), the config files and goal images are where
get_package_share_directory finds them, and every installed console script starts and stops cleanly.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
DOCS = REPO / "docs" / "launch.md"
PACKAGES = ("widowx_bridge", "mqe_policy")
# What a workspace needs of the repository: the two packages and the goal images they install.
COPIED = ("ros2_ws/src/widowx_bridge", "ros2_ws/src/mqe_policy", "goal_images", "launch")


def install_line() -> list[str]:
    """The shell lines of the documented install for an existing Humble + Interbotix workspace."""
    text = DOCS.read_text()
    block = re.search(r"<!-- install-line -->\s*```bash\n(.*?)```", text, re.S)
    assert block, f"{DOCS}: no ```bash block after <!-- install-line -->"
    return [line.strip() for line in block.group(1).splitlines() if line.strip() and not line.strip().startswith("#")]


@pytest.fixture(scope="module")
def install_space(tmp_path_factory):
    colcon = VENV_BIN / "colcon"
    assert colcon.is_file(), "colcon is missing: pip install colcon-common-extensions ros-ament-package (requirements-dev.txt)"
    workspace = tmp_path_factory.mktemp("interbotix_ws")
    clone = workspace / "src" / "mqe"
    ignore = shutil.ignore_patterns("*.egg-info", "__pycache__", "build", "install", "log")
    for relative in COPIED:
        shutil.copytree(REPO / relative, clone / relative, ignore=ignore)
    (colcon_line,) = [line for line in install_line() if line.startswith("colcon build")]
    env = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}"}
    built = subprocess.run(colcon_line.split(), cwd=workspace, env=env, capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    # The environment `source install/setup.bash` gives, from the install space's own hooks.
    sourced = subprocess.run(["bash", "-c", ". install/setup.sh && env -0"], cwd=workspace, env=env,
                             capture_output=True, timeout=60, check=True)
    environment = dict(entry.split("=", 1) for entry in sourced.stdout.decode().split("\0") if "=" in entry)
    environment.pop("MQE_GOAL_DIR", None)
    environment.pop("MQE_MODEL", None)
    return workspace / "install", environment


def run_installed(environment, code: str) -> str:
    result = subprocess.run([sys.executable, "-c", code], env=environment, capture_output=True, text=True, timeout=120, cwd="/")
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_the_documented_install_line_covers_what_rosdep_cannot(install_space):
    """package.xml cannot declare mqe or modern_robotics (rosdep has no keys for them): the pip line
    must install every import of the two packages that package.xml does not declare."""
    (pip_line,) = [line for line in install_line() if "pip install" in line]
    declared = set()
    for package in PACKAGES:
        text = (REPO / "ros2_ws" / "src" / package / "package.xml").read_text()
        declared |= set(re.findall(r"<exec_depend>([^<]+)</exec_depend>", text))
    rosdep_to_module = {"python3-numpy": "numpy", "python3-opencv": "cv2", "python3-yaml": "yaml", "python3-psutil": "psutil"}
    provided = {rosdep_to_module.get(key, key) for key in declared} | set(PACKAGES)
    optional = {"interbotix_xs_modules", "interbotix_common_modules",  # built by the Interbotix installer (backend:=interbotix)
                "pyrealsense2",  # librealsense's wrapper (camera source:=realsense)
                "torch"}  # mqe-closed-loop-bench's one-off export of its ResNet34 policy only, never on the robot's path
    imported = set()
    for package in PACKAGES:
        for path in (REPO / "ros2_ws" / "src" / package / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    imported |= {alias.name.split(".")[0] for alias in node.names}
                elif isinstance(node, ast.ImportFrom) and node.level == 0:
                    imported.add(node.module.split(".")[0])
    needed = sorted(imported - set(sys.stdlib_module_names) - provided - optional)
    # what the pip line installs, as the modules it provides (mqe-eval records MCAP and draws reports)
    modules = {"./mqe/training": "mqe", "modern-robotics": "modern_robotics", "mcap": "mcap",
               "mcap-ros2-support": "mcap_ros2", "matplotlib": "matplotlib"}
    installed = {modules[word] for word in pip_line.split() if word in modules}
    assert needed == sorted(installed), (needed, pip_line)
    assert (REPO / "training" / "pyproject.toml").is_file()
    assert 'name = "mqe"' in (REPO / "training" / "pyproject.toml").read_text()


def test_executables_config_and_goal_images_are_found_in_the_install_space(install_space):
    install, environment = install_space
    report = run_installed(environment, """
import json
from ament_index_python.packages import get_package_share_directory
import mqe_policy, widowx_bridge
from mqe_policy import system
arguments = system.resolve_arguments({"goal": "synthetic_start_pose.png", "model": "/policies/mqe", "use_sim": "true"})
print(json.dumps({
    "modules": [mqe_policy.__file__, widowx_bridge.__file__],
    "shares": {p: get_package_share_directory(p) for p in ("mqe_policy", "widowx_bridge")},
    "config_dir": str(system.config_dir()),
    "goal_dir": str(system.default_goal_dir()),
    "default_model": arguments["model"],
    "no_model": system.resolve_arguments({})["model"],
    "nodes": [[n.package, n.executable, list(n.parameter_files)] for n in system.describe_nodes(arguments)],
    "dds": system.dds_environment({}),
}))
""")
    import json

    found = json.loads(report)
    assert all(path.startswith(str(install)) for path in found["modules"]), found["modules"]  # not the repository's
    share = Path(found["shares"]["mqe_policy"])
    assert share == install / "mqe_policy" / "share" / "mqe_policy"
    assert Path(found["config_dir"]) == share / "config"
    assert Path(found["goal_dir"]) == share / "goal_images"
    for name in sorted(path.name for path in (REPO / "goal_images").glob("*.png")):
        assert (share / "goal_images" / name).is_file(), name
    assert found["no_model"] == "", "an installed package has no default policy (model:= or $MQE_MODEL)"
    for package, executable, parameter_files in found["nodes"]:
        assert os.access(install / package / "lib" / package / executable, os.X_OK), (package, executable)
        for path in parameter_files:
            assert Path(path).is_file() and Path(path).is_relative_to(install), path
    assert Path(found["dds"]["FASTDDS_DEFAULT_PROFILES_FILE"]).is_file()
    assert (share / "launch" / "run.launch.py").is_file()  # launch/robot.launch.py includes it from there
    assert (install / "widowx_bridge" / "share" / "widowx_bridge" / "config" / "arm.yaml").is_file()


def installed_scripts(install: Path) -> dict[str, Path]:
    scripts = {}
    for package in PACKAGES:
        for path in (install / package / "lib" / package).iterdir():
            scripts[path.name] = path
    return scripts


def stop_with_sigint(process: subprocess.Popen, log: Path, ready: str, timeout: float = 60.0) -> tuple[int, str]:
    deadline = time.monotonic() + timeout
    while ready not in log.read_text() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    text = log.read_text()
    assert ready in text, f"never printed {ready!r}: {text[-2000:]}"
    time.sleep(1.0)  # running, not still between its start-up line and its executor
    process.send_signal(signal.SIGINT)
    return process.wait(timeout=30), log.read_text()


def test_every_installed_entry_point_starts_and_stops_cleanly(install_space, tmp_path):
    from test_policy_artifacts import exported_policy

    install, environment = install_space
    scripts = installed_scripts(install)
    share = install / "mqe_policy" / "share" / "mqe_policy"
    goal = sorted((share / "goal_images").glob("*.png"))[0].name  # resolved from the share, by name
    model = exported_policy("mqe")
    replay = tmp_path / "replay"
    replay.mkdir()
    rng = np.random.default_rng(0)
    for index in range(10):
        cv2.imwrite(str(replay / f"{index:02d}.png"), rng.integers(0, 256, (120, 160, 3), dtype=np.uint8))
    runs = {  # executable -> (arguments, the line that says it is up)
        "camera_node": (["--ros-args", "-p", "source:=replay", "-p", f"replay_path:={replay}"], "camera ready"),
        "arm_node": (["--ros-args", "-p", "backend:=sim"], "arm ready"),
        "sim_tabletop": (["--ros-args", "-p", "camera_width:=160", "-p", "camera_height:=120"], "simulated tabletop: task"),
        "policy_node": (["--ros-args", "-p", f"model:={model}", "-p", f"goal:={goal}", "-p", "threads:=1"], "Hz, running"),
        "mqe-run": ([f"goal:={goal}", f"model:={model}", "use_sim:=true", "camera:=replay", f"camera_path:={replay}",
                     "--ros-args", "--log-level", "info"], "Ctrl-C stops"),
    }
    assert set(runs) <= set(scripts), sorted(scripts)
    for name, (arguments, ready) in runs.items():
        log = tmp_path / f"{name}.log"
        with log.open("w") as output:
            process = subprocess.Popen([str(scripts[name]), *arguments], env=environment, stdout=output, stderr=subprocess.STDOUT, cwd="/")
        try:
            code, text = stop_with_sigint(process, log, ready)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        assert code == 0 and "Traceback" not in text, f"{name}: exit {code}\n{text[-3000:]}"
        if name == "policy_node":
            assert str(share / "goal_images" / goal) in text  # the goal came from the package share
    # The tools that are not nodes: their entry points load from the install space and answer --help.
    for name in sorted(set(scripts) - set(runs)):
        result = subprocess.run([str(scripts[name]), "--help"], env=environment, capture_output=True, text=True, timeout=120, cwd="/")
        assert result.returncode == 0 and "Traceback" not in result.stderr, f"{name}: {result.stderr[-2000:]}"
