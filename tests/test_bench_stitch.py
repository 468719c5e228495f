"""mqe-bench stitch: the Table 5 layout from hand-made results, and a smoke run end to end (real MuJoCo
data generation, real training of two agents, closed-loop episodes through ArmController, sim scorer)."""

import json
import os
import subprocess
import sys

import numpy as np

from mqe.bench.stitch import mean_se, table


def test_table_counts_binary_successes_and_progress():
    results = {"mqe": {"double_pnp": [(2, 2), (1, 2), (0, 2)]}, "gcbc": {"double_pnp": [(0, 2), (0, 2), (1, 2)]}}
    text = table(results, ["double_pnp"])
    assert "| double_pnp | 1/3 | 0/3 |" in text
    mean, se = mean_se([1.0, 0.5, 0.0])
    assert mean == 0.5 and abs(se - 0.5 / np.sqrt(3)) < 1e-12
    assert f"| double_pnp | 0.50 ± {se:.2f} | 0.17 ± 0.17 |" in text
    assert "| double_pnp | 2 / 1 | 1 / 0 |" in text  # per stage: >= 1 point, >= 2 points


def test_smoke_run_end_to_end(tmp_path):
    # a subprocess: MuJoCo's EGL context is per process and other tests may hold one
    env = {**os.environ, "MUJOCO_GL": "egl"}
    command = [sys.executable, "-m", "mqe.bench.cli", "stitch", "--out", str(tmp_path), "--episodes", "3",
               "--steps", "5", "--trials", "1", "--horizon", "3", "--agents", "mqe", "gcbc", "--batch-size", "32",
               "--width", "32", "--tasks", "single_pnp", "open_drawer_and_place"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "| task | mqe | gcbc |" in done.stdout and "| open_drawer_and_place |" in done.stdout
    report = json.loads((tmp_path / "results.json").read_text())
    assert report["steps"] == 5 and report["machine"]["cores"] >= 1
    for agent in ("mqe", "gcbc"):
        for task, trials in report["results"][agent].items():
            assert len(trials) == 1
            points, max_points = trials[0]
            assert 0 <= points <= max_points and max_points >= 1
    train = np.load(tmp_path / "train_scaled.npz")
    assert train["observations"].shape[1] == 40 and train["terminals"][-1]
    assert np.abs(train["actions"]).max() <= 1.0
    assert train["terminals"].sum() == report["data"]["episodes"]["train"]
    assert -1.0 <= report["diagnostics"]["mqe"][0]["spearman_steps_to_go"] <= 1.0  # MQE has a critic distance
    assert report["diagnostics"]["gcbc"] == [None]
    # every trial as an mqe-eval results record: mqe-eval's report reads them
    from mqe_policy.evaluation.report import write_report

    files = write_report(tmp_path / "results.jsonl", tmp_path / "report", resamples=100)
    table_text = files["table.md"].read_text()
    assert "| Task | gcbc | mqe |" in table_text and "| open_drawer_and_place |" in table_text
    assert files["progress.png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
