"""Agent registry: `get_config(name)` gives an agent's defaults, `make_agent(name, config,
observation_spec, action_dim)` builds it. observation_spec is ("image", size) or ("state", dim)."""

from __future__ import annotations

import copy
import importlib
import numbers

from mqe.agents.base import Agent
from mqe.networks import ObservationSpec, as_observation_spec

# name -> (module, class); modules are imported on first use
AGENTS = {
    "mqe": ("mqe.agents.mqe", "MQEAgent"),
    "gcbc": ("mqe.agents.gcbc", "GCBCAgent"),
    "gciql": ("mqe.agents.gciql", "GCIQLAgent"),
    "qrl": ("mqe.agents.qrl", "QRLAgent"),
    "tra": ("mqe.agents.tra", "TRAAgent"),
}


def _module(name: str):
    if name not in AGENTS:
        raise ValueError(f"unknown agent {name!r}; known agents: {', '.join(AGENTS)}")
    return importlib.import_module(AGENTS[name][0])


def get_config(name: str) -> dict:
    """A fresh copy of the agent's default config (Bridge defaults)."""
    return copy.deepcopy(_module(name).get_config())


def check_config(name: str, config: dict) -> None:
    """Refuse a config whose keys differ from the agent's defaults, naming the keys."""
    defaults = get_config(name)
    missing = sorted(set(defaults) - set(config))
    unknown = sorted(set(config) - set(defaults))
    if missing or unknown:
        raise ValueError(f"{name} agent config: missing keys {missing}, unknown keys {unknown}")


def make_agent(name: str, config: dict, observation_spec: ObservationSpec | tuple, action_dim: int) -> Agent:
    check_config(name, config)
    if not isinstance(action_dim, numbers.Integral) or action_dim <= 0:
        raise ValueError(f"{name} agent: action_dim must be a positive int, got {action_dim!r}")
    module = _module(name)
    return getattr(module, AGENTS[name][1])(copy.deepcopy(config), as_observation_spec(observation_spec), int(action_dim))


__all__ = ["AGENTS", "Agent", "ObservationSpec", "check_config", "get_config", "make_agent"]
