"""Shared helper for the nodes' parameters: declared defaults equal config/*.yaml (a test checks)."""

from __future__ import annotations

from typing import Any, Mapping

from rclpy.parameter import Parameter


def as_parameter_list(overrides: Mapping[str, Any] | list | None) -> list[Parameter]:
    """Accept rclpy Parameters or a plain {name: value} dict (handy for in-process construction)."""
    if overrides is None:
        return []
    if isinstance(overrides, Mapping):
        return [Parameter(name, value=value) for name, value in overrides.items()]
    return list(overrides)


def declare_all(node, defaults: Mapping[str, Any]) -> dict[str, Any]:
    """Declare every parameter with its default and return the values in effect."""
    for name, default in defaults.items():
        node.declare_parameter(name, default)
    return {name: node.get_parameter(name).value for name in defaults}
