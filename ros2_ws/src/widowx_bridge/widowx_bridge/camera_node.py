"""ROS 2 node publishing camera frames as sensor_msgs/Image (rgb8, sensor-data QoS).

A capture thread (FramePublisher) reads the source, checks each frame with
mqe.contract.check_rgb_image, stamps it with the node clock at capture and publishes it at the
source's rate. Bad frames are dropped and counted, never published. The synthetic source renders
the 2-D tabletop of mqe-make-dataset at the arm's commanded pose, which this node receives on
topics.ARM_COMMANDED_POSE/GRIPPER. The simulated MuJoCo tabletop's camera is not a source of this
node: it is published by the process that owns the world (widowx_bridge.tabletop).
"""

from __future__ import annotations

import array
import sys
import threading
import time

import numpy as np
from diagnostic_msgs.msg import DiagnosticStatus, KeyValue
from geometry_msgs.msg import PoseStamped
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image
from std_msgs.msg import Float32

from mqe.contract import check_rgb_image

from widowx_bridge import topics
from widowx_bridge.camera_sources import BadFrame, CameraSource, CameraSourceError, make_source
from widowx_bridge.control import ControlConfig
from widowx_bridge.params import as_parameter_list, declare_all, refuse_changes_at_run_time, run_node

NODE_NAME = "camera"

# Declared defaults; config/camera.yaml repeats them for operators (a test keeps the two equal).
DEFAULTS = {
    "source": "replay",  # "realsense", "usb", "replay" or "synthetic" (mqe-make-dataset's 2-D tabletop)
    "rate_hz": 30.0,  # frames per second (replay/synthetic/usb are paced to it; realsense streams at it)
    "replay_path": "",  # replay: a folder of images or a video file, looped
    "usb_device": "0",  # usb: device index, /dev/videoN, or a video file path
    "width": 640,  # usb/realsense: requested frame size
    "height": 480,
    "realsense_serial": "",  # realsense: pick a device by serial number; empty = the first one
    "frame_timeout": 1.0,  # realsense: s to wait for a frame before counting a miss
    "reconnect_after": 3,  # realsense: consecutive misses before the pipeline is restarted
    "synthetic_image_size": 256,  # synthetic: rendered square frame size
    "synthetic_scene_seed": 0,  # synthetic: object layout of the 2-D tabletop
    "frame_id": "camera_color_optical_frame",
    "status_rate_hz": 1.0,
}


class FramePublisher:
    """Publishes a CameraSource's frames from `node` on topics.CAMERA_IMAGE, with camera/status.

    A capture thread reads the source (blocking reads never stall the executor), checks each frame
    with mqe.contract.check_rgb_image, stamps it with the node clock and publishes it. Used by the
    camera node and by the simulated tabletop, whose camera lives in the process that owns the world.
    """

    def __init__(self, node: Node, source: CameraSource, frame_id: str, status_rate_hz: float):
        self.node, self.source, self.frame_id = node, source, frame_id
        self.image_publisher = node.create_publisher(Image, topics.CAMERA_IMAGE, qos_profile_sensor_data)
        self.status_publisher = node.create_publisher(DiagnosticStatus, topics.CAMERA_STATUS, 10)
        self.published = 0
        self.dropped_bad = 0
        self.missed = 0
        self.source_errors = 0
        self.last_error = ""
        self._window = (time.monotonic(), 0)
        node.create_timer(1.0 / status_rate_hz, self._publish_status)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._capture_loop, name="camera_capture", daemon=True)
        self._thread.start()

    def _capture_loop(self) -> None:
        try:
            self._capture_frames()
        finally:
            self.source.capture_thread_done()

    def _capture_frames(self) -> None:
        logger = self.node.get_logger()
        while not self._stop.is_set():
            try:
                frame = self.source.read(self._stop)
                if frame is None:
                    self.missed += 1
                    continue
                check_rgb_image(frame, f"camera source {self.source.name}")
            except (BadFrame, ValueError) as error:
                self.dropped_bad += 1
                self.last_error = str(error)
                logger.warning(f"dropped frame: {error}", throttle_duration_sec=2.0)
                continue
            except Exception as error:  # a driver error must not kill the capture thread silently
                self.source_errors += 1
                self.last_error = f"{type(error).__name__}: {error}"
                logger.error(f"camera source error: {self.last_error}", throttle_duration_sec=2.0)
                self._stop.wait(0.1)
                continue
            if self._stop.is_set() or not self.node.context.ok():
                break
            self.image_publisher.publish(self._to_message(frame))
            self.published += 1

    def _to_message(self, frame: np.ndarray) -> Image:
        message = Image()
        message.header.stamp = self.node.get_clock().now().to_msg()
        message.header.frame_id = self.frame_id
        message.height, message.width = frame.shape[:2]
        message.encoding = "rgb8"
        message.is_bigendian = 0
        message.step = frame.shape[1] * 3
        message.data = array.array("B", np.ascontiguousarray(frame).tobytes())
        return message

    def _publish_status(self) -> None:
        now = time.monotonic()
        start, count = self._window
        rate = (self.published - count) / max(now - start, 1e-6)
        self._window = (now, self.published)
        status = DiagnosticStatus(name=f"{self.node.get_name()}: camera", hardware_id=self.source.name)
        healthy = rate > 0.5 * self.source.rate_hz
        status.level = DiagnosticStatus.OK if healthy else DiagnosticStatus.WARN
        status.message = f"{rate:.1f} Hz" if healthy else f"low frame rate {rate:.1f} Hz (expected {self.source.rate_hz:g})"
        status.values = [KeyValue(key=k, value=str(v)) for k, v in [
            ("source", self.source.name), ("rate_hz", f"{rate:.2f}"), ("published", self.published),
            ("dropped_bad", self.dropped_bad), ("missed", self.missed), ("source_errors", self.source_errors),
            ("reconnects", self.source.reconnects),
            ("last_error", self.last_error)]]
        self.status_publisher.publish(status)

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5.0)


class CameraNode(Node):
    def __init__(self, *, source: CameraSource | None = None, parameter_overrides=None, **node_kwargs):
        super().__init__(NODE_NAME, parameter_overrides=as_parameter_list(parameter_overrides), **node_kwargs)
        p = declare_all(self, DEFAULTS)
        refuse_changes_at_run_time(self, DEFAULTS)  # all are read once, here
        self._state_lock = threading.Lock()
        start = ControlConfig().start_pose
        self._ee_xyz, self._gripper = np.array(start[:3]), ControlConfig().start_gripper
        if source is None:
            source = make_source(
                p["source"], rate_hz=p["rate_hz"], replay_path=p["replay_path"], usb_device=p["usb_device"],
                width=p["width"], height=p["height"], realsense_serial=p["realsense_serial"],
                frame_timeout=p["frame_timeout"], reconnect_after=p["reconnect_after"], synthetic_state=self._arm_state,
                synthetic_image_size=p["synthetic_image_size"], synthetic_scene_seed=p["synthetic_scene_seed"],
            )
        self.source = source
        self.source.open()
        if self.source.name == "synthetic":
            self.create_subscription(PoseStamped, topics.ARM_COMMANDED_POSE, self._on_pose, 10)
            self.create_subscription(Float32, topics.ARM_COMMANDED_GRIPPER, self._on_gripper, 10)
        self.frames = FramePublisher(self, self.source, p["frame_id"], p["status_rate_hz"])
        self.get_logger().info(f"camera ready: source={self.source.name} rate={self.source.rate_hz:g} Hz")

    def _arm_state(self) -> tuple[np.ndarray, float]:
        with self._state_lock:
            return self._ee_xyz.copy(), self._gripper

    def _on_pose(self, message: PoseStamped) -> None:
        with self._state_lock:
            self._ee_xyz = np.array([message.pose.position.x, message.pose.position.y, message.pose.position.z])

    def _on_gripper(self, message: Float32) -> None:
        with self._state_lock:
            self._gripper = float(message.data)

    def destroy_node(self):
        self.frames.stop()
        self.source.close()
        return super().destroy_node()


def main(args=None) -> int:
    return run_node(CameraNode, "camera_node", (CameraSourceError, ValueError), args)


if __name__ == "__main__":
    sys.exit(main())
