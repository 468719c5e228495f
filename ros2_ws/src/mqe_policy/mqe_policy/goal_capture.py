"""Goal capture: save what the robot's own camera sees now as a goal image.

    mqe-capture-goal drawer.png [--goal-dir DIR] [--force]      # save camera/image_raw's next frame
    mqe-capture-goal drawer.png --compare                       # goal beside the live frame, saves nothing

The operator's workflow (docs/operators.md): arrange the scene by hand as the arm should leave it,
capture, put the scene back, run with `goal:=drawer.png`. The goal goes into the goal directory
(`--goal-dir`, else $MQE_GOAL_DIR, else the installed goal_images/: system.default_goal_dir, the one
the policy node resolves `goal:=NAME` in). An existing goal is never replaced without --force, and
a file appears whole or not at all (written beside it, then linked or renamed into place).

Each capture also writes `previews/NAME` in the goal directory: the saved goal (read back from the
file) beside the next live frame, with their mean absolute pixel difference. A large difference at
capture means the scene moved while it was taken (a hand in view, the camera knocked); after the
scene is reset, `--compare` shows the goal beside the live view again.

The policy node offers the same capture as the service `policy/capture_goal` (std_srvs/Trigger: no
request fields, so the file is named capture-<UTC time>.png; the preview shows it beside the goal
the policy is running). The plain-Python parts here are tested without ROS.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from mqe.runtime import GoalImageError, check_goal_image, load_goal_image

GOAL_SUFFIXES = (".png", ".jpg", ".jpeg")
PREVIEW_DIR = "previews"  # in the goal directory; goal:=NAME never resolves in it (bare names only)
LABEL_HEIGHT = 22


class CaptureError(ValueError):
    """A goal name, directory or file the capture refuses (one line naming it)."""


def goal_file_name(name: str) -> str:
    """The file name a goal NAME is saved as: a bare file name, `.png` appended when it has no suffix."""
    if not name or name in (".", "..") or "/" in name or os.sep in name or name.startswith("."):
        raise CaptureError(f"goal name {name!r}: expected a bare file name such as drawer.png (no directory part)")
    suffix = Path(name).suffix.lower()
    if not suffix:
        return name + ".png"
    if suffix not in GOAL_SUFFIXES:
        raise CaptureError(f"goal name {name!r}: expected a .png (lossless, preferred) or .jpg file name")
    return name


def goal_path(goal_dir: str | Path, name: str) -> Path:
    return Path(goal_dir).expanduser() / goal_file_name(name)


def check_can_write(path: Path, force: bool) -> None:
    if path.exists() and not force:
        raise CaptureError(f"goal image {path} exists; choose another name or pass --force to replace it")
    if not path.parent.is_dir():
        raise CaptureError(f"goal directory {path.parent}: no such directory (create it, or pass --goal-dir)")
    if not os.access(path.parent, os.W_OK):
        raise CaptureError(f"goal directory {path.parent}: not writable (pass --goal-dir, or set MQE_GOAL_DIR)")


def _encode(rgb: np.ndarray, path: Path) -> bytes:
    ok, encoded = cv2.imencode(path.suffix.lower(), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise CaptureError(f"{path}: the image could not be encoded")
    return encoded.tobytes()


def write_image(rgb: np.ndarray, path: Path, force: bool) -> Path:
    """Write `rgb` to `path` whole or not at all; without `force` an existing file is never replaced,
    even one that appears between the check and the write (os.link fails on an existing name)."""
    check_can_write(path, force)
    data = _encode(rgb, path)
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix, delete=False) as tmp:
        tmp.write(data)
        tmp.flush()
        os.fsync(tmp.fileno())
    try:
        if force:
            os.replace(tmp.name, path)
        else:
            try:
                os.link(tmp.name, path)
            except FileExistsError:
                raise CaptureError(f"goal image {path} exists; choose another name or pass --force to replace it") from None
    finally:
        if os.path.exists(tmp.name):
            os.unlink(tmp.name)
    return path


def save_goal(rgb: np.ndarray, goal_dir: str | Path, name: str, force: bool = False) -> Path:
    """Check the frame as the policy checks goals, save it as goal NAME; returns the file written."""
    check_goal_image(rgb, "camera frame")
    return write_image(rgb, goal_path(goal_dir, name), force)


def write_sim_goal(task, directory: str | Path) -> Path:
    """The goal image of a simulated task instance (an mqe.sim.TaskInstance: its goal state rendered
    by mqe.sim.render_goal_image), written whole into `directory` under system.sim_goal_name, so that
    `goal:=` of that file starts the tabletop in that instance. Replaces an existing one."""
    from mqe import sim
    from mqe_policy.system import sim_goal_name

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    return write_image(sim.render_goal_image(task), directory / sim_goal_name(task.name, task.seed), force=True)


def _labelled(rgb: np.ndarray, label: str, height: int) -> np.ndarray:
    scaled = cv2.resize(rgb, (max(1, round(rgb.shape[1] * height / rgb.shape[0])), height), interpolation=cv2.INTER_AREA)
    strip = np.zeros((LABEL_HEIGHT, scaled.shape[1], 3), np.uint8)
    cv2.putText(strip, label, (4, LABEL_HEIGHT - 7), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
    return np.concatenate([strip, scaled], axis=0)


def side_by_side(left: np.ndarray, right: np.ndarray, left_label: str, right_label: str) -> np.ndarray:
    """The two RGB images at one height (the taller one's, at most 480 px), each under its label."""
    height = min(max(left.shape[0], right.shape[0]), 480)
    gap = np.full((height + LABEL_HEIGHT, 4, 3), 128, np.uint8)
    return np.concatenate([_labelled(left, left_label, height), gap, _labelled(right, right_label, height)], axis=1)


def mean_abs_difference(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute pixel difference (0..255) after squashing b to a's size."""
    if a.shape != b.shape:
        b = cv2.resize(b, (a.shape[1], a.shape[0]), interpolation=cv2.INTER_AREA)
    return float(np.mean(np.abs(a.astype(np.int16) - b.astype(np.int16))))


def write_preview(goal_file: Path, live_rgb: np.ndarray, live_label: str = "live") -> tuple[Path, float]:
    """previews/<goal file name> in the goal's directory: the goal as saved beside `live_rgb`.
    Returns the preview's path and the two images' mean absolute difference."""
    goal_rgb = load_goal_image(goal_file)
    difference = mean_abs_difference(goal_rgb, live_rgb)
    preview = goal_file.parent / PREVIEW_DIR / (goal_file.stem + ".png")
    preview.parent.mkdir(exist_ok=True)
    image = side_by_side(goal_rgb, live_rgb, f"goal {goal_file.name}", f"{live_label} (mean |diff| {difference:.1f})")
    write_image(image, preview, force=True)
    return preview, difference


def capture_name(now: datetime.datetime | None = None) -> str:
    """The file name of a capture that has no name of its own (the policy node's service)."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    return now.strftime("capture-%Y%m%d-%H%M%S.png")


class GoalCapturer:
    """The policy node's `policy/capture_goal` service: keeps the newest camera message and saves it.

    A Trigger service callback must not wait for a frame (the node's single-threaded executor
    delivers them), so it saves the newest one already received, and previews it beside the goal
    the policy is running, from `goal_path()` when that is a file."""

    def __init__(self, goal_dir, goal_path, decode):
        self._goal_dir, self._goal_path, self._decode = goal_dir, goal_path, decode
        self.latest = None  # the newest camera message, set by the node's frame callback

    def handle_trigger(self, request, response):
        response.success, response.message = self.capture()
        return response

    def capture(self) -> tuple[bool, str]:
        message = self.latest
        if message is None:
            return False, "no camera frame received yet; is the camera node running?"
        try:
            saved = save_goal(self._decode(message), self._goal_dir(), capture_name())
            running = Path(str(self._goal_path()))
            if running.is_file():
                preview, _ = write_preview(saved, load_goal_image(running), f"running goal {running.name}")
                return True, f"saved {saved}; preview {preview}; run with goal:={saved.name}"
            return True, f"saved {saved}; run with goal:={saved.name}"
        except (ValueError, OSError) as error:  # CaptureError, GoalImageError (a bad frame), a full disk
            return False, f"capture refused: {' '.join(str(error).split())}"


# --- the command -------------------------------------------------------------------------------
def _wait_for_frames(count: int, timeout: float, topic: str) -> list:
    """The next `count` camera messages on `topic` (newest-only QoS), or fewer at the timeout."""
    import rclpy
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image

    node = rclpy.create_node("goal_capture")
    frames = []
    try:
        node.create_subscription(Image, topic, frames.append, qos_profile_sensor_data)
        deadline = time.monotonic() + timeout
        while len(frames) < count and time.monotonic() < deadline:
            rclpy.spin_once(node, timeout_sec=min(0.1, max(deadline - time.monotonic(), 0.0)))
    finally:
        node.destroy_node()
    return frames[:count]


def main(argv: list[str] | None = None) -> int:
    from mqe_policy import system, topics

    parser = argparse.ArgumentParser(prog="mqe-capture-goal", description=__doc__.splitlines()[0])
    parser.add_argument("name", help="goal file name, e.g. drawer.png (.png appended when there is no suffix)")
    parser.add_argument("--goal-dir", default="", help="goal directory (default: $MQE_GOAL_DIR, else the installed goal_images/)")
    parser.add_argument("--force", action="store_true", help="replace an existing goal image of that name")
    parser.add_argument("--compare", action="store_true", help="save nothing: write the goal's preview beside the live frame")
    parser.add_argument("--topic", default=topics.CAMERA_IMAGE, help="camera topic (default %(default)s)")
    parser.add_argument("--timeout", type=float, default=5.0, help="s to wait for camera frames (default %(default)s)")
    args, ros_args = parser.parse_known_args(argv)
    goal_dir = Path(args.goal_dir) if args.goal_dir else system.default_goal_dir()
    try:
        path = goal_path(goal_dir, args.name)
        if args.compare:
            load_goal_image(path)
        else:
            check_can_write(path, args.force)
    except (CaptureError, GoalImageError) as error:
        print(f"mqe-capture-goal: {error}", file=sys.stderr)
        return 1

    import rclpy
    from widowx_bridge.topics import image_from_msg

    system.apply_dds_environment()  # the profile that carries full camera frames, as the system uses
    rclpy.init(args=["mqe-capture-goal", *ros_args])
    try:
        frames = _wait_for_frames(1 if args.compare else 2, args.timeout, args.topic)
    finally:
        rclpy.try_shutdown()
    if not frames:
        print(f"mqe-capture-goal: no frame on {args.topic} within {args.timeout:g} s; is the camera node running? "
              f"(ros2 topic hz {args.topic})", file=sys.stderr)
        return 2
    try:
        if not args.compare:
            save_goal(image_from_msg(frames[0]), goal_dir, args.name, args.force)
            print(f"saved {path}")
        if args.compare or len(frames) > 1:
            preview, difference = write_preview(path, image_from_msg(frames[-1]))
            print(f"preview {preview} (goal beside the live frame, mean |diff| {difference:.1f} of 255)")
    except (ValueError, OSError) as error:
        print(f"mqe-capture-goal: {' '.join(str(error).split())}", file=sys.stderr)
        return 1
    if not args.compare:
        print(f"now put the scene back and run with goal:={path.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
