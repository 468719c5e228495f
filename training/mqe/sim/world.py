"""One simulated Bridge tabletop: physics, joint-space servo targets, cameras, object and drawer state.

Not thread-safe by itself: a caller that steps physics on one thread and renders on another (the
ROS sim node) holds `world.lock` around every call.

Arm commands are joint position targets reached over a moving time, like Interbotix's
set_joint_positions(moving_time): the servo target moves from the last commanded joints to the new
ones along a minimum-jerk profile, one target per 2 ms physics step; the position actuators track it.
The gripper is one absolute command, 1 open .. 0 closed, mapped onto the finger stroke.
"""

from __future__ import annotations

import dataclasses
import os
import threading

os.environ.setdefault("MUJOCO_GL", "egl")  # headless rendering; must be set before mujoco is imported

import mujoco  # noqa: E402
import numpy as np  # noqa: E402

from mqe import robot  # noqa: E402
from mqe.sim import scene  # noqa: E402


@dataclasses.dataclass
class SceneState:
    """Everything a task's start or goal fixes: the layout, the objects, the drawer and the arm."""

    objects: dict[str, np.ndarray]  # name -> [x, y, z, qw, qx, qy, qz] (m, world = arm base frame)
    drawer: float  # m the drawer is pulled out
    arm_joints: np.ndarray  # rad, scene.JOINT_NAMES order
    gripper: float  # 1 open .. 0 closed
    plate_xy: np.ndarray  # m
    cabinet_xy: np.ndarray  # m
    colour_jitter: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(3))  # added to object RGB
    light_scale: float = 1.0  # key light intensity factor

    def copy(self) -> "SceneState":
        return SceneState({k: v.copy() for k, v in self.objects.items()}, float(self.drawer), self.arm_joints.copy(),
                          float(self.gripper), self.plate_xy.copy(), self.cabinet_xy.copy(), self.colour_jitter.copy(),
                          float(self.light_scale))


def _min_jerk(fraction: float) -> float:
    f = min(max(fraction, 0.0), 1.0)
    return f * f * f * (10 - 15 * f + 6 * f * f)


class World:
    def __init__(self):
        self.model = mujoco.MjModel.from_xml_string(scene.scene_xml())
        self.data = mujoco.MjData(self.model)
        self.lock = threading.RLock()
        m = self.model
        self._arm_qpos = np.array([m.joint(n).qposadr[0] for n in scene.JOINT_NAMES])
        self._arm_dof = np.array([m.joint(n).dofadr[0] for n in scene.JOINT_NAMES])
        self._finger_qpos = np.array([m.joint(n).qposadr[0] for n in ("left_finger", "right_finger")])
        self._object_qpos = {n: m.joint(n).qposadr[0] for n in scene.OBJECTS}
        self._object_dof = {n: m.joint(n).dofadr[0] for n in scene.OBJECTS}
        self._drawer_qpos = m.joint("drawer").qposadr[0]
        self._ee_site = m.site("ee_gripper").id
        self._plate_body = m.body("plate").id
        self._cabinet_body = m.body("cabinet").id
        self._object_geoms = {n: {g for g in range(m.ngeom) if m.geom_bodyid[g] == m.body(n).id} for n in scene.OBJECTS}
        self._finger_geoms = {m.geom("left_pad").id, m.geom("right_pad").id, m.geom("palm").id}
        self._base_rgba = m.geom_rgba.copy()
        self._base_light = m.light_diffuse.copy()
        self._renderers: dict[tuple[int, int], mujoco.Renderer] = {}
        self._scratch = mujoco.MjData(m)
        self._segment_start = np.zeros(len(scene.JOINT_NAMES))
        self._segment_end = np.zeros(len(scene.JOINT_NAMES))
        self._segment_time = 0.0
        self._segment_elapsed = 0.0
        self.gripper_command = 1.0
        self.state_at_reset: SceneState | None = None

    # -- state -------------------------------------------------------------------------------
    def reset(self, state: SceneState) -> None:
        """Put the world exactly in `state` (layout, objects, drawer, arm at rest, servo targets there)."""
        m, d = self.model, self.data
        mujoco.mj_resetData(m, d)
        m.body_pos[self._plate_body, :2] = state.plate_xy
        m.body_pos[self._cabinet_body, :2] = state.cabinet_xy
        m.geom_rgba[:] = self._base_rgba
        for name in scene.OBJECTS:
            for g in self._object_geoms[name]:
                m.geom_rgba[g, :3] = np.clip(self._base_rgba[g, :3] + state.colour_jitter, 0, 1)
        m.light_diffuse[:] = self._base_light
        m.light_diffuse[0] = np.clip(self._base_light[0] * state.light_scale, 0, 1)
        for name, pose in state.objects.items():
            d.qpos[self._object_qpos[name]:self._object_qpos[name] + 7] = pose
        d.qpos[self._drawer_qpos] = state.drawer
        d.qpos[self._arm_qpos] = state.arm_joints
        fingers = self.finger_target(state.gripper)
        d.qpos[self._finger_qpos] = fingers
        self._segment_start[:] = state.arm_joints
        self._segment_end[:] = state.arm_joints
        self._segment_time = self._segment_elapsed = 0.0
        self.gripper_command = float(state.gripper)
        d.ctrl[:6] = state.arm_joints
        d.ctrl[6:8] = fingers
        mujoco.mj_forward(m, d)
        self.state_at_reset = state.copy()

    def scene_state(self) -> SceneState:
        """The current state as a SceneState (objects and drawer as they are now)."""
        base = self.state_at_reset
        return SceneState(self.object_poses(), self.drawer_opening(), self.joint_positions(), self.gripper_command,
                          base.plate_xy.copy(), base.cabinet_xy.copy(), base.colour_jitter.copy(), base.light_scale)

    @staticmethod
    def finger_target(gripper: float) -> float:
        return scene.FINGER_CLOSED + float(np.clip(gripper, 0.0, 1.0)) * (scene.FINGER_OPEN - scene.FINGER_CLOSED)

    # -- commands ----------------------------------------------------------------------------
    def command_joints(self, joints: np.ndarray, moving_time: float) -> None:
        """Move the servo targets from where they are now to `joints` over `moving_time` s."""
        self._segment_start = self._current_target()
        self._segment_end = np.array(joints, np.float64)
        self._segment_time = max(float(moving_time), scene.TIMESTEP)
        self._segment_elapsed = 0.0

    def command_gripper(self, gripper: float) -> None:
        self.gripper_command = float(np.clip(gripper, 0.0, 1.0))

    def hold(self) -> None:
        """Freeze the servo targets where they are (e.g. torque is about to go off)."""
        target = self._current_target()
        self._segment_start, self._segment_end, self._segment_time = target, target.copy(), 0.0

    def _current_target(self) -> np.ndarray:
        if self._segment_time <= 0:
            return self._segment_end.copy()
        s = _min_jerk(self._segment_elapsed / self._segment_time)
        return self._segment_start + s * (self._segment_end - self._segment_start)

    def step(self, seconds: float) -> None:
        """Advance physics by `seconds` (rounded to whole 2 ms steps)."""
        for _ in range(max(1, int(round(seconds / scene.TIMESTEP)))):
            self._segment_elapsed += scene.TIMESTEP
            self.data.ctrl[:6] = self._current_target()
            self.data.ctrl[6:8] = self.finger_target(self.gripper_command)
            mujoco.mj_step(self.model, self.data)

    # -- reading -----------------------------------------------------------------------------
    @property
    def time(self) -> float:
        return float(self.data.time)

    def joint_positions(self) -> np.ndarray:
        return self.data.qpos[self._arm_qpos].copy()

    def joint_targets(self) -> np.ndarray:
        return self._segment_end.copy()

    def finger_positions(self) -> np.ndarray:
        return self.data.qpos[self._finger_qpos].copy()

    def ee_pose(self) -> np.ndarray:
        """4x4 ee_gripper_link pose in the base frame, measured (the arm's real, lagging pose)."""
        pose = np.eye(4)
        pose[:3, :3] = self.data.site_xmat[self._ee_site].reshape(3, 3)
        pose[:3, 3] = self.data.site_xpos[self._ee_site]
        return pose

    def object_poses(self) -> dict[str, np.ndarray]:
        return {n: self.data.qpos[a:a + 7].copy() for n, a in self._object_qpos.items()}

    def object_speed(self, name: str) -> float:
        a = self._object_dof[name]
        return float(np.linalg.norm(self.data.qvel[a:a + 3]))

    def drawer_opening(self) -> float:
        return float(self.data.qpos[self._drawer_qpos])

    def plate_xy(self) -> np.ndarray:
        return self.model.body_pos[self._plate_body, :2].copy()

    def cabinet_xy(self) -> np.ndarray:
        return self.model.body_pos[self._cabinet_body, :2].copy()

    def drawer_inside_xy(self) -> np.ndarray:
        """The drawer box's centre (x, y) now, i.e. moved with the drawer."""
        return self.data.xpos[self.model.body("drawer").id, :2].copy()

    def touching_gripper(self, name: str) -> bool:
        """Whether object `name` is in contact with a finger pad or the palm."""
        geoms = self._object_geoms[name]
        for i in range(self.data.ncon):
            pair = {int(self.data.contact[i].geom1), int(self.data.contact[i].geom2)}
            if pair & geoms and pair & self._finger_geoms:
                return True
        return False

    def resting_on(self, name: str, geom_name: str) -> bool:
        geoms, other = self._object_geoms[name], self.model.geom(geom_name).id
        for i in range(self.data.ncon):
            pair = {int(self.data.contact[i].geom1), int(self.data.contact[i].geom2)}
            if pair & geoms and other in pair:
                return True
        return False

    # -- kinematics (MuJoCo's, for the scene itself; the arm backend uses widowx_bridge's IK) ---
    def solve_ik(self, pose: np.ndarray, seed: np.ndarray, iterations: int = 100,
                 tolerance: float = 1e-4) -> np.ndarray | None:
        """Joints reaching the ee_gripper pose `pose` (damped least squares on a scratch copy), or None."""
        m, d = self.model, self._scratch
        q = np.array(seed, np.float64)
        low = np.array([lim[0] for lim in scene.JOINT_LIMITS])
        high = np.array([lim[1] for lim in scene.JOINT_LIMITS])
        jacp, jacr = np.zeros((3, m.nv)), np.zeros((3, m.nv))
        for _ in range(iterations):
            d.qpos[self._arm_qpos] = q
            mujoco.mj_kinematics(m, d)
            mujoco.mj_comPos(m, d)
            position = d.site_xpos[self._ee_site]
            rotation = d.site_xmat[self._ee_site].reshape(3, 3)
            error_p = pose[:3, 3] - position
            error_r = 0.5 * sum(np.cross(rotation[:, i], pose[:3, i]) for i in range(3))
            error = np.concatenate([error_p, error_r])
            if np.abs(error).max() < tolerance:
                return q if np.all(q >= low - 1e-9) and np.all(q <= high + 1e-9) else None
            mujoco.mj_jacSite(m, d, jacp, jacr, self._ee_site)
            jac = np.vstack([jacp[:, self._arm_dof], jacr[:, self._arm_dof]])
            q = np.clip(q + jac.T @ np.linalg.solve(jac @ jac.T + 1e-4 * np.eye(6), error), low, high)
        return None

    def start_pose_joints(self) -> np.ndarray:
        """Joints of mqe.robot.START_POSE (the arm's reset pose), from a fixed elbow-up seed."""
        return self.solve_ik(robot.pose_from_state(robot.START_POSE), np.array([0.0, -0.3, 0.5, 0.0, 1.3, 0.0]))

    # -- rendering ---------------------------------------------------------------------------
    def render(self, width: int = scene.CAMERA_WIDTH, height: int = scene.CAMERA_HEIGHT,
               camera: str = "over_shoulder") -> np.ndarray:
        """RGB uint8 [height, width, 3] from the fixed camera (same field of view at every size)."""
        key = (width, height)
        if key not in self._renderers:
            self._renderers[key] = mujoco.Renderer(self.model, height, width)
        renderer = self._renderers[key]
        renderer.update_scene(self.data, camera)
        return renderer.render().copy()

    def close(self) -> None:
        for renderer in self._renderers.values():
            renderer.close()
        self._renderers.clear()
