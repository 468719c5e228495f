"""The one description of the running system: its arguments and its nodes with their parameters.

Both `ros2 launch mqe_policy run.launch.py` (launch/run.launch.py) and the plain-Python runner
`mqe-run` (mqe_policy/run.py) build the system from here, so they cannot drift apart. Arguments use
launch's `name:=value` syntax and are strings; `resolve_arguments` checks and completes them.

Parameter precedence for every node (lowest first): the package's config/*.yaml, the operator's
params_file, then the values derived from the arguments below.

Before any node starts, `check_launch_configurations` refuses argument names nobody declared (ROS 2
launch itself sets them as launch configurations and starts anyway) and `check_inputs` loads the
model and the goal once, so a refused start stops everything before the arm resets or moves.
"""

from __future__ import annotations

import dataclasses
import os
import re
import sys
from pathlib import Path
from typing import Iterable, Mapping

# Argument defaults that are also node parameter defaults come from the nodes: one definition each.
from mqe_policy.control import LoopConfig
from widowx_bridge.arm_node import DEFAULTS as ARM_DEFAULTS
from widowx_bridge.camera_node import DEFAULTS as CAMERA_DEFAULTS

PACKAGE = "mqe_policy"
_SOURCE_ROOT = Path(__file__).resolve().parent.parent  # ros2_ws/src/mqe_policy in a source checkout


class SystemArgumentError(ValueError):
    """An argument of run.launch.py / mqe-run is unknown or has a bad value."""


@dataclasses.dataclass(frozen=True)
class Argument:
    name: str
    default: str
    description: str
    choices: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class NodeDescription:
    package: str  # ROS package that installs the executable
    executable: str  # console entry point of that package (ros2 run PACKAGE EXECUTABLE)
    name: str  # node name; also the key of its section in the YAML parameter files
    node_class: str  # "module:Class", constructed in-process by mqe-run (Class(**rclpy Node kwargs))
    parameter_files: tuple[str, ...]  # YAML files, lowest precedence first
    parameters: dict  # derived from the arguments, highest precedence
    required: bool  # the whole system shuts down when this node exits (e.g. refuses to start)


def find_repository_dir(name: str) -> Path | None:
    """`name` in the source checkout this package was installed from (editable installs), else None.
    Never the current directory: a ROS workspace is started from anywhere."""
    for parent in _SOURCE_ROOT.parents:
        if (parent / name).is_dir() and (parent / "ros2_ws").is_dir():
            return parent / name
    return None


def package_share_dir(package: str = PACKAGE) -> Path | None:
    """The package's installed share directory (colcon / ament index), else None (editable installs)."""
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory
    except ImportError:
        return None
    try:
        return Path(get_package_share_directory(package))
    except (PackageNotFoundError, OSError):  # OSError: no AMENT_PREFIX_PATH, i.e. not a ROS install
        return None


def default_goal_dir() -> Path:
    """$MQE_GOAL_DIR, else the goal_images/ installed into this package's share (colcon build), else
    the source checkout's goal_images/ (editable install), else <prefix>/share/mqe_policy/goal_images
    (where a plain pip install puts setup.py's data files)."""
    if os.environ.get("MQE_GOAL_DIR"):
        return Path(os.environ["MQE_GOAL_DIR"])
    share = package_share_dir()
    if share is not None and (share / "goal_images").is_dir():
        return share / "goal_images"
    return find_repository_dir("goal_images") or Path(sys.prefix) / "share" / PACKAGE / "goal_images"


def default_model_dir() -> Path | None:
    """$MQE_MODEL, else (in a source checkout) the sim policy kept in the repository that mqe-demo
    runs (training/mqe/sim/policy, mqe.sim.demo_policy.KEPT_EXPORT; named by path so that nothing
    here imports the simulator), else None: an installed package has no policy of its own."""
    if os.environ.get("MQE_MODEL"):
        return Path(os.environ["MQE_MODEL"])
    training = find_repository_dir("training")
    return training / "mqe" / "sim" / "policy" if training is not None else None


def config_dir(package: str = PACKAGE) -> Path:
    """A package's config/ directory: its installed share directory under ROS, else the source tree
    (editable installs next to this package in ros2_ws/src)."""
    share = package_share_dir(package)
    return share / "config" if share is not None else _SOURCE_ROOT.parent / package / "config"


def dds_environment(environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """Environment for every process of the system: the Fast DDS profile that carries full camera
    frames (config/fastdds_large_frames.xml), unless the operator already chose a profile. Humble's
    Fast DDS 2.6 reads FASTRTPS_DEFAULT_PROFILES_FILE; later releases read FASTDDS_..."""
    names = ["FASTDDS_DEFAULT_PROFILES_FILE"] + (["FASTRTPS_DEFAULT_PROFILES_FILE"] if environ.get("ROS_DISTRO") == "humble" else [])
    if any(environ.get(name) for name in ("FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE")):
        return {}
    return {name: str(config_dir() / "fastdds_large_frames.xml") for name in names}


def apply_dds_environment() -> None:
    """Set dds_environment() in this process; call before the first rclpy.init (DDS reads it once)."""
    os.environ.update(dds_environment())


CAMERA_SOURCES = ("realsense", "usb", "replay", "synthetic", "sim")
# A goal image rendered by mqe.sim for a task instance names it: goal_images/sim_<task>_seed<N>.png.
SIM_GOAL_NAME = re.compile(r"sim_(?P<task>[a-z_]+?)_seed(?P<seed>\d+)\.png$")


def sim_goal_name(task: str, seed: int) -> str:
    """The file name of a task instance's goal image (what SIM_GOAL_NAME reads back)."""
    return f"sim_{task}_seed{seed}.png"
ROBOT_MODELS = ("wx250s", "wx250")

LAUNCH_ARGUMENTS: tuple[Argument, ...] = (
    Argument("goal", "", "goal image: a file name in goal_dir (e.g. drawer.png) or a path"),
    Argument("goal_dir", "", "directory of goal images (default: $MQE_GOAL_DIR, else the goal_images/ installed with mqe_policy)"),
    Argument("model", "", "policy directory written by mqe-export (default: $MQE_MODEL; in a source checkout, the kept sim policy training/mqe/sim/policy that mqe-demo runs)"),
    Argument("robot_model", ARM_DEFAULTS["robot_model"], "arm: wx250s (6-DOF, the BridgeData V2 arm) or wx250 (5-DOF)", ROBOT_MODELS),
    Argument("use_sim", "false", "true: the simulated tabletop (MuJoCo arm, objects and camera; with another camera:=, the kinematic arm); false: the Interbotix arm", ("true", "false")),
    Argument("camera", "", "camera source: realsense | usb | replay | synthetic (mqe-make-dataset's 2-D scene) | sim (the tabletop's; default with use_sim:=true, else realsense)", ("",) + CAMERA_SOURCES),
    Argument("camera_path", "", "replay: a folder of images or a video file; usb: device index or path"),
    Argument("camera_rate_hz", "", f"camera frame rate (default: the sim camera's camera_rate_hz of config/tabletop.yaml, else {CAMERA_DEFAULTS['rate_hz']:g}; the policy waits up to 1.5 frame periods for a fresh frame)"),
    Argument("sim_task", "", "sim camera: the task instance the scene starts in and arm/reset returns to (default: from a goal named sim_<task>_seed<N>.png, else single_pnp)"),
    Argument("sim_seed", "", "sim camera: its seed (default: from the goal's name, else 0)"),
    Argument("rate_hz", str(LoopConfig.rate_hz), "policy control rate in Hz: one action per tick (BridgeData V2: 5)"),
    Argument("params_file", "", "optional YAML of ROS parameters for any node, applied over config/*.yaml"),
)
ARGUMENT_NAMES = tuple(argument.name for argument in LAUNCH_ARGUMENTS)
# Launch configurations that `ros2 launch` itself sets from its --launch-prefix / --launch-prefix-filter
# options (ros2launch/api/api.py, humble: launch_a_launch_file appends them as name:=value arguments).
ROS2_LAUNCH_OPTIONS = ("launch-prefix", "launch-prefix-filter")


def check_launch_configurations(configurations: Mapping[str, str], accepted: Iterable[str] = ARGUMENT_NAMES) -> None:
    """Refuse names among a launch file's launch configurations that it does not accept.

    ROS 2 launch does not: `ros2 launch` includes the file with every name:=value as a launch
    argument, and IncludeLaunchDescription sets arguments that match no DeclareLaunchArgument as
    launch configurations all the same (launch/actions/include_launch_description.py, humble), so a
    misspelled `use_sm:=true` left use_sim at its default and started the real arm. A launch file
    calls this before anything else, with every configuration in its scope."""
    allowed = set(accepted) | set(ROS2_LAUNCH_OPTIONS)
    unknown = sorted(set(configurations) - allowed)
    if unknown:
        raise SystemArgumentError(
            f"unknown launch argument(s) {unknown}; valid arguments: {', '.join(sorted(set(accepted)))}"
        )


def parse_cli(argv: Iterable[str]) -> dict[str, str]:
    """`name:=value` words, as ros2 launch takes them."""
    values = {}
    for word in argv:
        name, sep, value = word.partition(":=")
        if not sep or not name:
            raise SystemArgumentError(f"argument {word!r}: expected name:=value (arguments: {', '.join(ARGUMENT_NAMES)})")
        values[name] = value
    return values


def _positive_float(name: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0:
        raise SystemArgumentError(f"{name}:={text}: expected a positive number")
    return value


def resolve_arguments(values: Mapping[str, str]) -> dict[str, str]:
    """Defaults filled in, names and values checked, `camera` made explicit."""
    unknown = sorted(set(values) - set(ARGUMENT_NAMES))
    if unknown:
        raise SystemArgumentError(f"unknown argument(s) {unknown}; arguments are: {', '.join(ARGUMENT_NAMES)}")
    resolved = {argument.name: str(values.get(argument.name, argument.default)) for argument in LAUNCH_ARGUMENTS}
    for argument in LAUNCH_ARGUMENTS:
        if argument.choices and resolved[argument.name] not in argument.choices:
            raise SystemArgumentError(
                f"{argument.name}:={resolved[argument.name]}: expected one of {[c for c in argument.choices if c]}"
            )
    if not resolved["camera"]:
        resolved["camera"] = "sim" if resolved["use_sim"] == "true" else "realsense"
    if resolved["camera"] == "sim":
        _resolve_sim_scene(resolved)
    elif resolved["sim_task"] or resolved["sim_seed"]:
        raise SystemArgumentError("sim_task / sim_seed: only the sim camera's tabletop has a scene (camera:=sim)")
    if not resolved["camera_rate_hz"]:
        resolved["camera_rate_hz"] = str(CAMERA_DEFAULTS["rate_hz"])
    for name in ("rate_hz", "camera_rate_hz"):
        _positive_float(name, resolved[name])
    if not resolved["model"]:
        model = default_model_dir()
        resolved["model"] = str(model) if model is not None else ""
    if resolved["camera"] == "replay" and not resolved["camera_path"]:
        raise SystemArgumentError("camera:=replay needs camera_path:=FOLDER_OR_VIDEO")
    if resolved["params_file"] and not Path(resolved["params_file"]).is_file():
        raise SystemArgumentError(f"params_file:={resolved['params_file']}: no such file")
    return resolved


def _resolve_sim_scene(resolved: dict[str, str]) -> None:
    """The sim camera is the simulated tabletop's: it needs use_sim:=true and the wx250s, and a scene.
    Imported here, not at the top: the robot PC's install has no MuJoCo (test_robot_imports_no_mujoco)."""
    from mqe.sim import TASKS
    from widowx_bridge.tabletop import DEFAULTS as TABLETOP_DEFAULTS

    if resolved["use_sim"] != "true":
        raise SystemArgumentError("camera:=sim is the simulated tabletop's camera; it needs use_sim:=true")
    if resolved["robot_model"] != "wx250s":
        raise SystemArgumentError(f"robot_model:={resolved['robot_model']}: the simulated tabletop has a wx250s")
    named = SIM_GOAL_NAME.search(resolved["goal"])
    resolved["sim_task"] = resolved["sim_task"] or (named["task"] if named else TABLETOP_DEFAULTS["sim_task"])
    resolved["sim_seed"] = resolved["sim_seed"] or (named["seed"] if named else str(TABLETOP_DEFAULTS["sim_seed"]))
    if resolved["sim_task"] not in TASKS:
        raise SystemArgumentError(f"sim_task:={resolved['sim_task']}: expected one of {list(TASKS)}")
    if not resolved["sim_seed"].isdigit():
        raise SystemArgumentError(f"sim_seed:={resolved['sim_seed']}: expected a whole number >= 0")
    resolved["camera_rate_hz"] = resolved["camera_rate_hz"] or str(TABLETOP_DEFAULTS["camera_rate_hz"])


def resolve_goal(goal: str, goal_dir: str | Path) -> Path:
    """A bare file name is looked up in the goal directory; anything with a directory part is a path."""
    from mqe.runtime import GoalImageError

    if not goal:
        raise GoalImageError("goal: no goal image given (set goal:=NAME.png from the goal directory, or a path)")
    path = Path(goal).expanduser()
    if path.is_absolute() or len(path.parts) > 1:
        return path
    return Path(goal_dir).expanduser() / path


def check_inputs(arguments: Mapping[str, str]) -> None:
    """Load the model and the goal as the policy node will, and run its probe inference, once, before
    any node starts: a launch that would refuse to start stops here, before the arm resets or moves.
    Raises the policy node's own one-line errors (PolicyArtifactError, GoalImageError: ValueErrors)."""
    from mqe.contract import PolicyArtifactError
    from mqe.runtime import OnnxPolicy, load_goal_image

    if not arguments["model"]:
        raise PolicyArtifactError("model: no policy given (set model:=DIR, a directory written by mqe-export, or $MQE_MODEL)")
    goal = load_goal_image(resolve_goal(arguments["goal"], arguments["goal_dir"] or default_goal_dir()))
    policy = OnnxPolicy(arguments["model"], threads=1)
    policy.set_goal(goal)
    policy.probe(goal)


def describe_nodes(arguments: Mapping[str, str]) -> list[NodeDescription]:
    """The nodes of the system for resolved arguments (see resolve_arguments)."""
    system_file = (str(config_dir() / "system.yaml"),)
    user_files = (arguments["params_file"],) if arguments["params_file"] else ()
    camera = arguments["camera"]
    camera_parameters = {"source": camera, "rate_hz": float(arguments["camera_rate_hz"])}
    if camera == "replay":
        camera_parameters["replay_path"] = arguments["camera_path"]
    elif camera == "usb" and arguments["camera_path"]:
        camera_parameters["usb_device"] = arguments["camera_path"]
    policy_parameters = {
        "model": arguments["model"],
        "goal": arguments["goal"],
        "rate_hz": float(arguments["rate_hz"]),
        # The simulated cameras render a still scene while the arm holds: identical frames are expected.
        "reject_identical_frames": camera not in ("sim", "synthetic"),
        # Each tick waits up to 1.5 camera periods for a fresh frame (control.LoopConfig), capped below the tick.
        "fresh_frame_wait": min(1.5 / float(arguments["camera_rate_hz"]), 0.5 / float(arguments["rate_hz"])),
    }
    if arguments["goal_dir"]:
        policy_parameters["goal_dir"] = arguments["goal_dir"]
    bridge_config = config_dir("widowx_bridge")
    arm_parameters = {"backend": "sim" if arguments["use_sim"] == "true" else "interbotix",
                      "robot_model": arguments["robot_model"]}
    if camera == "sim":  # the simulated tabletop: arm and camera in the one process that owns the world
        hardware = [NodeDescription(
            package="widowx_bridge",
            executable="sim_tabletop",
            name="widowx_arm",
            node_class="widowx_bridge.tabletop:TabletopNode",
            parameter_files=(str(bridge_config / "arm.yaml"), str(bridge_config / "tabletop.yaml")) + system_file + user_files,
            parameters={**arm_parameters, "sim_task": arguments["sim_task"], "sim_seed": int(arguments["sim_seed"]),
                        "camera_rate_hz": float(arguments["camera_rate_hz"])},
            required=False,
        )]
    else:
        hardware = [
            NodeDescription(
                package="widowx_bridge",
                executable="camera_node",
                name="camera",
                node_class="widowx_bridge.camera_node:CameraNode",
                parameter_files=(str(bridge_config / "camera.yaml"),) + system_file + user_files,
                parameters=camera_parameters,
                required=False,
            ),
            NodeDescription(
                package="widowx_bridge",
                executable="arm_node",
                name="widowx_arm",
                node_class="widowx_bridge.arm_node:ArmNode",
                parameter_files=(str(bridge_config / "arm.yaml"),) + system_file + user_files,
                parameters=arm_parameters,
                required=False,
            ),
        ]
    return hardware + [
        NodeDescription(
            package=PACKAGE,
            executable="policy_node",
            name="policy",
            node_class="mqe_policy.policy_node:PolicyNode",
            parameter_files=(str(config_dir() / "policy.yaml"),) + system_file + user_files,
            parameters=policy_parameters,
            required=True,
        ),
    ]
