"""mqe-eval without ROS: scoring arithmetic against hand-computed tables (and the paper's Table 5
counts), protocol and results errors naming file and line, the report's files and PNGs."""

from __future__ import annotations

import json
import math
import sys

import pytest

from mqe_policy.evaluation.protocol import ProtocolError, load_protocol
from mqe_policy.evaluation.report import write_report
from mqe_policy.evaluation.results import ResultsError, ResultsFile, read_records
from mqe_policy.evaluation.scoring import PointsError, bootstrap_difference, check_points, summarize, win_rate
from mqe_policy.evaluation.session import plan

# Paper Table 5 (binary success counts out of 15): task -> method -> successes.
TABLE5 = {
    "single_pnp": {"MQE": 12, "GCBC": 5, "GCIQL": 10, "TRA": 9},
    "double_pnp": {"MQE": 10, "GCBC": 1, "GCIQL": 4, "TRA": 6},
    "triple_pnp": {"MQE": 4, "GCBC": 0, "GCIQL": 0, "TRA": 1},
    "quadruple_pnp": {"MQE": 2, "GCBC": 0, "GCIQL": 0, "TRA": 0},
    "open_drawer": {"MQE": 12, "GCBC": 10, "GCIQL": 5, "TRA": 11},
    "open_drawer_and_place": {"MQE": 5, "GCBC": 0, "GCIQL": 0, "TRA": 1},
}
MAX_POINTS = {"single_pnp": 1, "double_pnp": 2, "triple_pnp": 3, "quadruple_pnp": 4, "open_drawer": 1, "open_drawer_and_place": 2}


def test_hand_computed_summary():
    # double PnP, 4 trials: points 2, 1, 0, 2 -> progress 1, .5, 0, 1: mean .625, s.d. (ddof 1) .478714, s.e. .239357
    summary = summarize([2, 1, 0, 2], 2)
    assert summary.trials == 4 and summary.successes == 2
    assert summary.progress_mean == pytest.approx(0.625)
    assert summary.progress_se == pytest.approx(math.sqrt(((0.375**2) * 2 + 0.125**2 + 0.625**2) / 3) / 2)
    assert summarize([1], 1).progress_se == 0.0
    for bad in (-1, 3, 1.5, True, "2"):
        with pytest.raises(PointsError):
            check_points(bad, 2)


def test_bootstrap_and_win_rate():
    diff, low, high = bootstrap_difference([1.0] * 10, [0.0] * 10, resamples=200)
    assert (diff, low, high) == (1.0, 1.0, 1.0)
    diff, low, high = bootstrap_difference([1, 0, 1, 1], [0, 0, 1, 0], resamples=2000)
    assert diff == pytest.approx(0.5) and low < diff < high
    assert win_rate(["MQE", "GCBC", "tie", "MQE"], "MQE", "GCBC") == (0.625, 2, 1, 1)


def _session_from_table5(path):
    """A results file whose runs reproduce Table 5: successes get max points, the rest 0."""
    results = ResultsFile(path)
    results.append({"record": "session", "protocol_sha256": "x"})
    for task, row in TABLE5.items():
        for method, successes in row.items():
            for trial in range(15):
                points = MAX_POINTS[task] if trial < successes else 0
                results.append({"record": "run", "run_id": f"{task}/{trial}/{method}", "task": task, "trial": trial,
                                "method": method, "points": points, "max_points": MAX_POINTS[task]})
    return results


def test_table5_fixture_report(tmp_path):
    _session_from_table5(tmp_path / "r.jsonl")
    files = write_report(tmp_path / "r.jsonl", tmp_path / "out", resamples=300)
    table = files["table.md"].read_text()
    assert "| double_pnp | 0.07 ± 0.07 (1/15) | 0.27 ± 0.12 (4/15) | 0.67 ± 0.13 (10/15) | 0.40 ± 0.13 (6/15) |" in table
    csv_rows = files["table.csv"].read_text().splitlines()
    assert "double_pnp,MQE,15,0.666667,0.125988,10,2" in csv_rows
    for task, row in TABLE5.items():
        for method, successes in row.items():
            assert f"({successes}/15)" in table
    assert files["progress.png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| double_pnp | MQE − TRA | +0.267 |" in files["differences.md"].read_text()


def test_results_corrupt_and_truncated_lines(tmp_path):
    path = tmp_path / "r.jsonl"
    _session_from_table5(path)
    good = path.read_bytes()
    path.write_bytes(good + b'{"record": "run", "tas')
    with pytest.raises(ResultsError, match=rf"{path}:{good.count(chr(10).encode()) + 1}: truncated"):
        read_records(path)
    lines = good.split(b"\n")
    lines[3] = b"{not json"
    path.write_bytes(b"\n".join(lines))
    with pytest.raises(ResultsError, match=rf"{path}:4: corrupt results line"):
        read_records(path)
    assert path.read_bytes() == b"\n".join(lines)  # nothing rewritten


def test_protocol_errors_name_file_and_line(tmp_path):
    path = tmp_path / "p.yaml"
    export = tmp_path / "export"
    export.mkdir()
    goal = tmp_path / "goal.png"
    goal.write_bytes(b"x")
    base = f"methods:\n  MQE: {export}\ntasks:\n  - name: t\n    max_points: 2\n    trials: 2\n    time_limit_steps: 5\n"
    cases = [
        (base + "    goal_image: missing.png\n", ":8: t.goal_image: no such file"),
        (base.replace(str(export), str(tmp_path / "none")) + f"    goal_image: {goal}\n", ":2: methods.MQE: no policy directory"),
        (base.replace("max_points: 2", "max_points: 0") + f"    goal_image: {goal}\n", ":5: t.max_points"),
        (base + f"    goal_image: {goal}\n    colour: red\n", ":9: task: unknown field 'colour'"),
        (base + f"    goal_image: {goal}\nmode: ab\n", ":2: methods: mode ab compares exactly 2"),
        ("target: sim\n" + base + "    sim_task: t\nseeds: [0]\n", ":10: seeds: target sim needs one seed per trial"),
        ("tasks: [\n", ": not valid YAML"),
    ]
    for text, expected in cases:
        path.write_text(text)
        with pytest.raises(ProtocolError) as error:
            load_protocol(path)
        assert str(error.value).startswith(str(path)) and expected in str(error.value), (text, str(error.value))
    path.write_text(base + f"    goal_image: {goal}\n")
    protocol = load_protocol(path)
    with pytest.raises(ProtocolError, match="unknown task 'x'"):
        protocol.task("x")


def test_default_protocols_and_plan_are_blinded():
    from pathlib import Path

    config = Path(__file__).resolve().parents[1] / "ros2_ws/src/mqe_policy/config"
    from mqe.sim import TASKS

    sim = load_protocol(config / "eval_sim.yaml", sim_task_names=tuple(TASKS), check_files=False)
    robot = load_protocol(config / "eval_robot.yaml", check_files=False)
    for protocol in (sim, robot):
        assert {t.name: t.max_points for t in protocol.tasks} == MAX_POINTS
        assert all(t.trials == 15 for t in protocol.tasks)
    trials = plan(sim)
    assert len(trials) == 6 * 15 and all(sorted(r.label for r in runs) == ["A", "B", "C"] for runs in trials)
    orders = {tuple(r.method for r in runs) for runs in trials}
    assert len(orders) > 1  # the order really changes between trials
    assert plan(sim) == trials  # and is the same plan on resume
    assert all(runs[0].seed == runs[0].trial for runs in trials)


def test_report_imports_no_ros():
    import subprocess

    code = ("import sys; import mqe_policy.evaluation.report, mqe_policy.evaluation.session, mqe_policy.evaluation.cli; "
            "assert 'rclpy' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
