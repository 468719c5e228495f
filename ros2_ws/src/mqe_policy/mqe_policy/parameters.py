"""The policy node's parameters and their defaults, defined once, and the check of a package YAML
against a node's declared defaults.

The control loop's parameters are control.LoopConfig's fields (their defaults are LoopConfig's);
the node's own are NodeParameters' below. The policy node declares exactly `policy_defaults()`
(plus `goal_dir`, whose default depends on the install: system.default_goal_dir), config/policy.yaml
repeats them for operators (`yaml_mismatches` is the check a test runs), and system.LAUNCH_ARGUMENTS
takes `rate_hz`'s default from LoopConfig. Only `goal` can change while the node runs; every other
parameter is in FIXED_AT_STARTUP and a change is refused (widowx_bridge.params.refuse_changes_at_run_time).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

from mqe_policy.control import LoopConfig


@dataclasses.dataclass(frozen=True)
class NodeParameters:
    model: str = ""  # policy directory written by mqe-export
    goal: str = ""  # goal image: a file name in goal_dir, or a path
    threads: int = 2  # onnxruntime intra-op threads
    precision: str = "fp32"  # fp32 | int8 (mqe-export --precision int8)
    provider: str = "cpu"  # cpu | openvino | cuda | tensorrt; never a fallback
    autostart: bool = True  # false: wait for the policy/start service before publishing actions


def defaults_of(*configs: type) -> dict[str, Any]:
    """{field name: default} of dataclasses, in field order."""
    return {field.name: field.default for config in configs for field in dataclasses.fields(config)}


def policy_defaults() -> dict[str, Any]:
    return defaults_of(NodeParameters, LoopConfig)


RUNTIME_SETTABLE = ("goal",)  # the node loads a new goal image when `goal` is set
# goal_dir is read once: a goal set later as a bare name is looked up in the start-up goal_dir.
FIXED_AT_STARTUP = tuple(name for name in (*policy_defaults(), "goal_dir") if name not in RUNTIME_SETTABLE)


def yaml_mismatches(path: str | Path, defaults: Mapping[str, Any], exempt: Iterable[str] = ()) -> list[str]:
    """One line per difference between a package YAML's ros__parameters (its single node section:
    `/**` or the node name) and a node's declared defaults: a parameter missing, unknown or with
    another value (a float and an int differ: ROS parameter types are strict). Empty when equal."""
    sections = yaml.safe_load(Path(path).read_text())
    if not isinstance(sections, dict) or len(sections) != 1:
        return [f"{path}: expected one node section with ros__parameters"]
    (section,) = sections.values()
    values = section.get("ros__parameters", {}) if isinstance(section, dict) else {}
    exempt = set(exempt)
    lines = [f"{path}: {name} missing (default {defaults[name]!r})" for name in defaults if name not in values and name not in exempt]
    lines += [f"{path}: {name} is not a parameter of the node" for name in values if name not in defaults]
    for name, value in values.items():
        if name in defaults and (value != defaults[name] or type(value) is not type(defaults[name])):
            lines.append(f"{path}: {name} is {value!r}, the node's default is {defaults[name]!r}")
    return lines
