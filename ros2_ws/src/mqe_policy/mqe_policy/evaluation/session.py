"""The session: the plan of runs, the evaluator's prompts, scoring and resume. No ROS here - the
system (policy processes, arm, sim scorer, recorder) is passed in (ros_system.RosSystem on the
robot and in the simulator; tests may pass their own).

Plan: for each task, trial k = 1..trials; each trial runs every method once from the same start
state, in an order shuffled per trial (seeded by the protocol's session_seed, so a resumed session
continues the same plan). The evaluator sees only "policy A", "policy B", ...: the label is the run's
position in the shuffled order, never the method. In A/B mode (two methods) the evaluator also says
which run of the pair was better (RoboArena-style pairwise preference).
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
import string
import sys
import time
from pathlib import Path
from typing import Callable, Protocol as TypingProtocol

from mqe_policy.evaluation.protocol import Protocol, ProtocolError, Task, policy_fingerprint
from mqe_policy.evaluation.results import ResultsError, ResultsFile
from mqe_policy.evaluation.scoring import PointsError, check_points, progress, success


@dataclasses.dataclass(frozen=True)
class Run:
    task: Task
    trial: int  # 0-based
    method: str
    label: str  # what the evaluator sees: A, B, ...
    seed: int | None  # sim seed of the trial (every method of a trial starts from the same state)

    @property
    def run_id(self) -> str:
        return f"{self.task.name}/{self.trial}/{self.method}"

    @property
    def trial_id(self) -> str:
        return f"{self.task.name}/{self.trial}"


def plan(protocol: Protocol) -> list[list[Run]]:
    """Trials in order, each the list of its runs in the order they are run."""
    trials = []
    for task in protocol.tasks:
        for trial in range(task.trials):
            order = sorted(protocol.methods)
            random.Random(f"{protocol.session_seed}/{task.name}/{trial}").shuffle(order)
            seed = protocol.seeds[trial] if protocol.target == "sim" else None
            trials.append([Run(task, trial, method, string.ascii_uppercase[i], seed) for i, method in enumerate(order)])
    return trials


class System(TypingProtocol):
    def reset(self, run: Run) -> None:
        """Bring the scene to the trial's start state (sim: sim_task/sim_seed + arm/reset; robot: arm/reset)."""

    def run_policy(self, run: Run, policy_dir: Path, recording: Path, attachments: dict) -> dict:
        """Run the method's policy for the task's time limit, recording into `recording`; returns
        facts about the run (steps_run, ...)."""

    def sim_score(self, run: Run) -> dict:
        """The simulator's score of the scene now: {"points", "max_points", "details", ...}."""


class Evaluator:
    """The person at the terminal. `read` is input() in a terminal; scripts pipe their answers in."""

    def __init__(self, read: Callable[[str], str] = input, write: Callable[[str], None] = print, wait_for_enter: bool = True):
        self.read, self.write, self.wait_for_enter = read, write, wait_for_enter

    def say(self, text: str) -> None:
        self.write(text)

    def confirm(self, text: str) -> None:
        if self.wait_for_enter:
            self.read(f"{text} - press Enter ")
        else:
            self.write(text)

    def ask_points(self, run: Run) -> int:
        for line in run.task.rubric:
            self.write(f"    rubric: {line}")
        while True:
            answer = self.read(f"  points for policy {run.label} (0..{run.task.max_points}): ").strip()
            try:
                return check_points(int(answer) if answer.lstrip("-").isdigit() else answer, run.task.max_points, f"policy {run.label}")
            except PointsError as error:
                self.write(f"  {error}; try again")

    def ask_preference(self, runs: list[Run]) -> str:
        labels = [run.label for run in runs]
        while True:
            answer = self.read(f"  which was better: {' / '.join(labels)} / tie? ").strip().upper()
            if answer in labels:
                return answer
            if answer == "TIE":
                return "tie"
            self.write(f"  expected one of {labels} or tie")


class Session:
    def __init__(self, protocol: Protocol, results_path: str | Path, recordings_dir: str | Path, system: System,
                 evaluator: Evaluator, log: Callable[[str], None] = lambda text: print(text, file=sys.stderr)):
        self.protocol, self.system, self.evaluator, self.log = protocol, system, evaluator, log
        self.results = ResultsFile(results_path)
        self.recordings_dir = Path(recordings_dir)
        self._fingerprints: dict[str, str] = {}

    def _check_protocol_unchanged(self) -> None:
        try:
            now = hashlib.sha256(self.protocol.path.read_bytes()).hexdigest()
        except OSError as error:
            raise ProtocolError(f"{self.protocol.path}: cannot read the protocol ({error.strerror})") from None
        if now != self.protocol.sha256:
            raise ProtocolError(f"{self.protocol.path}:1: the protocol changed under a running session; "
                                f"restore it, or start a new results file")

    def _open(self) -> None:
        sessions = self.results.of("session")
        if not sessions:
            self.results.append({"record": "session", "protocol": str(self.protocol.path), "protocol_sha256": self.protocol.sha256,
                                 "protocol_name": self.protocol.name, "mode": self.protocol.mode, "target": self.protocol.target,
                                 "methods": {name: str(path) for name, path in self.protocol.methods.items()}, "time": time.time()})
        elif sessions[0].get("protocol_sha256") != self.protocol.sha256:
            raise ResultsError(f"{self.results.path}:{sessions[0]['_line']}: recorded under a different protocol "
                               f"(sha256 {str(sessions[0].get('protocol_sha256'))[:12]}..., {self.protocol.path} is "
                               f"{self.protocol.sha256[:12]}...); use a new results file")
        for run_id in self.results.half_finished():
            self.results.append({"record": "abandoned", "run_id": run_id, "time": time.time(),
                                 "reason": "half-finished when the session stopped; redone"})
            started = [r for r in self.results.of("started") if r["run_id"] == run_id][-1]
            # Blinded: name the run as the evaluator knows it (task, trial, label), never the method.
            self.log(f"mqe-eval: {started.get('task')} trial {started.get('trial', 0) + 1}, policy {started.get('label')} "
                     f"was half-finished; it is marked abandoned and redone")

    def fingerprint(self, method: str) -> str:
        if method not in self._fingerprints:
            self._fingerprints[method] = policy_fingerprint(self.protocol.method(method))
        return self._fingerprints[method]

    def run(self) -> int:
        """Run every run not yet recorded; returns the number run now."""
        self._open()
        done = self.results.finished_runs()
        preferred = {r["trial_id"] for r in self.results.of("preference")}
        count = 0
        trials = plan(self.protocol)
        for runs in trials:
            missing = [run for run in runs if run.run_id not in done]
            needs_preference = self.protocol.mode == "ab" and runs[0].trial_id not in preferred
            if not missing and not needs_preference:
                continue
            task = runs[0].task
            self.evaluator.say(f"\n== task {task.name}: trial {runs[0].trial + 1} of {task.trials} "
                               f"({len(runs)} polic{'ies' if len(runs) > 1 else 'y'}: {', '.join(r.label for r in runs)})")
            for run in missing:
                self._run_one(run)
                count += 1
            if needs_preference:
                label = self.evaluator.ask_preference(runs)
                by_label = {run.label: run.method for run in runs}
                self._check_protocol_unchanged()
                self.results.append({"record": "preference", "trial_id": runs[0].trial_id, "task": task.name,
                                     "trial": runs[0].trial, "preferred": by_label.get(label, "tie"), "labels": by_label,
                                     "time": time.time()})
        return count

    def _run_one(self, run: Run) -> None:
        self._check_protocol_unchanged()
        policy_dir = self.protocol.method(run.method)
        if not policy_dir.is_dir():
            raise ProtocolError(f"{self.protocol.path}: methods.{run.method}: no policy directory {policy_dir}")
        if self.protocol.target == "robot":
            self.evaluator.confirm(f"  policy {run.label}: reset the scene to the start state of {run.task.name}")
        else:
            self.evaluator.say(f"  policy {run.label}: sim task {run.task.sim_task}, seed {run.seed}")
        recording = self.recordings_dir / f"{run.task.name}_{run.trial:03d}_{run.label}_{int(time.time() * 1000)}.mcap"
        self.results.append({"record": "started", "run_id": run.run_id, "task": run.task.name, "trial": run.trial,
                             "label": run.label, "time": time.time(), "recording": recording.name})
        self.system.reset(run)
        attachments = {"protocol_entry": run.task.entry(), "policy_fingerprint": self.fingerprint(run.method),
                       "method": run.method, "label": run.label, "trial": run.trial, "seed": run.seed}
        facts = self.system.run_policy(run, policy_dir, recording, attachments)
        if self.protocol.target == "sim":
            score = self.system.sim_score(run)
            points, scorer, details = score["points"], "sim/score", score.get("details", {})
            if score.get("max_points") != run.task.max_points:
                raise PointsError(f"{self.protocol.path}:{run.task.line}: {run.task.name}: max_points {run.task.max_points} but "
                                  f"sim/score says {score.get('max_points')} for {run.task.sim_task}")
            check_points(points, run.task.max_points, f"sim/score for {run.run_id}")
            self.evaluator.say(f"  policy {run.label}: {points}/{run.task.max_points} points (sim/score)")
        else:
            points, scorer, details = self.evaluator.ask_points(run), "evaluator", {}
        self._check_protocol_unchanged()
        self.results.append({
            "record": "run", "run_id": run.run_id, "trial_id": run.trial_id, "task": run.task.name, "trial": run.trial,
            "method": run.method, "label": run.label, "seed": run.seed, "points": points, "max_points": run.task.max_points,
            "progress": progress(points, run.task.max_points), "success": success(points, run.task.max_points),
            "scorer": scorer, "details": details, "recording": recording.name, "policy_fingerprint": self.fingerprint(run.method),
            "facts": facts, "time": time.time(),
        })
