"""The simulated Bridge tabletop (mqe.sim, MuJoCo) as the ROS system's arm and camera: one process,
one world.

    ros2 run widowx_bridge sim_tabletop          # what run.launch.py use_sim:=true starts
    python -m widowx_bridge.tabletop --ros-args -p sim_task:=double_pnp -p sim_seed:=3

The arm and the camera must see the same physical world, so both live in the process that owns
it: `TabletopNode` is the arm node (node name widowx_arm, every parameter and service of
widowx_bridge.arm_node, the same ArmController) on a MujocoArmBackend, and it publishes the
world's over-the-shoulder camera on the camera's topics (camera/image_raw, camera/status) through
the camera node's FramePublisher. The policy sees exactly the topics, services and messages of
the real system.

Clocks (`sim_clock`):
- realtime (default, behaves like the real arm): a physics thread keeps simulated time on wall
  time; the camera renders what is there at `camera_rate_hz`. When the machine cannot keep up,
  physics falls behind, the deficit is dropped (counted as `late_s` in sim/score's answer) instead
  of running faster than real time afterwards.
- lockstep (reproducible evaluation): physics advances exactly one control period (0.2 s) per action
  the controller takes, then one frame is rendered and published. Given the seed and a deterministic
  policy, an episode equals widowx_bridge.sim_episode.run_episode's (test).

Simulator interface (used by mqe-eval): parameters `sim_task` / `sim_seed` (settable at run time)
choose the task instance that `arm/reset` resets the scene to (then the arm's usual reset);
`sim/score` (std_srvs/Trigger) answers JSON {"task", "seed", "points", "max_points", "details",
"steps", "sim_time_s", "late_s"} scored by mqe.sim.score.
"""

from __future__ import annotations

import json
import sys
import threading
import time

import numpy as np
from rcl_interfaces.msg import SetParametersResult
from std_srvs.srv import Trigger

from mqe import sim
from mqe.sim import scene

from widowx_bridge import topics
from widowx_bridge.arm_node import NODE_NAME, ArmNode  # noqa: F401  NODE_NAME: this node is the arm node
from widowx_bridge.backends.mujoco import MujocoArmBackend
from widowx_bridge.camera_node import FramePublisher
from widowx_bridge.camera_sources import CameraSource, Pacer
from widowx_bridge.control import StepResult
from widowx_bridge.params import declare_all, refuse_changes_at_run_time, run_node
from widowx_bridge.sim_episode import CONTROL_PERIOD, STEPPED_STATUSES

CLOCKS = ("realtime", "lockstep")
# lockstep: s without a step after which the unchanged scene is published again, so a policy that
# started after the last frame gets one; longer than a policy tick, so a running loop never sees it.
LOCKSTEP_IDLE_FRAME = 1.0
MAX_LAG = 0.25  # s of simulated time physics may fall behind wall time before the deficit is dropped

# Declared defaults (beyond the arm node's); config/tabletop.yaml repeats them (a test keeps them equal).
DEFAULTS = {
    "sim_task": "single_pnp",  # task instance arm/reset resets the scene to: one of mqe.sim.TASKS
    "sim_seed": 0,  # its seed (start state and goal are deterministic in task and seed)
    "sim_clock": "realtime",  # realtime (like the real arm) | lockstep (one 0.2 s physics step per action)
    "camera_rate_hz": 10.0,  # realtime: frames per second of the over-the-shoulder camera
    "camera_width": scene.CAMERA_WIDTH,  # px, the RealSense's 640x480 of Bridge's image_0 camera
    "camera_height": scene.CAMERA_HEIGHT,
    "camera_frame_id": "camera_color_optical_frame",
    "camera_status_rate_hz": 1.0,  # camera/status publishing
}
RUNTIME_SETTABLE = ("sim_task", "sim_seed")


class WorldCamera(CameraSource):
    """The world's over-the-shoulder camera: a frame at `rate_hz` (realtime) or one per
    `request_frame()` (lockstep; and one after LOCKSTEP_IDLE_FRAME without a request). Renders under
    the world's lock, so a frame never shows half a step."""

    name = "sim"

    def __init__(self, world: sim.World, rate_hz: float, width: int, height: int, lockstep: bool):
        self.world, self.rate_hz, self.width, self.height = world, rate_hz, width, height
        self.lockstep = lockstep
        self._pacer = Pacer(rate_hz)
        self._requested = threading.Event()

    def request_frame(self) -> None:
        self._requested.set()

    def read(self, stop=None) -> np.ndarray | None:
        if self.lockstep:  # the frame after each step; the unchanged scene again when nothing asked for one
            self._requested.wait(timeout=LOCKSTEP_IDLE_FRAME)
            self._requested.clear()
        else:
            self._pacer.wait(stop)
        with self.world.lock:
            return self.world.render(self.width, self.height)

    def capture_thread_done(self) -> None:
        with self.world.lock:  # the renderers' EGL context is current on this thread only
            self.world.close()


class RealtimePhysics:
    """A thread that steps the world so that simulated time follows wall time."""

    CHUNK = 5  # physics steps (2 ms) per lock acquisition: the camera and the arm get the lock in between

    def __init__(self, world: sim.World):
        self.world = world
        self.late_s = 0.0  # simulated seconds dropped because the machine could not keep up
        self._stop = threading.Event()
        self.reanchor()
        self._thread = threading.Thread(target=self._run, name="tabletop_physics", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def reanchor(self) -> None:
        """Call (under the world's lock) after the world's time jumped (a reset)."""
        self._anchor = (time.monotonic(), self.world.time)

    def _run(self) -> None:
        while not self._stop.is_set():
            with self.world.lock:
                wall, simulated = self._anchor
                behind = simulated + (time.monotonic() - wall) - self.world.time
                if behind > MAX_LAG:
                    self.late_s += behind
                    self._anchor = (wall, simulated - behind)
                    behind = 0.0
                steps = min(int(behind / scene.TIMESTEP), self.CHUNK)
                if steps:
                    self.world.step(steps * scene.TIMESTEP)
            if not steps:
                self._stop.wait(self.CHUNK * scene.TIMESTEP)

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5.0)


class TabletopNode(ArmNode):
    def __init__(self, *, parameter_overrides=None, **node_kwargs):
        self.world = sim.World()
        self.task = sim.make_task(DEFAULTS["sim_task"], DEFAULTS["sim_seed"], self.world)
        self.world.reset(self.task.start)
        self.steps = 0  # controller steps since the last scene reset
        self.physics: RealtimePhysics | None = None
        self.camera: WorldCamera | None = None
        super().__init__(backend=MujocoArmBackend(self.world), parameter_overrides=parameter_overrides, **node_kwargs)
        p = declare_all(self, DEFAULTS)
        refuse_changes_at_run_time(self, [name for name in DEFAULTS if name not in RUNTIME_SETTABLE])
        self._check(p["sim_task"], p["sim_seed"])
        if p["sim_clock"] not in CLOCKS:
            raise ValueError(f"sim_clock: {p['sim_clock']!r}, expected one of {CLOCKS}")
        if not p["camera_rate_hz"] > 0 or p["camera_width"] < 32 or p["camera_height"] < 32:
            raise ValueError("camera_rate_hz must be > 0 and camera_width / camera_height at least 32 px")
        self.lockstep = p["sim_clock"] == "lockstep"
        self.add_on_set_parameters_callback(self._on_set_parameters)
        if (p["sim_task"], p["sim_seed"]) != (self.task.name, self.task.seed):
            self.reset_arm()
        self.camera = WorldCamera(self.world, p["camera_rate_hz"], p["camera_width"], p["camera_height"], self.lockstep)
        self.frames = FramePublisher(self, self.camera, p["camera_frame_id"], p["camera_status_rate_hz"])
        self.camera.request_frame()  # lockstep: the first frame shows the start state
        self.create_service(Trigger, topics.SIM_SCORE, self._on_score)
        if not self.lockstep:
            self.physics = RealtimePhysics(self.world)
            self.physics.start()
        self.get_logger().info(
            f"simulated tabletop: task {self.task.name} seed {self.task.seed}, {p['sim_clock']} clock, camera "
            f"{p['camera_width']}x{p['camera_height']}" + ("" if self.lockstep else f" at {p['camera_rate_hz']:g} Hz"))

    @staticmethod
    def _check(task: str, seed: int) -> None:
        if task not in sim.TASKS:
            raise ValueError(f"sim_task: {task!r}, expected one of {sim.TASKS}")
        if seed < 0:
            raise ValueError(f"sim_seed: {seed}, expected a seed >= 0")

    def _on_set_parameters(self, params) -> SetParametersResult:
        values = {p.name: p.value for p in params if p.name in RUNTIME_SETTABLE}
        try:
            self._check(values.get("sim_task", DEFAULTS["sim_task"]), values.get("sim_seed", 0))
        except ValueError as error:
            return SetParametersResult(successful=False, reason=str(error))
        return SetParametersResult(successful=True)

    def reset_arm(self) -> bool:
        """The scene goes to the start state of (sim_task, sim_seed), then the arm's usual reset."""
        task_name, seed = self.get_parameter("sim_task").value, self.get_parameter("sim_seed").value
        with self.world.lock:  # make_task settles its states in this world: physics must not run meanwhile
            if (task_name, seed) != (self.task.name, self.task.seed):
                self.task = sim.make_task(task_name, seed, self.world)
            self.world.reset(self.task.start)
            self.steps = 0
            if self.physics is not None:
                self.physics.reanchor()
        if self.camera is not None:
            self.camera.request_frame()
        return super().reset_arm()

    def _on_action(self, message) -> StepResult:
        result = super()._on_action(message)
        if result.status in STEPPED_STATUSES:
            with self.world.lock:
                self.steps += 1
                if self.lockstep:
                    self.world.step(CONTROL_PERIOD)
        if self.lockstep:  # a frame for every action, also one ignored (resetting): the policy waits for it
            self.camera.request_frame()
        return result

    def score(self) -> dict:
        """sim/score's answer: the scene scored now, with the task instance and the clock."""
        with self.world.lock:
            points, max_points, details = sim.score(self.world, self.task)
            return {"task": self.task.name, "seed": self.task.seed, "points": points, "max_points": max_points,
                    "details": details, "steps": self.steps, "sim_time_s": round(self.world.time, 3),
                    "late_s": round(self.physics.late_s, 3) if self.physics is not None else 0.0}

    def _on_score(self, request, response):
        response.success, response.message = True, json.dumps(self.score())
        return response

    def destroy_node(self):
        if self.physics is not None:
            self.physics.stop()
        if getattr(self, "frames", None) is not None:
            self.frames.stop()  # its thread closes the world's renderers
        return super().destroy_node()


def main(args=None) -> int:
    return run_node(TabletopNode, "sim_tabletop", (RuntimeError, ValueError), args)


if __name__ == "__main__":
    sys.exit(main())
