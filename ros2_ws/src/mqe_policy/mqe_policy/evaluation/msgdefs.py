"""ROS 2 message definitions (the .msg text with its dependencies) for MCAP schemas, read from the
installed interface packages - the same files rosbag2 reads (ros2msg schema encoding: the type's
text, then each dependency after a line of 80 '=' and "MSG: pkg/msg/Type"). No rclpy needed.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
from pathlib import Path

PRIMITIVES = {
    "bool", "byte", "char", "float32", "float64", "int8", "uint8", "int16", "uint16", "int32", "uint32", "int64",
    "uint64", "string", "wstring",
}
SEPARATOR = "=" * 80


def _share_dir(package: str) -> Path:
    candidates = []
    try:
        from ament_index_python.packages import get_package_share_directory

        candidates.append(Path(get_package_share_directory(package)))
    except Exception:  # noqa: BLE001  no ament index (a pip-installed rclpy): look beside the Python package
        pass
    candidates.append(Path(sys.prefix) / "share" / package)
    try:
        module = importlib.import_module(package)
        candidates.append(Path(os.path.dirname(module.__file__)).parents[2] / "share" / package)
        candidates.append(Path(os.path.dirname(module.__file__)).parents[3] / "share" / package)
    except (ImportError, IndexError, TypeError):
        pass
    for candidate in candidates:
        if (candidate / "msg").is_dir():
            return candidate
    raise FileNotFoundError(f"no message definitions for {package} (looked in {[str(c) for c in candidates]})")


def _msg_text(type_name: str) -> str:
    package, _, name = type_name.split("/")
    return (_share_dir(package) / "msg" / f"{name}.msg").read_text()


def _dependencies(type_name: str, text: str) -> list[str]:
    package = type_name.split("/")[0]
    found = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        field_type, _, rest = line.partition(" ")
        if "=" in rest:
            continue  # a constant: TYPE NAME=VALUE (a bounded type's "<=" is in field_type)
        base = re.sub(r"<=\d+", "", re.sub(r"\[.*\]$", "", field_type))
        if base in PRIMITIVES:
            continue
        if "/" in base:
            dep_package, dep_name = base.split("/")[0], base.split("/")[-1]
        else:
            dep_package, dep_name = package, base
        found.append(f"{dep_package}/msg/{dep_name}")
    return found


def message_definition(type_name: str) -> str:
    """e.g. message_definition("sensor_msgs/msg/Image") -> the ros2msg schema text."""
    main = _msg_text(type_name)
    seen, order, pending = {type_name}, [], list(_dependencies(type_name, main))
    while pending:
        dependency = pending.pop(0)
        if dependency in seen:
            continue
        seen.add(dependency)
        text = _msg_text(dependency)
        order.append((dependency, text))
        pending.extend(_dependencies(dependency, text))
    parts = [main.rstrip("\n")]
    for dependency, text in order:
        parts.append(f"{SEPARATOR}\nMSG: {dependency}\n{text.rstrip(chr(10))}")
    return "\n".join(parts) + "\n"
