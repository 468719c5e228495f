"""The paper's six Bridge evaluation tasks (App. C) as seeded start/goal states, and their scorer.

A task instance is a start state and a goal state of the same layout (plate, cabinet, colours,
light): the goal state has the task's objects at their targets, settled by physics, and the arm at
the start pose with the gripper open (Bridge's goal images are last frames of a trajectory, with
the arm in view; the start pose is where every episode begins and ends its reset).

Scoring follows the paper's rubric, from the world at the end of an episode: one point per object
whose centre is in its target region AND that is released and at rest - the gripper commanded
open, no contact with the fingers or palm, speed below REST_SPEED (SimplerEnv's success test fired
before the object was released, SimplerEnv issue #129; this one does not). Plate: centre within
the plate radius and the object touching the plate. Drawer: centre inside the drawer box and below
its wall top. The drawer itself: one point when opened at least DRAWER_OPEN_ENOUGH (an object fits
through) and not past DRAWER_RAIL_LENGTH (pulled off its rails = 0).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from mqe import robot
from mqe.sim import scene
from mqe.sim.world import SceneState, World

TASKS = ("single_pnp", "double_pnp", "triple_pnp", "quadruple_pnp", "open_drawer", "open_drawer_and_place")
REST_SPEED = 0.02  # m/s: an object moving faster is not at rest
GRIPPER_OPEN_FOR_SCORE = 0.5  # the gripper command must be at least this (open) to count a placement
DRAWER_OPEN_ENOUGH = 0.07  # m: wider than every object (<= 5 cm) plus a margin
DRAWER_GOAL_OPENING = 0.10  # m, the goal state's drawer
DRAWER_CLOSED = 0.01  # m: a drawer opened less than this counts as closed
# Where objects sit on the plate in goal states (offsets from its centre, m): up to four.
PLATE_SLOTS = ((-0.03, -0.03), (0.03, 0.03), (-0.03, 0.03), (0.03, -0.03))
LAYOUT_ATTEMPTS = 20000  # rejection-sampling draws; about 1 seed in 400 needs more than 1000
SETTLE_TIME = 0.6  # s of physics after placing objects by hand (start and goal states)

# Spawn region for objects and the plate (m, base frame); the cabinet stands at the right back.
SPAWN_LOW, SPAWN_HIGH = np.array([0.17, -0.02]), np.array([0.40, 0.23])
CABINET_CENTRE, CABINET_JITTER = np.array([0.43, -0.08]), 0.015


@dataclasses.dataclass(frozen=True)
class Target:
    object: str  # an object name, or "drawer" for the drawer's own point
    region: str  # "plate" | "drawer" | "opened"


@dataclasses.dataclass
class TaskInstance:
    name: str
    seed: int
    start: SceneState
    goal: SceneState
    targets: tuple[Target, ...]
    instruction: str

    @property
    def max_points(self) -> int:
        return len(self.targets)

    @property
    def rubric(self) -> str:
        parts = []
        for target in self.targets:
            if target.region == "plate":
                parts.append(f"1 point: the {scene.OBJECT_WORDS[target.object]} rests on the plate (centre within "
                             f"{scene.PLATE_RADIUS * 100:.1f} cm of the plate's centre, touching it), released and at rest")
            elif target.region == "drawer":
                parts.append(f"1 point: the {scene.OBJECT_WORDS[target.object]} is inside the drawer box, released and at rest")
            else:
                parts.append(f"1 point: the drawer is open at least {DRAWER_OPEN_ENOUGH * 100:.0f} cm and not pulled "
                             f"off its rails (> {scene.DRAWER_RAIL_LENGTH * 100:.0f} cm = 0)")
        return "; ".join(parts)


def _sample_points(rng: np.random.Generator, count: int, cabinet_xy: np.ndarray) -> list[np.ndarray]:
    """`count` object positions and the plate (last), spread apart and clear of the cabinet."""
    for _ in range(LAYOUT_ATTEMPTS):
        points = [rng.uniform(SPAWN_LOW, SPAWN_HIGH) for _ in range(count + 1)]
        plate = points[-1]
        cabinet_low = cabinet_xy - np.array(scene.CABINET_HALF[:2]) - 0.05
        cabinet_high = cabinet_xy + np.array(scene.CABINET_HALF[:2]) + 0.05
        clear = all(not np.all((p > cabinet_low) & (p < cabinet_high - [0, 0.0])) for p in points[:-1])
        plate_clear = not np.all((plate > cabinet_low - scene.PLATE_RADIUS + 0.05) & (plate < cabinet_high + scene.PLATE_RADIUS - 0.05))
        apart = all(np.linalg.norm(a - b) > 0.07 for i, a in enumerate(points[:-1]) for b in points[i + 1:-1])
        off_plate = all(np.linalg.norm(p - plate) > scene.PLATE_RADIUS + 0.035 for p in points[:-1])
        if clear and plate_clear and apart and off_plate:
            return points
    raise RuntimeError("could not place the objects apart (spawn region too small)")


def _upright(xy: np.ndarray, name: str, yaw: float, z_base: float = 0.0) -> np.ndarray:
    z = z_base + scene.OBJECT_HALF_HEIGHT[name] + 0.001
    return np.array([xy[0], xy[1], z, np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2)])


def _settle(world: World, state: SceneState) -> SceneState:
    world.reset(state)
    world.step(SETTLE_TIME)
    settled = world.scene_state()
    settled.arm_joints = state.arm_joints.copy()
    settled.gripper = state.gripper
    return settled


def with_objects_on_plate(world: World, state: SceneState, placements: dict[str, int],
                          rng: np.random.Generator) -> SceneState:
    """`state` with each named object standing on PLATE_SLOTS[slot] of the plate, settled by physics."""
    placed = state.copy()
    for name, slot in placements.items():
        xy = state.plate_xy + np.array(PLATE_SLOTS[slot])
        placed.objects[name] = _upright(xy, name, float(rng.uniform(-0.6, 0.6)), scene.PLATE_TOP)
    return _settle(world, placed)


OBJECT_CLEARANCE = 0.035  # m: an object's footprint radius when keeping things apart (objects >= 7 cm apart)
FIXTURE_MARGIN = 0.015  # m between a footprint and the cabinet (objects >= 5 cm from the cabinet, as spawned)


def cabinet_footprint(cabinet_xy: np.ndarray, drawer_opening: float) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) corners (x, y) of the cabinet with its drawer pulled out `drawer_opening`, handle included."""
    half = np.array(scene.CABINET_HALF[:2])
    reach = drawer_opening + scene.HANDLE_OFFSET + 0.005  # the handle bar's front, 0.5 cm thick
    return cabinet_xy - half - np.array([reach, 0.0]), cabinet_xy + half


def _box_distance(xy: np.ndarray, low: np.ndarray, high: np.ndarray) -> float:
    return float(np.linalg.norm(np.maximum(0.0, np.maximum(low - xy, xy - high))))


def is_clear(xy: np.ndarray, radius: float, state: SceneState, ignore=(), drawer_opening: float = 0.0) -> bool:
    """Whether a disc of `radius` at `xy` keeps clear of the state's objects and plate (except those named
    in `ignore`) and of the cabinet with its drawer opened `drawer_opening`."""
    objects_clear = all(np.linalg.norm(xy - pose[:2]) > radius + OBJECT_CLEARANCE
                        for name, pose in state.objects.items() if name not in ignore)
    plate_clear = "plate" in ignore or np.linalg.norm(xy - state.plate_xy) > radius + scene.PLATE_RADIUS
    cabinet_clear = _box_distance(xy, *cabinet_footprint(state.cabinet_xy, drawer_opening)) > radius + FIXTURE_MARGIN
    return bool(objects_clear and plate_clear and cabinet_clear)


def free_table_spot(state: SceneState, rng: np.random.Generator, radius: float = OBJECT_CLEARANCE, ignore=(),
                    drawer_opening: float = 0.0, away_from: np.ndarray | None = None) -> np.ndarray | None:
    """A random spot (x, y) in the spawn region where a disc of `radius` is clear (see is_clear) and, when
    `away_from` is given, at least 2 * OBJECT_CLEARANCE from it; None when the table has no room."""
    for _ in range(1000):
        xy = rng.uniform(SPAWN_LOW, SPAWN_HIGH)
        far = away_from is None or np.linalg.norm(xy - away_from) > 2 * OBJECT_CLEARANCE
        if far and is_clear(xy, radius, state, ignore, drawer_opening):
            return xy
    return None


def clear_drawer_path(world: World, state: SceneState, rng: np.random.Generator, attempts: int = 10) -> SceneState | None:
    """`state` with the plate and the objects out of where the drawer slides (out to its rails), settled;
    None when `attempts` random rearrangements found no room. Spawned layouts keep objects only 5 cm
    from the closed cabinet, so an opened drawer would push whatever stands in front of it."""
    for _ in range(attempts):
        cleared = _rearranged_out_of_drawer_path(state, rng)
        if cleared is not None:
            return _settle(world, cleared)
    return None


def _rearranged_out_of_drawer_path(state: SceneState, rng: np.random.Generator) -> SceneState | None:
    """The plate moves first (clear of the objects if it can, else of the drawer's path only); then each
    object that stands in the path, on the plate or too close to one before it moves to a free spot."""
    cleared = state.copy()
    path = {"drawer_opening": scene.DRAWER_RAIL_LENGTH}
    everything = ("plate", *scene.OBJECTS)
    if not is_clear(cleared.plate_xy, scene.PLATE_RADIUS, cleared, ignore=everything, **path):
        spot = free_table_spot(cleared, rng, scene.PLATE_RADIUS, ignore=("plate",), **path)
        if spot is None:
            spot = free_table_spot(cleared, rng, scene.PLATE_RADIUS, ignore=everything, **path)
        if spot is None:
            return None
        cleared.plate_xy = spot
    for i, name in enumerate(scene.OBJECTS):
        later = scene.OBJECTS[i:]  # this object and those after it, checked in their turn
        if is_clear(cleared.objects[name][:2], OBJECT_CLEARANCE, cleared, ignore=later, **path):
            continue
        spot = free_table_spot(cleared, rng, ignore=(name,), **path)
        if spot is None:
            return None
        cleared.objects[name][:2] = spot
    return cleared


def random_layout(seed: int, world: World) -> SceneState:
    """The seed's start state: every object on the table, plate and cabinet placed, drawer closed."""
    rng = np.random.default_rng([9, seed])
    cabinet_xy = CABINET_CENTRE + rng.uniform(-CABINET_JITTER, CABINET_JITTER, 2)
    points = _sample_points(rng, len(scene.OBJECTS), cabinet_xy)
    objects = {name: _upright(points[i], name, rng.uniform(-0.6, 0.6)) for i, name in enumerate(scene.OBJECTS)}
    state = SceneState(objects=objects, drawer=float(rng.uniform(0.0, 0.01)), arm_joints=world.start_pose_joints(),
                       gripper=robot.START_GRIPPER, plate_xy=points[-1], cabinet_xy=cabinet_xy,
                       colour_jitter=rng.uniform(-0.05, 0.05, 3), light_scale=float(rng.uniform(0.85, 1.15)))
    return state


def make_task(name: str, seed: int, world: World | None = None) -> TaskInstance:
    """The task `name` for `seed` (deterministic). `world` is only used to settle states; any World works."""
    if name not in TASKS:
        raise ValueError(f"task: unknown task {name!r}, expected one of {TASKS}")
    world = world or _shared_world()
    rng = np.random.default_rng([17, seed, TASKS.index(name)])
    start = random_layout(seed, world)
    goal = start.copy()
    if name.endswith("_pnp"):
        count = ("single", "double", "triple", "quadruple").index(name.split("_")[0]) + 1
        chosen = [scene.OBJECTS[i] for i in rng.permutation(len(scene.OBJECTS))[:count]]
        for slot, obj in zip(PLATE_SLOTS, chosen):
            xy = start.plate_xy + np.array(slot) * (1.0 if count > 1 else 0.0)
            goal.objects[obj] = _upright(xy, obj, float(rng.uniform(-0.6, 0.6)), scene.PLATE_TOP)
        targets = tuple(Target(obj, "plate") for obj in chosen)
        words = [scene.OBJECT_WORDS[o] for o in chosen]
        instruction = "put the " + (words[0] if count == 1 else ", the ".join(words[:-1]) + " and the " + words[-1]) + " on the plate"
    else:
        goal.drawer = DRAWER_GOAL_OPENING
        targets = (Target("drawer", "opened"),)
        instruction = "open the drawer"
        if name == "open_drawer_and_place":
            goal.objects["mushroom"] = _upright(drawer_opening_centre(goal), "mushroom", 0.0, scene.DRAWER_FLOOR)
            targets += (Target("mushroom", "drawer"),)
            instruction = "open the drawer and put the mushroom in it"
    return TaskInstance(name, seed, _settle(world, start), _settle(world, goal), targets, instruction)


def _drawer_centre(state: SceneState) -> np.ndarray:
    """Centre (x, y) of the drawer box for the state's cabinet and opening."""
    lx = scene.DRAWER_INNER[0]
    return state.cabinet_xy + np.array([-scene.CABINET_HALF[0] + lx / 2 + 0.006 - state.drawer, 0.0])


def drawer_opening_centre(state: SceneState) -> np.ndarray:
    """Centre of the part of the drawer box that is out of the cabinet (where an object is dropped)."""
    lx = scene.DRAWER_INNER[0]
    front_inner = _drawer_centre(state)[0] - lx / 2
    return np.array([front_inner + min(state.drawer, lx) / 2, state.cabinet_xy[1]])


_WORLD: World | None = None


def _shared_world() -> World:
    global _WORLD
    if _WORLD is None:
        _WORLD = World()
    return _WORLD


def score(world: World, task: TaskInstance) -> tuple[int, int, dict]:
    """(points, max_points, details) of the world now, by the rubric (see the module docstring)."""
    details: dict = {"gripper_open": gripper_released(world), "targets": []}
    points = 0
    for target in task.targets:
        entry: dict = {"object": target.object, "region": target.region}
        if target.region == "opened":
            entry.update(drawer_opened(world))
            ok = entry["opened_enough"] and not entry["pulled_off"]
        else:
            pose = world.object_poses()[target.object]
            entry.update(released_at_rest(world, target.object))
            if target.region == "plate":
                radius = float(np.linalg.norm(pose[:2] - world.plate_xy()))
                entry.update(plate_distance_m=round(radius, 4),
                             on_plate=bool(radius <= scene.PLATE_RADIUS and world.resting_on(target.object, "plate")))
                in_region = entry["on_plate"]
            else:
                entry.update(in_drawer=in_drawer(world, pose))
                in_region = entry["in_drawer"]
            ok = in_region and entry["at_rest"] and entry["released"]
        entry["point"] = int(ok)
        points += int(ok)
        details["targets"].append(entry)
    return points, task.max_points, details


def gripper_released(world: World) -> bool:
    """Whether the gripper is commanded open enough for a placement to count."""
    return bool(world.gripper_command >= GRIPPER_OPEN_FOR_SCORE)


def released_at_rest(world: World, name: str) -> dict:
    """The rubric's release and rest tests for object `name`: position, at_rest, released."""
    pose = world.object_poses()[name]
    return {"position": [round(float(v), 4) for v in pose[:3]],
            "at_rest": bool(world.object_speed(name) < REST_SPEED),
            "released": bool(gripper_released(world) and not world.touching_gripper(name))}


def drawer_opened(world: World) -> dict:
    """The rubric's drawer tests: opening_m, pulled_off (past the rails), opened_enough."""
    opening = world.drawer_opening()
    return {"opening_m": round(opening, 4), "pulled_off": bool(opening > scene.DRAWER_RAIL_LENGTH),
            "opened_enough": bool(opening >= DRAWER_OPEN_ENOUGH)}


def in_drawer(world: World, pose: np.ndarray) -> bool:
    """Whether an object at `pose` has its centre inside the drawer box (as it is now), below its wall top."""
    lx, ly, lz = scene.DRAWER_INNER
    centre = world.drawer_inside_xy()
    inside_xy = abs(pose[0] - centre[0]) <= lx / 2 and abs(pose[1] - centre[1]) <= ly / 2
    return bool(inside_xy and pose[2] < scene.DRAWER_FLOOR + lz)
