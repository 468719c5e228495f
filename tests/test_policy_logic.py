"""The policy node's logic without ROS: PolicyLoop on a real exported policy and onnxruntime."""

from __future__ import annotations

import math
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from sensor_msgs.msg import Image

from mqe.runtime import GoalImageError, OnnxPolicy
from mqe_policy.control import FEEDBACK_NICE, ControlClock, Frame, LoopConfig, PolicyLoop, next_deadline
from mqe_policy.policy_node import resolve_goal
from widowx_bridge.topics import image_from_msg
from test_policy_artifacts import exported_policy, random_image


class Clock:
    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


class Harness:
    """A PolicyLoop with a settable clock that records what it publishes."""

    def __init__(self, kind: str = "mqe", **config):
        config.setdefault("fresh_frame_wait", 0.0)  # ticks act on the frame set before them
        self.rng = np.random.default_rng(0)
        self.policy = OnnxPolicy(exported_policy(kind), threads=1)
        if kind == "mqe":
            self.policy.set_goal(random_image(self.rng))
        self.clock = Clock()
        self.published: list[tuple[np.ndarray, float]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.logs: list[str] = []
        self.publish_delay = 0.0
        self.loop = PolicyLoop(self.policy, LoopConfig(**config), self._publish, clock=self.clock, log=self.logs.append)

    def _publish(self, action, stamp):
        self.gate.wait(10.0)
        time.sleep(self.publish_delay)
        self.published.append((action, stamp))

    def frame(self, age: float = 0.05, image: np.ndarray | None = None) -> Frame:
        image = random_image(self.rng) if image is None else image
        frame = Frame(stamp=self.clock.now - age, decode=lambda: image)
        self.loop.on_frame(frame)
        return frame

    def step(self, seconds: float = 0.2) -> str:
        self.clock.now += seconds
        result = self.loop.tick()
        assert self.loop.wait_idle()
        return result


@pytest.fixture
def harness():
    h = Harness()
    yield h
    h.loop.close()


def test_each_tick_acts_on_the_newest_fresh_frame(harness):
    assert harness.step() == "blocked: no camera frame yet"
    assert harness.loop.feedback().state == "waiting-for-frames"
    for _ in range(3):
        harness.frame()  # older frames are replaced, never queued
    newest = harness.frame()
    harness.clock.now -= 0.2  # the frame is 0.05 s old at the tick
    assert harness.step() == "dispatched"
    (action, stamp), = harness.published
    assert stamp == newest.stamp and action.shape == (7,) and np.all(np.isfinite(action))
    feedback = harness.loop.feedback()
    assert feedback.state == "running" and feedback.reason == ""
    assert math.isfinite(feedback.steps_to_goal) and feedback.latency_ms > 0
    assert feedback.frame_age_s == pytest.approx(0.05) and feedback.actions_published == 1


def test_repeated_and_stale_frames_hold_actions_until_fresh_frames_return(harness):
    image = random_image(harness.rng)
    harness.frame(image=image)
    harness.clock.now -= 0.2
    assert harness.step() == "dispatched"
    # No new frame since the last tick: the same stamp again.
    assert harness.step(0.0).startswith("blocked: repeated frame (no new camera frame")
    # A new stamp on exactly the same pixels (a frozen driver).
    harness.frame(age=0.0, image=image.copy())
    assert harness.step(0.01).startswith("blocked: repeated frame (same pixels")
    assert harness.loop.feedback().state == "waiting-for-frames"
    # A frame older than max_frame_age.
    harness.frame(age=0.7)
    result = harness.step(0.0)
    assert result.startswith("blocked: camera frame too old (0.70 s > max_frame_age 0.50 s)")
    assert "camera frame too old" in harness.loop.feedback().reason
    assert len(harness.published) == 1
    harness.frame(age=0.0)
    assert harness.step(0.01) == "dispatched" and len(harness.published) == 2
    assert harness.loop.feedback().ticks_blocked == 3
    assert any("actions held: camera frame too old" in line for line in harness.logs)
    assert any("actions resume" in line for line in harness.logs)


def test_identical_pixels_are_accepted_when_configured():
    h = Harness(reject_identical_frames=False)
    try:
        image = random_image(h.rng)
        h.frame(age=0.0, image=image)
        assert h.step(0.01) == "dispatched"
        h.frame(age=0.0, image=image)
        assert h.step(0.01) == "dispatched"
    finally:
        h.loop.close()


def test_pause_keeps_feedback_stop_halts_inference_start_resumes(harness):
    harness.loop.pause()
    harness.frame(age=0.0)
    assert harness.step(0.01) == "dispatched"  # inference runs for the operator's feedback ...
    assert harness.published == []  # ... but no action goes out
    feedback = harness.loop.feedback()
    assert feedback.state == "paused" and math.isfinite(feedback.steps_to_goal) and feedback.rate_hz == 0.0

    harness.loop.stop()
    harness.frame(age=0.0)
    latency_before = harness.loop.feedback().latency_ms
    assert harness.step(0.01) == "stopped"
    assert harness.published == [] and harness.loop.feedback().state == "stopped"
    assert harness.loop.feedback().latency_ms == latency_before  # nothing ran

    assert harness.loop.start() == "stopped -> running"
    harness.frame(age=0.0)
    assert harness.step(0.01) == "dispatched" and len(harness.published) == 1


def test_busy_worker_skips_the_tick_instead_of_queueing(harness):
    harness.gate.clear()  # the first action's publish blocks, so the worker stays busy
    harness.frame(age=0.0)
    harness.clock.now += 0.01
    assert harness.loop.tick() == "dispatched"
    for _ in range(3):
        harness.frame(age=0.0)
        harness.clock.now += 0.2
        assert harness.loop.tick() == "busy"
    harness.gate.set()
    assert harness.loop.wait_idle()
    assert len(harness.published) == 1  # the skipped ticks left nothing queued
    assert harness.loop.feedback().ticks_skipped_busy == 3
    newest = harness.frame(age=0.0)
    assert harness.step(0.01) == "dispatched" and harness.published[-1][1] == newest.stamp


def test_steps_to_goal_runs_every_nth_inference_and_right_after_a_goal_change(harness):
    calls = []
    steps_to_goal = harness.policy.steps_to_goal
    harness.policy.steps_to_goal = lambda rgb: calls.append(rgb) or steps_to_goal(rgb)
    assert harness.loop.config.steps_to_goal_every == 5
    for _ in range(11):
        harness.frame(age=0.0)
        harness.step(0.2)
    assert len(harness.published) == 11  # every tick acted
    assert len(calls) == 3  # after inferences 1, 6 and 11: 1 Hz feedback at 5 Hz
    assert math.isfinite(harness.loop.feedback().steps_to_goal)
    harness.loop.set_goal(random_image(harness.rng))
    assert harness.loop.wait_idle()
    assert math.isnan(harness.loop.feedback().steps_to_goal)  # the old goal's estimate is gone
    harness.frame(age=0.0)
    harness.step(0.2)
    assert len(calls) == 4 and math.isfinite(harness.loop.feedback().steps_to_goal)


def test_achieved_rate_is_reported(harness):
    for _ in range(8):
        harness.frame(age=0.0)
        harness.step(0.2)
    assert harness.loop.feedback().rate_hz == pytest.approx(5.0, rel=1e-6)
    assert harness.loop.feedback().tick_period_ms == pytest.approx(200.0)
    harness.clock.now += 1.0  # nothing published for 5 periods: the rate drops to 0
    assert harness.loop.feedback().rate_hz == 0.0


def test_goal_change_is_encoded_once_and_changes_the_action():
    h = Harness(reject_identical_frames=False)  # the same observation before and after the change
    try:
        image = random_image(h.rng)
        h.frame(age=0.0, image=image)
        assert h.step(0.01) == "dispatched"
        h.loop.set_goal(np.zeros((40, 40, 3), np.uint8))
        assert h.loop.wait_idle()
        assert h.loop.feedback().goal_version == 1 and any("new goal encoded" in line for line in h.logs)
        h.frame(age=0.0, image=image)
        assert h.step(0.01) == "dispatched"
        assert not np.allclose(h.published[0][0], h.published[1][0])
    finally:
        h.loop.close()


def test_non_finite_outputs_are_never_published():
    h = Harness("nan")
    try:
        h.loop.set_goal(np.zeros((32, 32, 3), np.uint8))  # NaN goal features: rejected, counted
        assert h.loop.wait_idle()
        h.frame(age=0.0)
        h.step(0.01)  # no goal encoded: act() refuses
        assert h.published == [] and h.loop.feedback().errors == 2
        assert any("goal rejected" in line for line in h.logs)
        assert any("inference failed" in line for line in h.logs)
    finally:
        h.loop.close()


def test_tick_waits_for_a_frame_newer_than_itself_then_falls_back_to_the_newest():
    h = Harness(fresh_frame_wait=0.5, rate_hz=1.0)
    try:
        h.frame(age=0.02)
        h.clock.now += 0.2
        fresh = Frame(stamp=h.clock.now, decode=lambda: random_image(h.rng))
        threading.Timer(0.05, h.loop.on_frame, args=(fresh,)).start()  # arrives while the tick waits
        assert h.loop.tick() == "dispatched" and h.loop.wait_idle()
        assert h.published[-1][1] == fresh.stamp  # the fresh frame, not the one older than the tick
        newest = h.frame(age=0.01)
        started = time.monotonic()
        assert h.step(0.2) == "dispatched"  # no frame arrives: after the wait, the newest one
        assert time.monotonic() - started >= 0.5 and h.published[-1][1] == newest.stamp
    finally:
        h.loop.close()
    with pytest.raises(ValueError, match="fresh_frame_wait"):
        LoopConfig(fresh_frame_wait=0.2, rate_hz=5.0)  # as long as the period: no time left to act


def test_fresh_frame_wait_gives_way_when_inference_fills_the_period():
    h = Harness(fresh_frame_wait=0.5, rate_hz=1.0)
    try:
        act = h.policy.act
        h.policy.act = lambda rgb: time.sleep(0.7) or act(rgb)  # inference takes 70 % of the 1 s period
        h.frame(age=0.01)
        assert h.step(0.0) == "dispatched"  # no inference time known yet: the full wait
        h.clock.now += 0.1
        h.frame(age=0.01)
        started = time.monotonic()
        assert h.loop.tick() == "dispatched"
        waited = time.monotonic() - started
        assert waited < 0.35, f"waited {waited:.2f} s: at most 1 - 1.25 * 0.7 = 0.125 s was left"
        assert h.loop.wait_idle()
    finally:
        h.loop.close()


def test_a_slow_steps_to_goal_evaluation_never_costs_an_action():
    h = Harness(rate_hz=5.0, steps_to_goal_every=1)
    try:
        release = threading.Event()
        calls = []
        steps_to_goal = h.policy.steps_to_goal
        h.policy.steps_to_goal = lambda rgb: (calls.append(rgb), release.wait(10.0), steps_to_goal(rgb))[-1]
        for _ in range(4):  # the critic hangs for all four periods
            h.frame(age=0.0)
            h.clock.now += 0.2
            assert h.loop.tick() == "dispatched"
            deadline = time.monotonic() + 5.0
            while len(h.published) < h.loop.feedback().ticks and time.monotonic() < deadline:
                time.sleep(0.005)
        assert len(h.published) == 4 and h.loop.feedback().ticks_skipped_busy == 0
        assert len(calls) == 1  # one evaluation at a time, never queued
        feedback_thread = next(t for t in threading.enumerate() if t.name == "policy-feedback" and t.is_alive())
        nice = os.getpriority(os.PRIO_PROCESS, feedback_thread.native_id) - os.getpriority(os.PRIO_PROCESS, 0)
        assert nice == FEEDBACK_NICE  # it runs on what CPU the actions leave over
        h.loop.set_goal(random_image(h.rng))  # the goal changes while the old goal's evaluation runs
        release.set()
        assert h.loop.wait_idle()
        assert math.isnan(h.loop.feedback().steps_to_goal)  # the stale estimate was dropped
        h.frame(age=0.0)
        h.step(0.2)
        assert len(calls) == 2 and math.isfinite(h.loop.feedback().steps_to_goal)
    finally:
        release.set()
        h.loop.close()


def test_control_clock_keeps_its_deadlines_and_skips_the_ones_a_late_tick_missed():
    assert next_deadline(1.0, 1.05, 0.2) == (1.2, 0)  # on time: the next period, no drift from the tick's run time
    assert next_deadline(1.0, 1.2, 0.2) == pytest.approx((1.4, 1))  # woke exactly at the next deadline: skipped
    deadline, skipped = next_deadline(1.0, 1.65, 0.2)  # a 0.65 s stall: three deadlines passed
    assert skipped == 3 and deadline == pytest.approx(1.8)
    ticks = []
    clock = ControlClock(0.01, lambda: ticks.append(time.monotonic())).start()
    while len(ticks) < 5:
        time.sleep(0.01)
    clock.stop()
    count = len(ticks)
    time.sleep(0.05)
    assert len(ticks) == count  # stopped means no more ticks
    assert all(later > earlier for earlier, later in zip(ticks, ticks[1:]))
    with pytest.raises(ValueError, match="period"):
        ControlClock(0.0, lambda: None)


def test_config_values_are_checked():
    with pytest.raises(ValueError, match="rate_hz"):
        LoopConfig(rate_hz=0.0)
    with pytest.raises(ValueError, match="max_frame_age"):
        LoopConfig(max_frame_age=-1.0)
    with pytest.raises(ValueError, match="steps_to_goal_every"):
        LoopConfig(steps_to_goal_every=0)


def test_goal_names_resolve_in_the_goal_directory(tmp_path):
    assert resolve_goal("drawer.png", tmp_path) == tmp_path / "drawer.png"
    assert resolve_goal("/data/goal.png", tmp_path) == Path("/data/goal.png")
    assert resolve_goal("captures/goal.png", tmp_path) == Path("captures/goal.png")
    with pytest.raises(GoalImageError, match="no goal image given"):
        resolve_goal("", tmp_path)


def _message(image: np.ndarray, encoding: str, padding: int = 0) -> Image:
    height, width = image.shape[:2]
    rows = np.zeros((height, width * 3 + padding), np.uint8)
    rows[:, : width * 3] = image.reshape(height, -1)
    msg = Image(height=height, width=width, encoding=encoding, step=width * 3 + padding)
    msg.data = rows.tobytes()
    return msg


def test_image_messages_decode_to_rgb():
    rgb = random_image(np.random.default_rng(3), 5, 7)
    np.testing.assert_array_equal(image_from_msg(_message(rgb, "rgb8")), rgb)
    np.testing.assert_array_equal(image_from_msg(_message(rgb, "rgb8", padding=3)), rgb)
    np.testing.assert_array_equal(image_from_msg(_message(rgb[..., ::-1].copy(), "bgr8")), rgb)
    with pytest.raises(ValueError, match="mono8"):
        image_from_msg(_message(rgb, "mono8"))
    truncated = _message(rgb, "rgb8")
    truncated.height = 9
    with pytest.raises(ValueError, match="bytes"):
        image_from_msg(truncated)


def test_frames_stamped_in_the_future_are_refused_beyond_a_small_tolerance(harness):
    from mqe_policy.control import MAX_FUTURE_STAMP_S

    harness.frame(age=-10.2)  # the camera's clock 10 s ahead of this PC (at the tick)
    result = harness.step()
    assert result.startswith("blocked: camera frame stamped 10.00 s in the future"), result
    assert harness.loop.feedback().state == "waiting-for-frames"
    assert "in the future" in harness.loop.feedback().reason and harness.published == []
    harness.frame(age=-0.2 - MAX_FUTURE_STAMP_S / 2)  # within the tolerance: a synced clock's jitter
    assert harness.step() == "dispatched" and len(harness.published) == 1


def test_holding_on_stale_frames_logs_the_transition_once_not_every_tick(harness):
    for _ in range(10):
        harness.frame(age=0.7)  # every tick: a new frame, each too old by a different amount
        harness.step(0.2)
    held = [line for line in harness.logs if line.startswith("actions held")]
    assert held == ["actions held: camera frame too old (0.90 s > max_frame_age 0.50 s)"], harness.logs
    assert harness.loop.feedback().ticks_blocked == 10
    harness.frame(age=0.0)
    assert harness.step(0.01) == "dispatched"
    assert sum("actions resume" in line for line in harness.logs) == 1


def test_a_parked_arm_is_shown_and_holds_the_actions_until_it_accepts_them_again(harness):
    harness.frame(age=0.0)
    assert harness.step(0.01) == "dispatched"
    harness.loop.set_arm_parked("arm parked: parked: call reset to accept actions")
    harness.frame(age=0.0)
    assert harness.step(0.01).startswith("blocked: arm parked")
    feedback = harness.loop.feedback()
    assert (feedback.state, feedback.reason) == ("arm-parked", "arm parked: parked: call reset to accept actions")
    assert len(harness.published) == 1
    harness.loop.set_arm_parked("")
    harness.frame(age=0.0)
    assert harness.step(0.01) == "dispatched" and harness.loop.feedback().state == "running"


def test_an_inference_that_fails_every_tick_says_why_and_logs_once(tmp_path):
    from test_policy_artifacts import copy_export
    from test_runtime import truncate_action

    export = copy_export("mqe", tmp_path / "export")
    truncate_action(export / "policy.onnx", keep=6)  # metadata says 7-D: every act() fails
    policy = OnnxPolicy(export, threads=1)
    rng = np.random.default_rng(0)
    policy.set_goal(random_image(rng))
    clock, logs, published = Clock(), [], []
    loop = PolicyLoop(policy, LoopConfig(fresh_frame_wait=0.0), lambda a, s: published.append(a), clock=clock, log=logs.append)
    try:
        for _ in range(5):
            clock.now += 0.2
            image = random_image(rng)
            loop.on_frame(Frame(stamp=clock.now, decode=lambda image=image: image))
            assert loop.tick() == "dispatched"
            assert loop.wait_idle()
        feedback = loop.feedback()
        assert feedback.state == "inference-failing" and feedback.errors == 5 and published == []
        assert feedback.reason == "inference failed (ActionShapeError: policy produced an action of shape (6,), expected (7,))"
        assert [line for line in logs if "inference failed" in line] == [f"actions held: {feedback.reason}"]
    finally:
        loop.close()
