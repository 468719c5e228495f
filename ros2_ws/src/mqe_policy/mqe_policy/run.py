"""`mqe-run`: start the system of run.launch.py in one process, without `ros2 launch`.

    mqe-run goal:=drawer.png model:=artifacts/policy use_sim:=true [camera:=replay camera_path:=DIR]

The nodes and their parameters come from mqe_policy.system (the launch file's description); here
they are constructed in-process and spun by one MultiThreadedExecutor, the policy first, so a
policy that refuses to start (missing model, bad goal image, ...) stops everything before the arm
exists. Exits 2 with one line when an argument is unknown or wrong or a node refuses to start; 0 after
Ctrl-C (a second SIGINT during shutdown is ignored, so the nodes are always destroyed).
"""

from __future__ import annotations

import importlib
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Mapping

import rclpy
import yaml
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.signals import SignalHandlerOptions

from mqe_policy import system
from mqe_policy.policy_node import ignore_further_interrupts, startup_error_line


def _node_class(spec: str):
    module_name, _, class_name = spec.partition(":")
    return getattr(importlib.import_module(module_name), class_name)


class InProcessSystem:
    """The nodes of `system.describe_nodes(arguments)` in this process, spun on a background thread.

    Use as a context manager; `nodes` maps node names to node objects. Node constructors that
    raise (refusals) propagate out of __enter__ after the already-created nodes are destroyed.
    """

    def __init__(self, arguments: Mapping[str, str], context=None, executor_threads: int = 6):
        self.arguments = system.resolve_arguments(arguments)
        self.descriptions = system.describe_nodes(self.arguments)
        self.context = context
        self.executor_threads = executor_threads
        self.nodes: dict = {}
        self._tmp = None
        self._executor = None
        self._thread = None

    def __enter__(self) -> "InProcessSystem":
        self._tmp = tempfile.TemporaryDirectory(prefix="mqe-run-")
        try:
            # Nodes that may refuse to start (the policy) first: a refusal is then the only output.
            for description in sorted(self.descriptions, key=lambda d: not d.required):
                # The argument-derived values travel as a params file keyed by node name, exactly
                # like the dict that launch_ros turns into one.
                derived = Path(self._tmp.name) / f"{description.name}.yaml"
                derived.write_text(yaml.safe_dump({description.name: {"ros__parameters": description.parameters}}))
                cli_args = ["--ros-args", "-r", f"__node:={description.name}"]
                for path in (*description.parameter_files, str(derived)):
                    cli_args += ["--params-file", path]
                node = _node_class(description.node_class)(cli_args=cli_args, context=self.context)
                self.nodes[description.name] = node
        except BaseException:
            self._destroy_nodes()
            self._tmp.cleanup()
            raise
        self._executor = MultiThreadedExecutor(num_threads=self.executor_threads, context=self.context)
        for node in self.nodes.values():
            self._executor.add_node(node)
        self._thread = threading.Thread(target=self._spin, name="mqe-run-executor", daemon=True)
        self._thread.start()
        return self

    def add_node(self, node) -> None:
        """Spin one more node with the system (a tool's own subscriber); it is destroyed with the system."""
        self._executor.add_node(node)
        self.nodes[node.get_name()] = node

    def _spin(self) -> None:
        try:
            self._executor.spin()
        except ExternalShutdownException:
            pass

    def spinning(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _destroy_nodes(self) -> None:
        for node in reversed(list(self.nodes.values())):
            node.destroy_node()
        self.nodes.clear()

    def __exit__(self, *exc) -> None:
        if self._executor is not None:
            self._executor.shutdown(timeout_sec=5.0)
        if self._thread is not None:
            self._thread.join(timeout=5.0)
        self._destroy_nodes()
        if self._tmp is not None:
            self._tmp.cleanup()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if any(word in ("-h", "--help") for word in argv):
        print(__doc__)
        for argument in system.LAUNCH_ARGUMENTS:
            print(f"  {argument.name}:={argument.default!r:12} {argument.description}")
        return 0
    # name:=value words are ours; anything after --ros-args goes to ROS (e.g. a log level).
    split = argv.index("--ros-args") if "--ros-args" in argv else len(argv)
    try:
        arguments = system.resolve_arguments(system.parse_cli(argv[:split]))
    except system.SystemArgumentError as error:
        print(f"mqe-run: {error}", file=sys.stderr)
        return 2
    system.apply_dds_environment()
    # Ctrl-C reaches this thread as KeyboardInterrupt, so the nodes are destroyed before the context.
    rclpy.init(args=["mqe-run", *argv[split:]], signal_handler_options=SignalHandlerOptions.NO)
    try:
        with InProcessSystem(arguments) as running:
            print(f"mqe-run: running {', '.join(running.nodes)}; Ctrl-C stops", file=sys.stderr)
            try:
                while running.spinning():
                    time.sleep(0.5)
            except KeyboardInterrupt:
                pass
            ignore_further_interrupts()  # leaving the with-block destroys the nodes
    except Exception as error:  # noqa: BLE001  bad parameters, PolicyArtifactError, GoalImageError, a
        # camera that cannot open (widowx_bridge.camera_sources.CameraSourceError), ...: one line each
        print(f"mqe-run: refusing to start: {startup_error_line(error)}", file=sys.stderr)
        return 2
    finally:
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
