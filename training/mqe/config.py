"""Configuration: plain nested dicts built by each module's `get_config()`, overridable from files
and from the command line (`--set agent.alpha=0.1 data.batch_size=64`).

Every override must name an existing key and keep its type (ints may widen to floats), so a typo
fails loudly instead of silently training with a default.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml


class ConfigError(ValueError):
    pass


def _coerce(key: str, old: Any, new: Any) -> Any:
    if old is None or new is None:
        return new
    if isinstance(old, bool):
        if not isinstance(new, bool):
            raise ConfigError(f"config key {key!r}: expected true/false, got {new!r}")
        return new
    if isinstance(old, float) and isinstance(new, int) and not isinstance(new, bool):
        return float(new)
    if isinstance(old, (list, tuple)) and isinstance(new, (list, tuple)):
        return type(old)(new)
    if isinstance(old, dict):
        if not isinstance(new, Mapping):
            raise ConfigError(f"config key {key!r}: expected a mapping, got {new!r}")
        return new
    if not isinstance(new, type(old)):
        raise ConfigError(f"config key {key!r}: expected {type(old).__name__}, got {new!r} ({type(new).__name__})")
    return new


def set_path(config: dict, dotted_key: str, value: Any) -> None:
    """Set config[a][b][c] = value for 'a.b.c'; the key must exist and the type must match."""
    parts = dotted_key.split(".")
    node = config
    for i, part in enumerate(parts[:-1]):
        if not isinstance(node.get(part), dict):
            raise ConfigError(f"unknown config key {'.'.join(parts[: i + 1])!r} (in {dotted_key!r})")
        node = node[part]
    leaf = parts[-1]
    if leaf not in node:
        known = ", ".join(sorted(node))
        raise ConfigError(f"unknown config key {dotted_key!r}; known keys here: {known}")
    if isinstance(node[leaf], dict) and isinstance(value, Mapping):
        for sub_key, sub_value in value.items():
            set_path(config, f"{dotted_key}.{sub_key}", sub_value)
        return
    node[leaf] = _coerce(dotted_key, node[leaf], value)


def apply_overrides(config: dict, overrides: Iterable[str]) -> dict:
    """Return a copy of `config` with 'key=value' overrides applied; values are parsed as YAML."""
    config = copy.deepcopy(config)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key=value")
        key, raw = item.split("=", 1)
        set_path(config, key.strip(), yaml.safe_load(raw) if raw.strip() else "")
    return config


def apply_file(config: dict, path: str | Path) -> dict:
    """Return a copy of `config` updated from a YAML file of (nested) keys."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise ConfigError(f"{path}: cannot read config file ({error})") from error
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path}: expected a mapping of config keys at the top level")
    config = copy.deepcopy(config)
    for key, value in data.items():
        set_path(config, str(key), value)
    return config


def to_json(config: Mapping) -> str:
    return json.dumps(config, sort_keys=True, default=str)
