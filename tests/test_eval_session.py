"""The session logic without ROS (ros2/examples style: the node-free logic tested on its own): A/B
mode with preferences, the sim target's scoring path (points taken from the sim/score answer, checked
against the protocol), and a protocol edited under a running session. The ROS side of the same
session runs over DDS in test_eval_system.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from mqe_policy.evaluation.protocol import ProtocolError, load_protocol
from mqe_policy.evaluation.report import write_report
from mqe_policy.evaluation.results import read_records
from mqe_policy.evaluation.scoring import PointsError
from mqe_policy.evaluation.session import Evaluator, Session


class SimAnswers:
    """The System interface with sim/score answers given per (method, seed)."""

    def __init__(self, points: dict, max_points: int = 2):
        self.points, self.max_points, self.calls = points, max_points, []

    def reset(self, run):
        self.calls.append(("reset", run.task.sim_task, run.seed))

    def run_policy(self, run, policy_dir, recording, attachments):
        self.calls.append(("run", run.method, run.seed))
        self.current = run
        return {"steps_run": run.task.time_limit_steps}

    def sim_score(self, run):
        return {"task": run.task.sim_task, "seed": run.seed, "points": self.points[(run.method, run.seed)],
                "max_points": self.max_points, "details": {"objects_on_target": 0}}


def protocol_file(tmp_path: Path) -> Path:
    for name in ("mqe", "gcbc"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "policy.onnx").write_text(name)
    path = tmp_path / "ab.yaml"
    path.write_text("mode: ab\ntarget: sim\nmethods:\n  MQE: mqe\n  GCBC: gcbc\nseeds: [4, 5, 6]\n"
                    "tasks:\n  - name: double_pnp\n    sim_task: double_pnp\n    max_points: 2\n    trials: 3\n    time_limit_steps: 5\n")
    return path


def test_ab_session_on_the_sim_scorer(tmp_path):
    protocol = load_protocol(protocol_file(tmp_path), sim_task_names=("double_pnp",))
    points = {("MQE", 4): 2, ("GCBC", 4): 0, ("MQE", 5): 1, ("GCBC", 5): 1, ("MQE", 6): 0, ("GCBC", 6): 2}
    system = SimAnswers(points)
    answers = iter(["A", "tie", "B"])
    shown = []
    session = Session(protocol, tmp_path / "r.jsonl", tmp_path / "rec", system,
                      Evaluator(read=lambda prompt: next(answers), write=shown.append, wait_for_enter=False))
    assert session.run() == 6
    records = read_records(tmp_path / "r.jsonl")
    runs = [r for r in records if r["record"] == "run"]
    assert {(r["method"], r["seed"]): r["points"] for r in runs} == points
    assert all(r["scorer"] == "sim/score" for r in runs)
    # Both methods of a trial start from the same seed: reset before each run with the trial's seed.
    assert [c for c in system.calls if c[0] == "reset"] == [("reset", "double_pnp", s) for s in (4, 4, 5, 5, 6, 6)]
    preferences = [r for r in records if r["record"] == "preference"]
    assert [p["preferred"] == p["labels"].get(a, "tie") for p, a in zip(preferences, ["A", "tie", "B"])] == [True] * 3
    assert not any("MQE" in line or "GCBC" in line for line in shown)
    files = write_report(tmp_path / "r.jsonl", tmp_path / "out", resamples=100)
    assert "A/B preferences" in files["differences.md"].read_text()
    # Resuming a complete session runs nothing and asks nothing.
    assert Session(protocol, tmp_path / "r.jsonl", tmp_path / "rec", system, Evaluator(read=None)).run() == 0


def test_sim_points_out_of_range_and_protocol_changed(tmp_path):
    path = protocol_file(tmp_path)
    protocol = load_protocol(path)
    bad = SimAnswers({("MQE", 4): 3, ("GCBC", 4): 3})
    with pytest.raises(PointsError, match="not a whole number of points in 0..2"):
        Session(protocol, tmp_path / "r.jsonl", tmp_path / "rec", bad, Evaluator(wait_for_enter=False)).run()
    before = (tmp_path / "r.jsonl").read_bytes()
    path.write_text(path.read_text().replace("time_limit_steps: 5", "time_limit_steps: 6"))
    with pytest.raises(ProtocolError, match=r"ab.yaml:1: the protocol changed under a running session"):
        Session(protocol, tmp_path / "r.jsonl", tmp_path / "rec", SimAnswers({}), Evaluator(wait_for_enter=False)).run()
    assert (tmp_path / "r.jsonl").read_bytes().startswith(before)
    # A new load of the edited protocol against the old results file is refused, naming the session line.
    with pytest.raises(Exception, match=r"r.jsonl:1: recorded under a different protocol"):
        Session(load_protocol(path), tmp_path / "r.jsonl", tmp_path / "rec", SimAnswers({}), Evaluator()).run()
