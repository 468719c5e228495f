"""The operator's live view without RViz: one composite image of the camera frame, the goal, and the
policy's state, steps-to-goal and timing, published as `policy/live_view` (sensor_msgs/Image, rgb8).

    mqe-live-view                    # publish policy/live_view next to a running system
    mqe-live-view --window           # and show it in a window (needs a display)
    mqe-live-view --save view.png    # and keep the newest composite in a file (over ssh: open it)

Why a composite image topic (docs/operators.md, "Live view"): the robot PC is often headless or
runs the Docker image without X, so a window cannot be the only way; an image topic is one thing
every viewer shows (rqt_image_view, Foxglove through foxglove_bridge, `ros2 bag record` to MCAP
opened later in Foxglove), and the window and the file are this same image. It is drawn here, in
its own process, from topics the system already publishes (camera/image_raw and the policy's
/diagnostics status, whose `goal` value names the goal file), so the policy node does no drawing.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import threading
from pathlib import Path

import cv2
import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image

from mqe.runtime import GoalImageError, load_goal_image
from mqe_policy import topics
from mqe_policy.policy_node import NODE_NAME as POLICY_NODE_NAME
from widowx_bridge.topics import image_from_msg

NODE_NAME = "live_view"
WINDOW_TITLE = "mqe live view"
PANEL_HEIGHT = 240  # px of each image panel
TEXT_HEIGHT = 84  # px of the status lines under the panels
STATE_COLOURS = {"running": (80, 220, 80), "paused": (240, 200, 60), "stopped": (200, 200, 200)}  # else red: held


@dataclasses.dataclass(frozen=True)
class LiveViewConfig:
    rate_hz: float = 2.0  # composites per second (the view is for eyes; the policy runs at 5 Hz)
    policy_status_prefix: str = f"{POLICY_NODE_NAME}: "  # the policy node's /diagnostics status name starts so


def _panel(rgb: np.ndarray | None, label: str) -> np.ndarray:
    if rgb is None:
        panel = np.zeros((PANEL_HEIGHT, PANEL_HEIGHT * 4 // 3, 3), np.uint8)
    else:
        width = max(1, round(rgb.shape[1] * PANEL_HEIGHT / rgb.shape[0]))
        panel = cv2.resize(rgb, (width, PANEL_HEIGHT), interpolation=cv2.INTER_AREA)
    cv2.putText(panel, label, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 0), 1, cv2.LINE_AA)
    return panel


def _number(values: dict, key: str, unit: str, digits: int = 1) -> str:
    try:
        value = float(values.get(key, "nan"))
    except ValueError:
        value = math.nan
    return f"{value:.{digits}f}{unit}" if math.isfinite(value) else "-"


def render(camera_rgb: np.ndarray | None, goal_rgb: np.ndarray | None, status: dict) -> np.ndarray:
    """The composite: camera | goal side by side, and under them the policy's state (coloured),
    why actions are held, steps-to-goal and timing, from the policy's /diagnostics key/values."""
    camera, goal = _panel(camera_rgb, "camera"), _panel(goal_rgb, "goal")
    gap = np.full((PANEL_HEIGHT, 4, 3), 128, np.uint8)
    top = np.concatenate([camera, gap, goal], axis=1)
    text = np.zeros((TEXT_HEIGHT, top.shape[1], 3), np.uint8)
    state = status.get("state", "no policy status")
    colour = STATE_COLOURS.get(state, (255, 80, 80))
    lines = [
        (f"state: {state}" + (f"  ({status['reason']})" if status.get("reason") else ""), colour),
        (f"steps to goal: {_number(status, 'steps_to_goal', '')}   rate: {_number(status, 'rate_hz', ' Hz', 2)}   "
         f"inference: {_number(status, 'latency_ms', ' ms')}   frame age: {_number(status, 'frame_age_s', ' s', 3)}",
         (255, 255, 255)),
        (f"goal: {status.get('goal', '-')}", (200, 200, 200)),
    ]
    for row, (line, line_colour) in enumerate(lines):
        cv2.putText(text, line[:110], (6, 22 + 26 * row), cv2.FONT_HERSHEY_SIMPLEX, 0.5, line_colour, 1, cv2.LINE_AA)
    return np.ascontiguousarray(np.concatenate([top, text], axis=0))


class LiveViewNode(Node):
    """Subscribes the camera and /diagnostics, publishes the composite at LiveViewConfig.rate_hz."""

    def __init__(self, config: LiveViewConfig = LiveViewConfig(), on_view=None, **kwargs):
        super().__init__(NODE_NAME, **kwargs)
        self.config, self.on_view = config, on_view
        self._lock = threading.Lock()
        self._camera_msg = None
        self.status: dict = {}
        self._goal_file, self._goal_rgb = None, None
        self.create_subscription(Image, topics.CAMERA_IMAGE, self._on_camera, qos_profile_sensor_data)
        self.create_subscription(DiagnosticArray, topics.DIAGNOSTICS, self._on_diagnostics, 10)
        self.publisher = self.create_publisher(Image, topics.LIVE_VIEW, 1)
        self.create_timer(1.0 / config.rate_hz, self._publish)

    def _on_camera(self, msg) -> None:
        with self._lock:
            self._camera_msg = msg  # decoded only when drawn

    def _on_diagnostics(self, msg) -> None:
        for status in msg.status:
            if status.name.startswith(self.config.policy_status_prefix):
                values = {kv.key: kv.value for kv in status.values}
                with self._lock:
                    self.status = values
                self._load_goal(values.get("goal", ""))

    def _load_goal(self, goal: str) -> None:
        if goal == self._goal_file or not Path(goal).is_file():  # "from policy/goal_image" has no file
            return
        try:
            self._goal_rgb, self._goal_file = load_goal_image(goal), goal
        except GoalImageError as error:
            self.get_logger().warning(f"goal preview: {error}", throttle_duration_sec=10.0)

    def _publish(self) -> None:
        with self._lock:
            camera_msg, status = self._camera_msg, dict(self.status)
        try:
            camera = image_from_msg(camera_msg) if camera_msg is not None else None
        except ValueError as error:
            self.get_logger().warning(f"{topics.CAMERA_IMAGE}: {error}", throttle_duration_sec=10.0)
            camera = None
        view = render(camera, self._goal_rgb, status)
        msg = Image(height=view.shape[0], width=view.shape[1], encoding="rgb8", step=view.shape[1] * 3)
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.data = view.tobytes()
        self.publisher.publish(msg)
        if self.on_view is not None:
            self.on_view(view)


def main(argv: list[str] | None = None) -> int:
    import rclpy
    from rclpy.executors import ExternalShutdownException

    from mqe_policy import system

    parser = argparse.ArgumentParser(prog="mqe-live-view", description=__doc__.splitlines()[0])
    parser.add_argument("--window", action="store_true", help="also show the view in an OpenCV window (needs a display)")
    parser.add_argument("--save", default="", help="also keep the newest view in this image file")
    parser.add_argument("--rate", type=float, default=LiveViewConfig.rate_hz, help="views per second (default %(default)s)")
    args, ros_args = parser.parse_known_args(argv)
    if not args.rate > 0:
        print(f"mqe-live-view: --rate {args.rate}: expected a positive number", file=sys.stderr)
        return 2
    if args.window:
        try:
            cv2.namedWindow(WINDOW_TITLE)
        except cv2.error:  # opencv-python-headless (the base install) has no GUI; neither has a shell without a display
            print("mqe-live-view: --window needs a display and OpenCV with GUI support (pip install opencv-python); "
                  "use --save FILE or rqt_image_view /policy/live_view instead", file=sys.stderr)
            return 2
    latest = {}

    def on_view(view: np.ndarray) -> None:
        latest["view"] = view
        if args.save:
            cv2.imwrite(args.save, cv2.cvtColor(view, cv2.COLOR_RGB2BGR))

    system.apply_dds_environment()
    rclpy.init(args=["mqe-live-view", *ros_args])
    node = LiveViewNode(LiveViewConfig(rate_hz=args.rate), on_view=on_view)
    print(f"mqe-live-view: publishing policy/live_view at {args.rate:g} Hz; Ctrl-C stops", file=sys.stderr)
    try:
        while rclpy.ok():
            rclpy.spin_once(node, timeout_sec=0.05)
            if args.window and "view" in latest:
                cv2.imshow(WINDOW_TITLE, cv2.cvtColor(latest.pop("view"), cv2.COLOR_RGB2BGR))
                cv2.waitKey(1)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
