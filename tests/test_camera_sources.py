"""Camera sources: replay (folder, video), usb (OpenCV on a video file), realsense (pyrealsense2's
own software sensor, and a scripted stand-in of its pipeline API for the configuration it is
given), sim, and the pacing."""

import sys
import threading
import time
import types

import cv2
import numpy as np
import pytest

from widowx_bridge.camera_sources import (
    BadFrame, CameraSourceError, Pacer, RealSenseSource, ReplaySource, SyntheticSource, UsbSource, make_source,
)

COLOURS_RGB = [(250, 10, 10), (10, 250, 10), (10, 10, 250)]


def solid(rgb, height=48, width=64):
    image = np.zeros((height, width, 3), np.uint8)
    image[:] = rgb
    return image


def write_images(folder, colours=COLOURS_RGB):
    for i, rgb in enumerate(colours):
        cv2.imwrite(str(folder / f"frame_{i:03d}.png"), cv2.cvtColor(solid(rgb), cv2.COLOR_RGB2BGR))


def write_video(path, colours=COLOURS_RGB, repeat=2):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, (64, 48))
    assert writer.isOpened()
    for rgb in colours:
        for _ in range(repeat):
            writer.write(cv2.cvtColor(solid(rgb), cv2.COLOR_RGB2BGR))
    writer.release()


def dominant_channel(image):
    return int(np.argmax(image.reshape(-1, 3).mean(axis=0)))


def test_replay_folder_plays_in_name_order_as_rgb_and_loops(tmp_path):
    write_images(tmp_path)
    (tmp_path / "notes.txt").write_text("not an image")
    source = ReplaySource(str(tmp_path), rate_hz=200.0)
    source.open()
    frames = [source.read() for _ in range(7)]
    assert [dominant_channel(f) for f in frames] == [0, 1, 2, 0, 1, 2, 0]  # R, G, B: RGB order, looping
    assert all(f.shape == (48, 64, 3) and f.dtype == np.uint8 for f in frames)  # native size, no resize
    assert frames[3] is frames[0] and not frames[0].flags.writeable  # decoded once, shared read-only
    source.close()


def test_replay_folder_with_a_corrupt_image_raises_bad_frame_and_continues(tmp_path):
    write_images(tmp_path, COLOURS_RGB[:2])
    (tmp_path / "frame_001b.jpg").write_bytes(b"\xff\xd8 definitely not a jpeg")
    source = ReplaySource(str(tmp_path), rate_hz=200.0)
    source.open()
    assert dominant_channel(source.read()) == 0
    assert dominant_channel(source.read()) == 1
    with pytest.raises(BadFrame, match="frame_001b.jpg"):
        source.read()
    assert dominant_channel(source.read()) == 0


def test_replay_video_file_plays_and_loops(tmp_path):
    path = tmp_path / "clip.avi"
    write_video(path)
    source = ReplaySource(str(path), rate_hz=200.0)
    source.open()
    channels = [dominant_channel(source.read()) for _ in range(8)]
    assert channels == [0, 0, 1, 1, 2, 2, 0, 0]
    source.close()


@pytest.mark.parametrize("make_path, message", [
    (lambda tmp: tmp / "missing", "does not exist"),
    (lambda tmp: tmp, "has no images"),
    (lambda tmp: (tmp / "bad.avi").write_bytes(b"nope") and tmp / "bad.avi", "neither a folder nor a video"),
])
def test_replay_bad_paths_are_clear_errors(tmp_path, make_path, message):
    with pytest.raises(CameraSourceError, match=message):
        ReplaySource(str(make_path(tmp_path)), rate_hz=30.0).open()


def test_usb_source_reads_a_video_path_and_reopens_at_the_end(tmp_path):
    path = tmp_path / "usb.avi"
    write_video(path, repeat=1)
    source = UsbSource(str(path), rate_hz=200.0)
    source.open()
    frames = [source.read() for _ in range(5)]
    # 3 frames, then the end of the file reads as a failed frame (None) and the capture reopens
    assert [None if f is None else dominant_channel(f) for f in frames] == [0, 1, 2, None, 0]
    assert source.reconnects == 1
    source.close()
    with pytest.raises(CameraSourceError, match="cannot open camera"):
        UsbSource(str(tmp_path / "no_such_device"), rate_hz=30.0).open()


class FakeRealSense:
    """pyrealsense2's pipeline API over a scripted camera: each wait_for_frames consumes one event,
    'frame' (an RGB image), 'timeout' (RuntimeError, as the SDK raises) or 'no_color'."""

    def __init__(self, events, shape=(48, 64, 3)):
        self.events = list(events)
        self.shape = shape
        self.starts, self.stops, self.timeouts_ms, self.streams = 0, 0, [], []
        fake = self
        module = types.ModuleType("pyrealsense2")
        module.stream = types.SimpleNamespace(color="color")
        module.format = types.SimpleNamespace(rgb8="rgb8")

        class Config:
            def __init__(self):
                self.device = None

            def enable_device(self, serial):
                self.device = serial

            def enable_stream(self, stream, width, height, fmt, fps):
                fake.streams.append((stream, width, height, fmt, fps, self.device))

        class Frame:
            def __init__(self, data):
                self.data = data

            def __bool__(self):
                return self.data is not None

            def get_data(self):
                return self.data

        class FrameSet:
            def __init__(self, data):
                self.data = data

            def get_color_frame(self):
                return Frame(self.data)

        class Pipeline:
            def start(self, config):
                fake.starts += 1

            def stop(self):
                fake.stops += 1

            def wait_for_frames(self, timeout_ms=5000):
                fake.timeouts_ms.append(timeout_ms)
                event = fake.events.pop(0) if fake.events else "timeout"
                if event == "timeout":
                    raise RuntimeError(f"Frame didn't arrive within {timeout_ms}")
                if event == "no_color":
                    return FrameSet(None)
                image = np.zeros(fake.shape, np.uint8)
                image[..., 0] = 200
                return FrameSet(image)

        module.config, module.pipeline = Config, Pipeline
        self.module = module


def test_realsense_streams_rgb_waits_with_timeout_and_reconnects(monkeypatch):
    camera = FakeRealSense(["frame", "timeout", "timeout", "timeout", "frame", "no_color", "frame"])
    monkeypatch.setitem(sys.modules, "pyrealsense2", camera.module)
    source = RealSenseSource(rate_hz=30.0, width=64, height=48, serial="123", timeout=0.25, reconnect_after=3)
    source.open()
    assert camera.streams == [("color", 64, 48, "rgb8", 30, "123")]
    first = source.read()
    assert first.shape == (48, 64, 3) and dominant_channel(first) == 0
    assert [source.read() for _ in range(3)] == [None, None, None]  # three timeouts in a row...
    assert camera.stops == 1 and source.reconnects == 1  # ...restart the pipeline
    assert source.read() is not None and camera.starts == 2
    with pytest.raises(BadFrame, match="without a colour frame"):
        source.read()
    assert source.read() is not None
    assert set(camera.timeouts_ms) == {250}
    source.close()


class SoftwareColourCamera:
    """A colour camera made of pyrealsense2's own software_sensor (librealsense's software-device
    API, the SDK's frame objects, real timeouts), started into an rs.syncer(): the route that works in
    2.56/2.59, where software_device.add_to(ctx) for the pipeline is broken (librealsense issue 13819).
    `start` is a RealSenseSource stream factory; a feeder thread pushes frames while `feeding` is set;
    frame n is RGB (n % 200, 100, 200)."""

    def __init__(self, width=64, height=48, fps=30, fmt="rgb8"):
        import pyrealsense2 as rs

        self.rs, self.width, self.height, self.fps = rs, width, height, fps
        self.channels = 3 if fmt == "rgb8" else 1
        self.device = rs.software_device()
        self.sensor = self.device.add_sensor("Color")
        stream = rs.video_stream()
        stream.type, stream.index, stream.uid = rs.stream.color, 0, 0
        stream.width, stream.height, stream.fps, stream.bpp = width, height, fps, self.channels
        stream.fmt = getattr(rs.format, fmt)
        intrinsics = rs.intrinsics()
        intrinsics.width, intrinsics.height, intrinsics.fx, intrinsics.fy = width, height, 50.0, 50.0
        intrinsics.ppx, intrinsics.ppy = width / 2, height / 2
        stream.intrinsics = intrinsics
        self.profile = self.sensor.add_video_stream(stream)
        self.starts = self.stops = self.sent = 0
        self.feeding, self.closed = threading.Event(), threading.Event()
        self.feeder = threading.Thread(target=self._feed, daemon=True)
        self.feeder.start()

    def start(self):
        camera = self

        class SyncerStream:
            def __init__(self):
                self.syncer = camera.rs.syncer()
                camera.sensor.open(camera.profile)
                camera.sensor.start(self.syncer)
                camera.starts += 1

            def wait_for_frames(self, timeout_ms):
                return self.syncer.wait_for_frames(timeout_ms)

            def stop(self):
                camera.sensor.stop()
                camera.sensor.close()
                camera.stops += 1

        return SyncerStream()

    def _feed(self):
        while not self.closed.is_set():
            if self.feeding.is_set() and self.starts > self.stops:
                self.sent += 1
                pixels = np.empty((self.height, self.width, self.channels), np.uint8)
                pixels[...] = (self.sent % 200, 100, 200)[:self.channels]
                frame = self.rs.software_video_frame()
                frame.pixels, frame.bpp, frame.stride = pixels, self.channels, self.width * self.channels
                frame.timestamp, frame.frame_number = time.time() * 1000, self.sent
                frame.domain = self.rs.timestamp_domain.system_time
                frame.profile = self.profile.as_video_stream_profile()
                try:
                    self.sensor.on_video_frame(frame)
                except RuntimeError:  # the source stopped the sensor between the check and the push
                    pass
            time.sleep(1.0 / self.fps)

    def close(self):
        self.closed.set()
        self.feeder.join(5.0)


@pytest.fixture
def software_camera():
    camera = SoftwareColourCamera()
    yield camera
    camera.close()


def test_realsense_on_pyrealsense2s_software_sensor_streams_rgb_times_out_and_reconnects(software_camera):
    camera = software_camera
    source = RealSenseSource(rate_hz=30.0, width=64, height=48, timeout=0.2, reconnect_after=2,
                             stream_factory=camera.start)
    source.open()
    camera.feeding.set()
    frames = [source.read() for _ in range(5)]
    assert all(f is not None and f.shape == (48, 64, 3) and f.dtype == np.uint8 for f in frames)
    assert all(tuple(f[0, 0, 1:]) == (100, 200) for f in frames)  # RGB order as the sensor sent it
    numbers = [int(f[0, 0, 0]) for f in frames]
    assert numbers == sorted(numbers) and len(set(numbers)) == 5  # newer frames, each once
    frames[0][...] = 0  # a copy: the SDK's buffer is not handed out
    camera.feeding.clear()
    time.sleep(0.1)
    while source.read() is not None:  # drain what was queued before the camera went quiet
        pass
    assert source.read() is None  # the second timeout in a row (real "Frame did not arrive in time")
    assert source.reconnects == 1 and camera.stops == 1
    camera.feeding.set()
    assert any(source.read() is not None for _ in range(3))  # the stream restarts (read 1), frames return
    assert camera.starts == 2
    source.close()
    assert camera.stops == 2


def test_realsense_frame_that_is_not_rgb8_is_a_bad_frame():
    camera = SoftwareColourCamera(fmt="y8")
    try:
        source = RealSenseSource(rate_hz=30.0, width=64, height=48, timeout=0.5, stream_factory=camera.start)
        source.open()
        camera.feeding.set()
        with pytest.raises(BadFrame, match="expected rgb8"):
            source.read()
        source.close()
    finally:
        camera.close()


def test_realsense_without_the_sdk_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "pyrealsense2", None)
    with pytest.raises(CameraSourceError, match="pyrealsense2 is not installed"):
        RealSenseSource().open()


def test_sim_source_renders_the_arm_state():
    state = {"xyz": np.array([0.3, 0.0, 0.15]), "gripper": 1.0}
    source = SyntheticSource(lambda: (state["xyz"], state["gripper"]), rate_hz=200.0, image_size=96)
    source.open()
    first = source.read()
    assert first.shape == (96, 96, 3) and first.dtype == np.uint8
    state["xyz"] = np.array([0.4, 0.1, 0.0])
    moved = source.read()
    assert np.abs(moved.astype(int) - first.astype(int)).sum() > 0
    state["xyz"] = np.array([0.3, 0.0, 0.15])
    np.testing.assert_array_equal(source.read(), first)  # deterministic rendering


def test_pacer_holds_the_rate_without_catch_up_bursts():
    pacer = Pacer(50.0)
    started = time.monotonic()
    for _ in range(10):
        pacer.wait()
    assert 0.16 <= time.monotonic() - started <= 0.35  # 9 periods of 20 ms after the first tick
    time.sleep(0.1)  # a stall of 5 periods...
    before = time.monotonic()
    pacer.wait()
    pacer.wait()
    assert time.monotonic() - before >= 0.015  # ...does not produce a burst of immediate ticks
    stop = threading.Event()
    stop.set()
    slow = Pacer(0.5)
    slow.wait(stop)
    before = time.monotonic()
    slow.wait(stop)  # a set stop event interrupts the wait at once
    assert time.monotonic() - before < 0.1


def test_make_source_rejects_unknown_names():
    with pytest.raises(ValueError, match="unknown camera source 'kinect'"):
        make_source("kinect", rate_hz=30.0)
