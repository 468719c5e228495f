"""mqe-demo end to end on the simulated tabletop: its own process (MuJoCo's EGL renderer and the
TensorFlow this test session imports cannot share one), a real (tiny) export, real DDS."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import cv2
import numpy as np
import pytest

from mqe_policy import demo
from test_policy_artifacts import exported_policy


def run_demo(*arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mqe_policy.demo", *arguments], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "MUJOCO_GL": "egl"})


@pytest.mark.flaky(reruns=2)  # real nodes over DDS with an action-count check: see test_system.py
def test_demo_runs_the_tabletop_closed_loop_and_scores_it(tmp_path):
    done = run_demo("--model", str(exported_policy("mqe")), "--steps", "5", "--workdir", str(tmp_path))
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    out = done.stdout
    assert "task single_pnp seed 1000: put the" in out and "lockstep clock" in out
    assert int(re.search(r"arm steps (\d+)", out).group(1)) >= 5
    assert re.search(r"score\s+[01]/1 points \(sim/score\)", out)
    assert re.search(r"completed the task:\s+(yes|no)", out)
    strip = cv2.imread(str(tmp_path / "rollout.png"))
    assert strip is not None and strip.shape[0] == demo.STRIP_HEIGHT + 26 and strip.shape[1] > 4 * demo.STRIP_HEIGHT
    goal = cv2.imread(str(tmp_path / "sim_single_pnp_seed1000.png"))
    assert goal.shape == (480, 640, 3) and goal.std() > 5


def test_demo_refuses_bad_input_with_one_line(tmp_path):
    done = run_demo("--task", "juggle", "--workdir", str(tmp_path))
    assert done.returncode == 2 and done.stderr.strip().splitlines()[-1].startswith("mqe-demo: task: unknown task 'juggle'")
    (tmp_path / "not_a_policy").mkdir()
    done = run_demo("--model", str(tmp_path / "not_a_policy"), "--workdir", str(tmp_path))
    lines = [line for line in done.stderr.splitlines() if line.startswith("mqe-demo")]
    assert done.returncode == 2 and len(lines) == 1 and lines[0].startswith("mqe-demo: refusing to start:"), done.stderr


def test_rollout_strip_shows_the_goal_then_first_and_last_frames():
    frames = [np.full((48, 64, 3), value, np.uint8) for value in range(0, 200, 10)]
    strip = demo.rollout_strip(frames, np.full((48, 64, 3), 255, np.uint8), "caption")
    tile_width = round(64 * demo.STRIP_HEIGHT / 48)
    assert strip.shape == (demo.STRIP_HEIGHT + 26, tile_width * (1 + demo.STRIP_FRAMES), 3)
    body = strip[26 + 30:]  # below the labels
    assert body[:, :tile_width].min() == 255  # the goal first
    assert body[:, tile_width:2 * tile_width].max() == 0 and body[:, -tile_width:].min() == 190  # first and last frame
