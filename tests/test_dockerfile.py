"""The robot image's Dockerfile cannot be built here (no Docker engine); it is linted instead."""

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
    for path in ("training", "ros2_ws/src", "goal_images", "docker/entrypoint.sh", "docker/requirements-robot.txt"):
        assert f"COPY {path}" in text, path
        assert (ROOT / path).exists(), path
    assert "colcon build --packages-select widowx_bridge mqe_policy" in text
