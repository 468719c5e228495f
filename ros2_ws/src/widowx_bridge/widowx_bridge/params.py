"""Shared helpers for the bridge's nodes: parameters (declared defaults equal config/*.yaml, a test
checks) and the `main` that runs one node."""

from __future__ import annotations

import signal
import sys
from typing import Any, Callable, Iterable, Mapping

import rclpy
from rcl_interfaces.msg import SetParametersResult
from rclpy.executors import ExternalShutdownException
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


def refuse_changes_at_run_time(node, fixed: Iterable[str]) -> None:
    """The parameters in `fixed` are read once at start-up, so a change at run time would be accepted
    and do nothing: refuse it with a reason instead. Call after declaring them (rclpy runs these
    callbacks for the declarations too)."""
    fixed = frozenset(fixed)

    def on_set(params) -> SetParametersResult:
        for param in params:
            if param.name in fixed:
                return SetParametersResult(successful=False, reason=f"{param.name} is fixed at start-up; restart the node to change it")
        return SetParametersResult(successful=True)

    node.add_on_set_parameters_callback(on_set)


def run_node(make_node: Callable[[], Any], name: str, startup_errors: tuple[type[BaseException], ...], args=None) -> int:
    """Spin one node until Ctrl-C or shutdown. A startup error (bad parameters, no hardware) is one
    clear line on stderr and exit code 1."""
    rclpy.init(args=args)
    node = None
    try:
        node = make_node()
        rclpy.spin(node)
    except startup_errors as error:
        print(f"{name}: {error}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        # Shutdown must complete: without a terminal `ros2 launch` forwards SIGINT to its processes on
        # top of the one that reached them (launch/actions/execute_local.py, humble: send_sigint when
        # context.noninteractive), and a second SIGINT inside destroy_node would cut it short.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if node is not None:
            node.destroy_node()
        if rclpy.ok():  # the interbotix backend's robot_shutdown may already have shut it down
            rclpy.shutdown()
    return 0
