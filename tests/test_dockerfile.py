"""The robot image's Dockerfile cannot be built here (no Docker engine); it is linted instead."""

import ast
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_dockerfile_passes_hadolint():
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    result = subprocess.run([hadolint, "Dockerfile"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_copies_what_the_robot_needs():
    text = (ROOT / "Dockerfile").read_text()
    for path in ("training", "ros2_ws/src", "goal_images", "launch", "docker/entrypoint.sh", "docker/requirements-robot.txt"):
        assert f"COPY {path}" in text, path
        assert (ROOT / path).exists(), path
    assert "colcon build --packages-select widowx_bridge mqe_policy" in text


def test_what_the_robot_runs_is_python_3_10():
    """The robot PC runs ROS 2 Humble on Ubuntu 22.04, whose Python is 3.10 (this machine has 3.11):
    the image's code must not use 3.11 syntax. Library APIs are not checked by this."""
    files = [path for root in ("ros2_ws/src", "launch", "training/mqe") for path in sorted((ROOT / root).rglob("*.py"))]
    assert len(files) > 40
    for path in files:
        ast.parse(path.read_text(), filename=str(path), feature_version=(3, 10))
