"""The evaluation protocol: a YAML file of tasks, methods and simulator seeds.

    name: bridge-six-tasks
    mode: blinded            # blinded (each trial runs every method, order shuffled, labels A/B/...) | ab
    target: robot            # robot (points typed by the evaluator) | sim (points from sim/score)
    session_seed: 0          # seeds the blinded order, so a resumed session continues the same plan
    methods:
      MQE: ${MQE_EXPORTS}/mqe           # name -> policy export directory (mqe-export output); $VARS
                                        # expanded, relative paths are relative to this file
    tasks:
      - name: double_pnp
        max_points: 2
        rubric: ["1 point per object moved to its target"]
        trials: 15
        time_limit_steps: 150           # control ticks (BridgeData V2: 5 Hz)
        goal_image: double_pnp.png      # robot: a name in the goal directory (mqe-capture-goal), or a path
        sim_task: double_pnp            # sim: a name in mqe.sim.TASKS; trial k runs seeds[k]
    seeds: [0, 1, 2, ...]               # sim only: one per trial index

Every error names the file and line of the offending entry (ProtocolError).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import yaml

# The six tasks of the paper's BridgeData evaluation (App. C, Table 5) and their maximum points.
PAPER_TASKS = {
    "single_pnp": 1,
    "double_pnp": 2,
    "triple_pnp": 3,
    "quadruple_pnp": 4,
    "open_drawer": 1,
    "open_drawer_and_place": 2,
}
MODES = ("blinded", "ab")
TARGETS = ("robot", "sim")


class ProtocolError(ValueError):
    """A protocol file that cannot be used; the message names the file and line."""


@dataclasses.dataclass(frozen=True)
class Task:
    name: str
    max_points: int
    rubric: tuple[str, ...]
    trials: int
    time_limit_steps: int
    goal_image: Path | None  # robot target
    sim_task: str | None  # sim target
    line: int  # where the task starts in the protocol file (for messages)

    def entry(self) -> dict:
        """The protocol entry as recorded with each trial."""
        return {
            "name": self.name, "max_points": self.max_points, "rubric": list(self.rubric), "trials": self.trials,
            "time_limit_steps": self.time_limit_steps, "goal_image": str(self.goal_image) if self.goal_image else None,
            "sim_task": self.sim_task,
        }


@dataclasses.dataclass(frozen=True)
class Protocol:
    path: Path
    name: str
    mode: str
    target: str
    session_seed: int
    methods: dict[str, Path]
    tasks: tuple[Task, ...]
    seeds: tuple[int, ...]
    sha256: str  # of the file's bytes: a session refuses to resume under a changed protocol

    def task(self, name: str) -> Task:
        for task in self.tasks:
            if task.name == name:
                return task
        raise ProtocolError(f"{self.path}: unknown task {name!r}; tasks: {[t.name for t in self.tasks]}")

    def method(self, name: str) -> Path:
        if name not in self.methods:
            raise ProtocolError(f"{self.path}: unknown method {name!r}; methods: {sorted(self.methods)}")
        return self.methods[name]


def _where(path: Path, node: yaml.Node) -> str:
    return f"{path}:{node.start_mark.line + 1}"


def _plain(node: yaml.Node) -> Any:
    return yaml.safe_load(yaml.serialize(node))


def _mapping(path: Path, node: yaml.Node, what: str) -> dict[str, tuple[yaml.Node, yaml.Node]]:
    if not isinstance(node, yaml.MappingNode):
        raise ProtocolError(f"{_where(path, node)}: {what}: expected a mapping")
    entries = {}
    for key, value in node.value:
        name = str(_plain(key))
        if name in entries:
            raise ProtocolError(f"{_where(path, key)}: {what}: {name!r} given twice")
        entries[name] = (key, value)
    return entries


def _int(path: Path, node: yaml.Node, what: str, low: int) -> int:
    value = _plain(node)
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ProtocolError(f"{_where(path, node)}: {what}: expected an integer >= {low}, got {value!r}")
    return value


def _str(path: Path, node: yaml.Node, what: str) -> str:
    value = _plain(node)
    if not isinstance(value, str) or not value:
        raise ProtocolError(f"{_where(path, node)}: {what}: expected a non-empty string, got {value!r}")
    return value


def _resolve(base: Path, text: str) -> Path:
    """$VARS expanded; a relative path is relative to the protocol file."""
    candidate = Path(os.path.expandvars(text)).expanduser()
    return candidate if candidate.is_absolute() else base / candidate


def _resolve_goal(base: Path, text: str) -> Path:
    """A bare file name is a goal in the goal directory (as the policy node's goal:=NAME), else a path."""
    if len(Path(text).parts) == 1 and "$" not in text:
        from mqe_policy.system import default_goal_dir

        return default_goal_dir() / text
    return _resolve(base, text)


def _allowed(path: Path, entries: dict, allowed: set[str], what: str) -> None:
    for name, (key, _) in entries.items():
        if name not in allowed:
            raise ProtocolError(f"{_where(path, key)}: {what}: unknown field {name!r}; fields: {sorted(allowed)}")


def load_protocol(path: str | Path, sim_task_names: tuple[str, ...] | None = None, check_files: bool = True) -> Protocol:
    """Parse and check a protocol. `sim_task_names` (mqe.sim.TASKS) checks sim tasks when given;
    `check_files` checks that goal images and policy directories exist (a report needs neither)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ProtocolError(f"{path}: cannot read the protocol ({error.strerror})") from None
    try:
        root = yaml.compose(data.decode("utf-8"), Loader=yaml.SafeLoader)
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        mark = getattr(error, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise ProtocolError(f"{path}{line}: not valid YAML ({getattr(error, 'problem', None) or error})") from None
    if root is None:
        raise ProtocolError(f"{path}:1: empty protocol")
    top = _mapping(path, root, "protocol")
    _allowed(path, top, {"name", "mode", "target", "session_seed", "methods", "tasks", "seeds"}, "protocol")
    for required in ("methods", "tasks"):
        if required not in top:
            raise ProtocolError(f"{_where(path, root)}: protocol: missing field {required!r}")
    base = path.resolve().parent

    def choice(name: str, choices: tuple[str, ...]) -> str:
        if name not in top:
            return choices[0]
        value = _plain(top[name][1])
        if value not in choices:
            raise ProtocolError(f"{_where(path, top[name][1])}: {name}: expected one of {list(choices)}, got {value!r}")
        return value

    mode, target = choice("mode", MODES), choice("target", TARGETS)
    session_seed = _int(path, top["session_seed"][1], "session_seed", 0) if "session_seed" in top else 0
    name = _str(path, top["name"][1], "name") if "name" in top else path.stem

    methods = {}
    for method, (key, value) in _mapping(path, top["methods"][1], "methods").items():
        text = _str(path, value, f"methods.{method}")
        directory = _resolve(base, text)
        if check_files and not directory.is_dir():
            unset = "; is every $VARIABLE in it set?" if "$" in str(directory) else ""
            raise ProtocolError(f"{_where(path, value)}: methods.{method}: no policy directory {directory} (expected mqe-export output{unset})")
        methods[method] = directory
    if not methods:
        raise ProtocolError(f"{_where(path, top['methods'][1])}: methods: none given")
    if mode == "ab" and len(methods) != 2:
        raise ProtocolError(f"{_where(path, top['methods'][1])}: methods: mode ab compares exactly 2 methods, got {len(methods)}")

    seeds: tuple[int, ...] = ()
    if "seeds" in top:
        node = top["seeds"][1]
        if not isinstance(node, yaml.SequenceNode):
            raise ProtocolError(f"{_where(path, node)}: seeds: expected a list of integers")
        seeds = tuple(_int(path, item, "seeds[]", 0) for item in node.value)

    tasks_node = top["tasks"][1]
    if not isinstance(tasks_node, yaml.SequenceNode) or not tasks_node.value:
        raise ProtocolError(f"{_where(path, tasks_node)}: tasks: expected a non-empty list")
    tasks = []
    fields = {"name", "max_points", "rubric", "trials", "time_limit_steps", "goal_image", "sim_task"}
    for item in tasks_node.value:
        entries = _mapping(path, item, "task")
        _allowed(path, entries, fields, "task")
        for required in ("name", "max_points", "trials", "time_limit_steps"):
            if required not in entries:
                raise ProtocolError(f"{_where(path, item)}: task: missing field {required!r}")
        task_name = _str(path, entries["name"][1], "task name")
        if any(t.name == task_name for t in tasks):
            raise ProtocolError(f"{_where(path, entries['name'][1])}: task {task_name!r} given twice")
        rubric: tuple[str, ...] = ()
        if "rubric" in entries:
            node = entries["rubric"][1]
            if not isinstance(node, yaml.SequenceNode):
                raise ProtocolError(f"{_where(path, node)}: {task_name}.rubric: expected a list of lines")
            rubric = tuple(_str(path, line, f"{task_name}.rubric[]") for line in node.value)
        goal_image = sim_task = None
        if target == "robot":
            if "goal_image" not in entries:
                raise ProtocolError(f"{_where(path, item)}: task {task_name}: target robot needs goal_image")
            node = entries["goal_image"][1]
            goal_image = _resolve_goal(base, _str(path, node, f"{task_name}.goal_image"))
            if check_files and not goal_image.is_file():
                raise ProtocolError(f"{_where(path, node)}: {task_name}.goal_image: no such file {goal_image}")
        else:
            if "sim_task" not in entries:
                raise ProtocolError(f"{_where(path, item)}: task {task_name}: target sim needs sim_task")
            node = entries["sim_task"][1]
            sim_task = _str(path, node, f"{task_name}.sim_task")
            if sim_task_names is not None and sim_task not in sim_task_names:
                raise ProtocolError(f"{_where(path, node)}: {task_name}.sim_task: unknown sim task {sim_task!r}; tasks: {list(sim_task_names)}")
        task = Task(
            name=task_name,
            max_points=_int(path, entries["max_points"][1], f"{task_name}.max_points", 1),
            rubric=rubric,
            trials=_int(path, entries["trials"][1], f"{task_name}.trials", 1),
            time_limit_steps=_int(path, entries["time_limit_steps"][1], f"{task_name}.time_limit_steps", 1),
            goal_image=goal_image,
            sim_task=sim_task,
            line=item.start_mark.line + 1,
        )
        if target == "sim" and len(seeds) < task.trials:
            where = _where(path, top["seeds"][1]) if "seeds" in top else _where(path, root)
            raise ProtocolError(f"{where}: seeds: target sim needs one seed per trial ({task.trials} for {task_name}), got {len(seeds)}")
        tasks.append(task)
    return Protocol(path=path, name=name, mode=mode, target=target, session_seed=session_seed, methods=methods,
                    tasks=tuple(tasks), seeds=seeds, sha256=hashlib.sha256(data).hexdigest())


def policy_fingerprint(directory: str | Path) -> str:
    """sha256 over the export's file names and bytes: which policy a trial really ran."""
    digest = hashlib.sha256()
    directory = Path(directory)
    for file in sorted(p for p in directory.rglob("*") if p.is_file()):
        digest.update(json.dumps(str(file.relative_to(directory))).encode())
        digest.update(file.read_bytes())
    return digest.hexdigest()
