"""Camera sources behind one interface: RealSense, USB (OpenCV), replay (folder or video), synthetic.

Every source yields RGB uint8 HxWx3 frames at its native size; resizing to the policy's input is
the policy's job (mqe.contract.resize_for_policy), never the camera's. `read()` returns a frame,
returns None when no frame came in time (counted as missed by the node) or raises BadFrame for
content that cannot be a frame (counted as dropped; never published).
"""

from __future__ import annotations

import abc
import os
import threading
import time
from typing import Callable

import cv2
import numpy as np

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp")
# A replay folder's decoded frames are kept in memory up to this size, so a replay costs what a
# camera costs (a copy per frame, not a PNG decode); frames beyond it are decoded on every pass.
REPLAY_CACHE_BYTES = 512 * 2**20
SOURCES = ("realsense", "usb", "replay", "synthetic")


class BadFrame(RuntimeError):
    """The source produced something that is not a usable image."""


class CameraSourceError(RuntimeError):
    """The source cannot be opened (missing file, no device, unsupported configuration)."""


class Pacer:
    """Sleeps until the next tick of a fixed rate. A late tick does not cause a burst of catch-up
    ticks: the schedule restarts from now."""

    def __init__(self, rate_hz: float):
        if not rate_hz > 0:
            raise ValueError(f"rate_hz: must be > 0, got {rate_hz}")
        self.period = 1.0 / rate_hz
        self._next = None

    def wait(self, stop: threading.Event | None = None) -> None:
        now = time.monotonic()
        if self._next is None or now - self._next > self.period:
            self._next = now
        delay = self._next - now
        if delay > 0:
            if stop is not None:
                stop.wait(delay)
            else:
                time.sleep(delay)
        self._next += self.period


class CameraSource(abc.ABC):
    name: str
    rate_hz: float

    def open(self) -> None:
        """Acquire the device or file; raise CameraSourceError with a clear reason."""

    @abc.abstractmethod
    def read(self, stop: threading.Event | None = None) -> np.ndarray | None:
        """Block until the next frame (paced at rate_hz where the source does not pace itself)."""

    def close(self) -> None:
        """Release the device or file."""

    def capture_thread_done(self) -> None:
        """Called on the thread that called read() when it stops reading: release what is bound to
        that thread (the simulated camera's GL context)."""

    @property
    def reconnects(self) -> int:
        return getattr(self, "_reconnects", 0)


def _bgr_to_rgb(image: np.ndarray | None, where: str) -> np.ndarray:
    if image is None or not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 \
            or image.dtype != np.uint8 or image.size == 0:
        shape = None if image is None else getattr(image, "shape", type(image).__name__)
        raise BadFrame(f"{where}: not a colour uint8 image (got {shape})")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


class ReplaySource(CameraSource):
    """A folder of images (sorted by name) or a video file, played at rate_hz, looping forever.

    A folder's frames are decoded once and kept (up to REPLAY_CACHE_BYTES, read-only arrays); a
    file that does not decode raises BadFrame every time its turn comes."""

    name = "replay"

    def __init__(self, path: str, rate_hz: float = 30.0):
        self.path = path
        self.rate_hz = rate_hz
        self._pacer = Pacer(rate_hz)
        self._files: list[str] = []
        self._index = 0
        self._decoded: dict[int, np.ndarray] = {}
        self._decoded_bytes = 0
        self._capture = None

    def open(self) -> None:
        if not self.path or not os.path.exists(self.path):
            raise CameraSourceError(f"replay: path {self.path!r} does not exist (a folder of images or a video file)")
        if os.path.isdir(self.path):
            self._files = sorted(os.path.join(self.path, f) for f in os.listdir(self.path)
                                 if f.lower().endswith(IMAGE_EXTENSIONS))
            if not self._files:
                raise CameraSourceError(f"replay: folder {self.path} has no images ({', '.join(IMAGE_EXTENSIONS)})")
        else:
            self._capture = cv2.VideoCapture(self.path)
            if not self._capture.isOpened():
                raise CameraSourceError(f"replay: {self.path} is neither a folder nor a video OpenCV can open")
            ok, first = self._capture.read()
            if not ok:
                raise CameraSourceError(f"replay: video {self.path} has no decodable frame")
            self._capture.set(cv2.CAP_PROP_POS_FRAMES, 0)

    def read(self, stop=None) -> np.ndarray | None:
        self._pacer.wait(stop)
        if self._capture is not None:
            ok, image = self._capture.read()
            if not ok:  # end of the video: loop
                self._capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
                ok, image = self._capture.read()
                if not ok:
                    raise BadFrame(f"replay: video {self.path} stopped decoding")
            return _bgr_to_rgb(image, f"replay {self.path}")
        index = self._index
        self._index = (index + 1) % len(self._files)
        if index in self._decoded:
            return self._decoded[index]
        path = self._files[index]
        frame = _bgr_to_rgb(cv2.imread(path, cv2.IMREAD_COLOR), f"replay {path}")
        if self._decoded_bytes + frame.nbytes <= REPLAY_CACHE_BYTES:
            frame.flags.writeable = False  # shared by every pass of the loop
            self._decoded[index] = frame
            self._decoded_bytes += frame.nbytes
        return frame

    def close(self) -> None:
        if self._capture is not None:
            self._capture.release()
            self._capture = None


class UsbSource(CameraSource):
    """An OpenCV VideoCapture: a device index ("0") or a path (/dev/video0, or a video file).

    A failed read releases and reopens the capture (a replugged camera comes back; a video file
    starts again from its first frame)."""

    name = "usb"

    def __init__(self, device: str = "0", rate_hz: float = 30.0, width: int = 640, height: int = 480):
        self.device = int(device) if str(device).isdigit() else str(device)
        self.rate_hz = rate_hz
        self.width, self.height = width, height
        self._pacer = Pacer(rate_hz)
        self._capture = None
        self._reconnects = 0

    def open(self) -> None:
        capture = cv2.VideoCapture(self.device)
        if not capture.isOpened():
            raise CameraSourceError(f"usb: cannot open camera {self.device!r} with OpenCV")
        if isinstance(self.device, int):
            capture.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
            capture.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
            capture.set(cv2.CAP_PROP_FPS, self.rate_hz)
            capture.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # newest frame, not a queue of old ones
        self._capture = capture

    def read(self, stop=None) -> np.ndarray | None:
        self._pacer.wait(stop)
        if self._capture is None:
            try:
                self.open()
            except CameraSourceError:
                return None
        ok, image = self._capture.read()
        if not ok:
            self._capture.release()
            self._capture = None
            self._reconnects += 1
            return None
        return _bgr_to_rgb(image, f"usb {self.device}")

    def close(self) -> None:
        if self._capture is not None:
            self._capture.release()
            self._capture = None


class RealSenseSource(CameraSource):
    """An Intel RealSense colour stream through pyrealsense2 (imported lazily: robot PC only).

    Frames come from a *stream*: anything with pyrealsense2's `wait_for_frames(timeout_ms)` (a
    frameset with get_color_frame(); RuntimeError when none arrives in time) and `stop()`.
    `stream_factory` starts one; the default starts an `rs.pipeline()` on the colour stream. Tests
    inject pyrealsense2's own software_sensor started into an rs.syncer() (software_device.add_to(ctx),
    the pipeline route, is broken in 2.56/2.59: librealsense issue 13819).

    Waits at most `timeout` s per frame; after `reconnect_after` consecutive timeouts it stops and
    restarts the stream (a USB glitch or a replugged camera recovers without a node restart)."""

    name = "realsense"

    def __init__(self, rate_hz: float = 30.0, width: int = 640, height: int = 480, serial: str = "",
                 timeout: float = 1.0, reconnect_after: int = 3, stream_factory: Callable[[], object] | None = None):
        self.rate_hz, self.width, self.height, self.serial = rate_hz, width, height, serial
        self.timeout, self.reconnect_after = timeout, reconnect_after
        self.stream_factory = stream_factory
        self._pipeline = None
        self._failures = 0
        self._reconnects = 0

    def open(self) -> None:
        if self.stream_factory is None:
            try:
                import pyrealsense2
            except ImportError as error:
                raise CameraSourceError(f"realsense: pyrealsense2 is not installed ({error})") from error
            self.stream_factory = lambda: self._start_pipeline(pyrealsense2)
        self._start()

    def _start_pipeline(self, rs):
        config = rs.config()
        if self.serial:
            config.enable_device(self.serial)
        config.enable_stream(rs.stream.color, self.width, self.height, rs.format.rgb8, int(round(self.rate_hz)))
        pipeline = rs.pipeline()
        pipeline.start(config)
        return pipeline

    def _start(self) -> None:
        try:
            self._pipeline = self.stream_factory()
        except RuntimeError as error:
            raise CameraSourceError(
                f"realsense: cannot start colour {self.width}x{self.height}@{self.rate_hz:g} "
                f"(serial {self.serial or 'any'}): {error}") from error

    def read(self, stop=None) -> np.ndarray | None:
        if self._pipeline is None:
            try:
                self._start()
            except CameraSourceError:
                if stop is not None:
                    stop.wait(self.timeout)
                return None
        try:
            frames = self._pipeline.wait_for_frames(int(self.timeout * 1000))
        except RuntimeError:  # pyrealsense2 raises RuntimeError when no frame arrives in time
            self._failures += 1
            if self._failures >= self.reconnect_after:
                self._reconnect()
            return None
        self._failures = 0
        color = frames.get_color_frame()
        if not color:
            raise BadFrame("realsense: frameset without a colour frame")
        image = np.asanyarray(color.get_data())
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise BadFrame(f"realsense: colour frame has shape {image.shape} dtype {image.dtype}, expected rgb8")
        return np.array(image)  # copy: the SDK reuses the buffer

    def _reconnect(self) -> None:
        self._failures = 0
        self._reconnects += 1
        try:
            self._pipeline.stop()
        except RuntimeError:
            pass
        self._pipeline = None

    def close(self) -> None:
        if self._pipeline is not None:
            try:
                self._pipeline.stop()
            except RuntimeError:
                pass
            self._pipeline = None


class SyntheticSource(CameraSource):
    """Renders the 2-D synthetic tabletop of mqe-make-dataset (mqe.synthetic_scene) at the arm's
    commanded pose, which `state()` returns as (ee_xyz, gripper) - the camera node feeds it from the
    arm's topics. Its objects never move: it serves policies trained on that synthetic data; the
    physical simulated tabletop is widowx_bridge.tabletop."""

    name = "synthetic"

    def __init__(self, state: Callable[[], tuple[np.ndarray, float]], rate_hz: float = 30.0,
                 image_size: int = 256, scene_seed: int = 0):
        self.state = state
        self.rate_hz = rate_hz
        self.image_size = image_size
        self.scene_seed = scene_seed
        self._pacer = Pacer(rate_hz)
        self._render = None

    def open(self) -> None:
        from mqe.synthetic_scene import render_tabletop

        self._render = render_tabletop

    def read(self, stop=None) -> np.ndarray | None:
        self._pacer.wait(stop)
        ee_xyz, gripper = self.state()
        return self._render(ee_xyz, gripper, self.image_size, self.scene_seed)


def make_source(name: str, *, rate_hz: float, replay_path: str = "", usb_device: str = "0", width: int = 640,
                height: int = 480, realsense_serial: str = "", frame_timeout: float = 1.0, reconnect_after: int = 3,
                synthetic_state: Callable[[], tuple[np.ndarray, float]] | None = None, synthetic_image_size: int = 256,
                synthetic_scene_seed: int = 0) -> CameraSource:
    if name == "replay":
        return ReplaySource(replay_path, rate_hz)
    if name == "usb":
        return UsbSource(usb_device, rate_hz, width, height)
    if name == "realsense":
        return RealSenseSource(rate_hz, width, height, realsense_serial, frame_timeout, reconnect_after)
    if name == "synthetic":
        if synthetic_state is None:
            raise ValueError("synthetic camera: needs the arm state provider")
        return SyntheticSource(synthetic_state, rate_hz, synthetic_image_size, synthetic_scene_seed)
    raise ValueError(f"source: unknown camera source {name!r}, expected one of {SOURCES}")
