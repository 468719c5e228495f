"""Arm backends behind one interface (base.ArmBackend); `make_backend` picks one by name."""

from __future__ import annotations

from widowx_bridge.backends.base import ArmBackend

BACKENDS = ("sim", "interbotix")


def make_backend(name: str, robot_model: str, **options) -> ArmBackend:
    """`sim` runs anywhere; `interbotix` needs the Interbotix X-Series stack (robot PC only)."""
    if name == "sim":
        from widowx_bridge.backends.sim import SimArmBackend

        return SimArmBackend(robot_model)
    if name == "interbotix":
        from widowx_bridge.backends.interbotix import InterbotixArmBackend

        return InterbotixArmBackend(robot_model, **options)
    raise ValueError(f"backend: unknown arm backend {name!r}, expected one of {BACKENDS}")
