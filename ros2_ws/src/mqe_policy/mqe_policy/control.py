"""The policy node's logic, without ROS: run state, frame watchdogs, the inference worker and the
operator's live feedback. The ROS node (policy_node.py) only converts messages and calls this.

Timing model: tick() is called by ControlClock, a thread of its own that wakes at absolute
deadlines (not an executor timer: on 2 cores rclpy's executors delayed timer callbacks by up to
1.5 s under a camera flood), and it never waits for inference. It waits up to `fresh_frame_wait`
for a frame newer than the tick (the frame that arrives then is at most a transport delay old,
where the newest frame at the tick is up to one camera period old: at 30 Hz that cuts up to 33 ms
off every action's latency, and the deadlines do not move), then takes the newest camera frame,
checks the watchdogs and hands the frame to one worker thread. The wait is cut to what the period
leaves after the last action inference, so it never makes the next tick find the worker busy. If the
worker is still busy from the previous tick, the tick is skipped (never queued), so the clock never
slips and the policy never acts on a stale backlog. The worker publishes the action as soon as it is
computed, stamped with the stamp of the frame it came from.

Steps-to-goal (operator feedback from the critic, whose graph costs about as much as the policy's)
is evaluated on every `steps_to_goal_every`-th inference's frame (default 5: 1 Hz at 5 Hz) and on the
first one after a goal change, by a feedback thread of its own at a lower OS priority (nice +10),
never queued: an evaluation that finds it busy waits for the next inference. Running it on the action
worker after the action made every 5th tick's work action + critic, which on a slower 2-core machine
(ResNet34 at 256 px, ~95 ms each) outlasted the period and skipped the next tick (4.1-4.4 Hz instead
of 5); running it every tick doubled the policy's CPU.
"""

from __future__ import annotations

import collections
import dataclasses
import enum
import hashlib
import os
import threading
import time
from typing import Callable, Protocol

import numpy as np

from mqe.runtime import NonFiniteOutputError

FEEDBACK_NICE = 10  # the feedback thread's niceness increment: it takes CPU the actions leave over


class Mode(str, enum.Enum):
    """What the operator asked for (services start / pause / stop)."""

    RUNNING = "running"  # infer and publish actions
    PAUSED = "paused"  # keep inferring for live feedback, publish no actions (the arm holds)
    STOPPED = "stopped"  # no inference, no actions (the arm holds)


WAITING_FOR_FRAMES = "waiting-for-frames"  # reported instead of "running" while a frame watchdog blocks
INFERENCE_FAILING = "inference-failing"  # reported instead of "running" while every inference fails
ARM_PARKED = "arm-parked"  # reported instead of "running" while the arm ignores actions (torque off, home, sleep)

# A frame stamped further ahead of this machine's clock than this is refused: a camera clock ahead of
# the PC would otherwise make every frame look fresh and disable max_frame_age. Frames stamped on this
# PC (the camera node does) are never ahead; 0.1 s allows for a hardware clock synced to it.
MAX_FUTURE_STAMP_S = 0.1


class ControlClock:
    """Calls `tick()` every `period` seconds on its own thread, at absolute deadlines start + k * period.

    Deadlines never drift with the tick's own run time. A tick that overruns (or a thread that was
    not scheduled in time) makes the clock skip the deadlines already past instead of firing them
    back to back: a late control step is dropped, never doubled. `missed` counts skipped deadlines.
    """

    def __init__(self, period: float, tick: Callable[[], object], name: str = "control-clock",
                 monotonic: Callable[[], float] = time.monotonic):
        if not period > 0:
            raise ValueError(f"control clock period must be > 0 s, got {period}")
        self.period = period
        self.missed = 0
        self._tick = tick
        self._monotonic = monotonic
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> "ControlClock":
        self._thread.start()
        return self

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _run(self) -> None:
        deadline = self._monotonic() + self.period
        while not self._stop.wait(max(deadline - self._monotonic(), 0.0)):
            self._tick()
            deadline, skipped = next_deadline(deadline, self._monotonic(), self.period)
            self.missed += skipped


def next_deadline(deadline: float, now: float, period: float) -> tuple[float, int]:
    """The first deadline start + k * period after `now`, and how many were skipped to reach it."""
    deadline += period
    if now < deadline:
        return deadline, 0
    skipped = int((now - deadline) // period) + 1
    return deadline + skipped * period, skipped


class Policy(Protocol):
    """What the loop needs from mqe.runtime.OnnxPolicy."""

    def set_goal(self, rgb: np.ndarray) -> None: ...
    def act(self, rgb: np.ndarray) -> np.ndarray: ...
    def steps_to_goal(self, rgb: np.ndarray) -> float | None: ...


@dataclasses.dataclass
class Frame:
    """A camera frame as received; decoded lazily so frames that no tick uses cost nothing."""

    stamp: float  # seconds, the camera's header stamp
    decode: Callable[[], np.ndarray]  # -> HxWx3 uint8 RGB


@dataclasses.dataclass(frozen=True)
class LoopConfig:
    rate_hz: float = 5.0  # control rate: one action per tick
    max_frame_age: float = 0.5  # seconds; older frames stop the actions
    reject_identical_frames: bool = True  # a frame with the same pixels as the last one counts as repeated
    steps_to_goal_every: int = 5  # inferences between steps-to-goal evaluations (operator feedback)
    fresh_frame_wait: float = 0.05  # s a tick waits for a frame newer than itself (just over the camera
    # period: 30 Hz -> 0.05); 0 acts on the newest frame at the tick

    def __post_init__(self):
        if not self.rate_hz > 0:
            raise ValueError(f"rate_hz must be > 0, got {self.rate_hz}")
        if not self.max_frame_age > 0:
            raise ValueError(f"max_frame_age must be > 0, got {self.max_frame_age}")
        if not 0.0 <= self.fresh_frame_wait < 1.0 / self.rate_hz:
            raise ValueError(f"fresh_frame_wait must be >= 0 s and shorter than the control period, got {self.fresh_frame_wait}")
        if not (isinstance(self.steps_to_goal_every, int) and self.steps_to_goal_every >= 1):
            raise ValueError(f"steps_to_goal_every must be an integer >= 1, got {self.steps_to_goal_every!r}")


@dataclasses.dataclass
class Feedback:
    """The operator's live view, published every tick."""

    state: str  # running | paused | stopped | waiting-for-frames | inference-failing | arm-parked
    reason: str  # why actions are not published right now ("" when running)
    steps_to_goal: float  # NaN when unknown or the export has no critic
    latency_ms: float  # inference time of the last frame (NaN before the first)
    frame_latency_ms: float  # last frame's stamp -> its action published (NaN before the first)
    frame_age_s: float  # age of the newest frame when the last tick took it, after its fresh-frame wait (NaN before the first)
    rate_hz: float  # achieved action rate over the last few actions (0 when not publishing)
    tick_period_ms: float  # time between the last two ticks: the control clock itself (NaN before two)
    actions_published: int
    ticks: int
    ticks_skipped_busy: int  # inference still running at the tick
    ticks_blocked: int  # a watchdog held the action back
    errors: int  # inference failures, non-finite outputs included
    goal_version: int  # increments at every goal change


def frame_digest(image: np.ndarray) -> bytes:
    return hashlib.blake2b(np.ascontiguousarray(image).data, digest_size=16).digest()


class PolicyLoop:
    def __init__(
        self,
        policy: Policy,
        config: LoopConfig,
        publish_action: Callable[[np.ndarray, float], None],
        clock: Callable[[], float] = time.time,
        log: Callable[[str], None] = lambda message: None,
        mode: Mode = Mode.RUNNING,
    ):
        self.policy = policy
        self.config = config
        self._publish_action = publish_action
        self._clock = clock
        self._log = log
        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)
        self._frame_arrived = threading.Condition(self._lock)
        self._feedback_work = threading.Condition(self._lock)
        self._frames_received = 0
        self._mode = mode
        self._newest: Frame | None = None
        self._pending_frame: tuple[Frame, np.ndarray] | None = None
        self._inferences_until_steps_to_goal = 0  # 0: steps-to-goal is computed after the next inference
        self._feedback_job: tuple[np.ndarray, int] | None = None  # (image, goal_version) for the feedback thread
        self._feedback_busy = False
        self._last_tick: float | None = None
        self._pending_goal: np.ndarray | None = None
        self._busy = False
        self._closed = False
        self._last_used_stamp: float | None = None
        self._last_used_digest: bytes | None = None
        self._blocked_reason = "no camera frame yet"
        self._reported_reason = ""
        self._failure_reason = ""  # why the last inference failed ("" after a success)
        self._arm_parked_reason = ""  # set by set_arm_parked while the arm ignores actions
        self._publish_times: collections.deque[float] = collections.deque(maxlen=11)
        self._fb = dict(
            steps_to_goal=float("nan"), latency_ms=float("nan"), frame_latency_ms=float("nan"),
            frame_age_s=float("nan"), tick_period_ms=float("nan"), actions_published=0, ticks=0, ticks_skipped_busy=0,
            ticks_blocked=0, errors=0, goal_version=0,
        )  # fmt: skip
        self._worker = threading.Thread(target=self._run_worker, name="policy-inference", daemon=True)
        self._worker.start()
        self._feedback_worker = threading.Thread(target=self._run_feedback_worker, name="policy-feedback", daemon=True)
        self._feedback_worker.start()

    # --- inputs ---------------------------------------------------------------------------------
    def on_frame(self, frame: Frame) -> None:
        """Keep only the newest frame: a slow tick never works through a backlog."""
        with self._lock:
            self._newest = frame
            self._frames_received += 1
            self._frame_arrived.notify_all()

    def set_goal(self, rgb: np.ndarray) -> None:
        """Schedule a goal change; it is encoded once, before the next frame is processed."""
        with self._work:
            self._pending_goal = rgb
            self._work.notify()

    def set_arm_parked(self, reason: str) -> None:
        """The arm reports it ignores actions (reason, e.g. after torque off) or accepts them again ("").
        The next tick holds the actions and logs the transition like a frame watchdog's."""
        with self._lock:
            self._arm_parked_reason = reason

    def start(self) -> str:
        return self._set_mode(Mode.RUNNING)

    def pause(self) -> str:
        return self._set_mode(Mode.PAUSED)

    def stop(self) -> str:
        return self._set_mode(Mode.STOPPED)

    def _set_mode(self, mode: Mode) -> str:
        with self._lock:
            previous, self._mode = self._mode, mode
            if mode is not Mode.RUNNING:
                self._publish_times.clear()
        self._log(f"{previous.value} -> {mode.value}")
        return f"{previous.value} -> {mode.value}"

    @property
    def mode(self) -> Mode:
        return self._mode

    # --- the clock ------------------------------------------------------------------------------
    def tick(self) -> str:
        """One control period. Returns what happened: dispatched | busy | blocked: <why> | stopped."""
        now = self._clock()
        with self._lock:
            self._fb["ticks"] += 1
            if self._last_tick is not None:
                self._fb["tick_period_ms"] = (now - self._last_tick) * 1e3
            self._last_tick = now
            wait = self._fresh_frame_wait()
            if self._mode is not Mode.STOPPED and not self._busy and wait > 0:
                received = self._frames_received  # the lock is released while waiting
                self._frame_arrived.wait_for(lambda: self._frames_received != received, wait)
                now = self._clock()
            frame = self._newest
            if frame is not None:
                self._fb["frame_age_s"] = now - frame.stamp
            if self._mode is Mode.STOPPED:
                return "stopped"
            if self._busy:
                self._fb["ticks_skipped_busy"] += 1
                return "busy"
            reason = self._arm_parked_reason or self._check_frame(frame, now)
            image = None
            if reason is None:
                try:
                    image = frame.decode()
                except ValueError as error:
                    reason = f"unusable camera frame ({error})"
            digest = frame_digest(image) if reason is None and self.config.reject_identical_frames else None
            if digest is not None and digest == self._last_used_digest:
                reason = "repeated frame (same pixels as the last one)"
            if reason is not None:
                self._blocked_reason = reason
                self._fb["ticks_blocked"] += 1
                self._report(reason)
                return f"blocked: {reason}"
            self._blocked_reason = ""
            self._report("")
            self._last_used_stamp = frame.stamp
            self._last_used_digest = digest
            self._pending_frame = (frame, image)
            self._busy = True
            self._work.notify()
            return "dispatched"

    def _fresh_frame_wait(self) -> float:
        """The wait never costs an action: it is cut to what the period leaves after the last
        inference time (with a 25 % margin), so a slow machine acts on the newest frame at once."""
        latency = self._fb["latency_ms"] / 1e3
        if latency != latency:  # NaN: no inference yet
            return self.config.fresh_frame_wait
        return max(0.0, min(self.config.fresh_frame_wait, 1.0 / self.config.rate_hz - 1.25 * latency))

    def _check_frame(self, frame: Frame | None, now: float) -> str | None:
        if frame is None:
            return "no camera frame yet"
        age = now - frame.stamp
        if age < -MAX_FUTURE_STAMP_S:
            return f"camera frame stamped {-age:.2f} s in the future (camera clock ahead of this PC by more than {MAX_FUTURE_STAMP_S} s)"
        if age > self.config.max_frame_age:
            return f"camera frame too old ({age:.2f} s > max_frame_age {self.config.max_frame_age:.2f} s)"
        if frame.stamp == self._last_used_stamp:
            return "repeated frame (no new camera frame since the last tick)"
        return None

    def _report(self, reason: str) -> None:
        # Log transitions only, not every blocked tick: reasons of one kind differ only in the
        # figures in parentheses (a stale frame's age grows every tick).
        kind = reason.split(" (")[0]
        if kind != self._reported_reason:
            self._log(f"actions held: {reason}" if reason else "fresh frames: actions resume")
            self._reported_reason = kind

    # --- the worker -----------------------------------------------------------------------------
    def _run_worker(self) -> None:
        while True:
            with self._work:
                while not self._closed and self._pending_goal is None and self._pending_frame is None:
                    self._work.wait()
                if self._closed:
                    return
                goal, self._pending_goal = self._pending_goal, None
                job = None if goal is not None else self._pending_frame
                if job is not None:
                    self._pending_frame = None
            if goal is not None:
                self._encode_goal(goal)
            else:
                self._infer(*job)

    def _encode_goal(self, rgb: np.ndarray) -> None:
        try:
            self.policy.set_goal(rgb)
        except (ValueError, RuntimeError) as error:
            with self._lock:
                self._fb["errors"] += 1
            self._log(f"goal rejected, keeping the previous goal: {error}")
            return
        with self._lock:
            self._fb["goal_version"] += 1
            self._fb["steps_to_goal"] = float("nan")
            self._inferences_until_steps_to_goal = 0
        self._log("new goal encoded")

    def _infer(self, frame: Frame, image: np.ndarray) -> None:
        try:
            started = time.perf_counter()
            action = self.policy.act(image)
            latency_ms = (time.perf_counter() - started) * 1e3
            with self._lock:
                publish = self._mode is Mode.RUNNING and self._pending_goal is None
                self._fb["latency_ms"] = latency_ms
                recovered, self._failure_reason = bool(self._failure_reason), ""
            if recovered:
                self._log("inference succeeds again: actions resume")
            if publish:
                self._publish_action(action, frame.stamp)
                now = self._clock()
                with self._lock:
                    self._fb["actions_published"] += 1
                    self._fb["frame_latency_ms"] = (now - frame.stamp) * 1e3
                    self._publish_times.append(now)
            with self._lock:
                if self._inferences_until_steps_to_goal > 0:
                    self._inferences_until_steps_to_goal -= 1
                elif not self._feedback_busy:  # due; if the feedback thread is busy, the next inference tries
                    self._inferences_until_steps_to_goal = self.config.steps_to_goal_every - 1
                    self._feedback_job = (image, self._fb["goal_version"])
                    self._feedback_busy = True
                    self._feedback_work.notify()
        except Exception as error:  # noqa: BLE001  the worker must outlive any one bad frame
            reason = f"inference failed ({self._failure_kind(error)}: {error})"
            with self._lock:
                self._fb["errors"] += 1
                first, self._failure_reason = not self._failure_reason, reason
            if first:  # transitions only: a graph that fails every tick would log five lines a second
                self._log(f"actions held: {reason}")
        finally:
            with self._lock:
                self._busy = False

    @staticmethod
    def _failure_kind(error: Exception) -> str:
        return "non-finite output" if isinstance(error, NonFiniteOutputError) else type(error).__name__

    def _count_failure(self, what: str, error: Exception) -> None:
        with self._lock:
            self._fb["errors"] += 1
        self._log(f"{what} failed ({self._failure_kind(error)}): {error}")

    # --- the feedback thread --------------------------------------------------------------------
    def _run_feedback_worker(self) -> None:
        lower_this_threads_priority(FEEDBACK_NICE)
        while True:
            with self._feedback_work:
                while not self._closed and self._feedback_job is None:
                    self._feedback_work.wait()
                if self._closed:
                    return
                (image, goal_version), self._feedback_job = self._feedback_job, None
            try:
                steps = self.policy.steps_to_goal(image)
                with self._lock:
                    if goal_version == self._fb["goal_version"]:  # else the goal changed meanwhile: stale
                        self._fb["steps_to_goal"] = float("nan") if steps is None else steps
            except Exception as error:  # noqa: BLE001  feedback must never stop the actions
                self._count_failure("steps-to-goal", error)
            finally:
                with self._lock:
                    self._feedback_busy = False

    # --- feedback -------------------------------------------------------------------------------
    def feedback(self) -> Feedback:
        now = self._clock()
        with self._lock:
            if self._mode is Mode.RUNNING and self._arm_parked_reason:
                state, reason = ARM_PARKED, self._arm_parked_reason
            elif self._mode is Mode.RUNNING and self._blocked_reason:
                state, reason = WAITING_FOR_FRAMES, self._blocked_reason
            elif self._mode is Mode.RUNNING and self._failure_reason:
                state, reason = INFERENCE_FAILING, self._failure_reason
            elif self._mode is Mode.RUNNING:
                state, reason = Mode.RUNNING.value, ""
            else:
                state, reason = self._mode.value, f"{self._mode.value} by the operator"
            times = list(self._publish_times)
            rate = 0.0
            stale = not times or now - times[-1] > 2.0 / self.config.rate_hz
            if len(times) >= 2 and not stale:
                rate = (len(times) - 1) / (times[-1] - times[0])
            return Feedback(state=state, reason=reason, rate_hz=rate, **self._fb)

    def wait_idle(self, timeout: float = 5.0) -> bool:
        """Block until the worker has nothing to do (tests and clean shutdown)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if not (self._busy or self._feedback_busy or self._pending_goal is not None or self._pending_frame is not None):
                    return True
            time.sleep(0.005)
        return False

    def close(self) -> None:
        with self._work:
            self._closed = True
            self._work.notify()
            self._feedback_work.notify()
        self._worker.join(timeout=5.0)
        self._feedback_worker.join(timeout=5.0)


def lower_this_threads_priority(increment: int) -> None:
    """Raise the calling thread's niceness (Linux schedules threads one by one; elsewhere a no-op).
    Only raising is allowed without privileges, which is all this does."""
    try:
        thread_id = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, thread_id, os.getpriority(os.PRIO_PROCESS, thread_id) + increment)
    except (AttributeError, OSError):
        pass
