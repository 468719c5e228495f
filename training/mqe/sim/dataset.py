"""`python -m mqe.sim.dataset`: scripted single-primitive episodes in the BridgeData V2 format.

PRIMITIVES, each from the seed's layout, by a scripted teleoperator (mqe.sim.expert):
- pick_place_plate: the single_pnp object onto the plate, 0-2 other objects already on it;
- pick_place_table: the single_pnp object to a free table spot, clear of the rest;
- open_drawer: hook the handle and pull the drawer out to about tasks.DRAWER_GOAL_OPENING;
- close_drawer: from the drawer open about 10 cm, push it shut;
- place_in_drawer: from the drawer open about 10 cm, the mushroom into it (open_drawer_and_place's object).
The drawer primitives first move whatever stands where the drawer slides (tasks.clear_drawer_path).
Each 5 Hz step records image_0 (256x256, the over-the-shoulder camera), the state (measured ee
xyz, roll/pitch/yaw in Bridge's convention, gripper opening 1 open .. 0 closed) and the action as
Bridge records it: the commanded delta against the previous *target* (not the change of state) and
the absolute gripper command. Actions are applied like the Bridge teleop stack does: integrated on
the last target, clipped per step and to the workspace box (mqe.robot), then IK. A failed primitive
(IK failure, its end state not reached - judged with the scorer's own tests, mqe.sim.tasks -, not
back at the start pose) is discarded and counted, never written. Episodes go through the project's
one writer, mqe.data.bridge.write_bridge_dataset. Episodes are recorded in a spawned worker process
that never imports TensorFlow: TensorFlow and MuJoCo's EGL renderer segfault in one process, in
either import order (measured here with tensorflow-cpu and mujoco 4.0).

Privileged state (object poses [T, 4, 7], drawer opening [T]) goes to a sidecar beside the
dataset, OUT/sim_privileged/<split>/<episode file_path>.npz, keyed by the episode's file_path:
the TFDS records stay exactly the release's features, so the training pipeline cannot tell sim
data from real; a `state` observation mode has to join on file_path.

    python -m mqe.sim.dataset --out data/sim --episodes 20 [--primitives open_drawer close_drawer]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path
from typing import Callable

import concurrent.futures
import multiprocessing

import numpy as np

from mqe import robot
from mqe.sim import scene
from mqe.sim.expert import CloseDrawerExpert, OpenDrawerExpert, PickPlaceExpert, WaypointExpert
from mqe.sim.tasks import (DRAWER_CLOSED, PLATE_SLOTS, clear_drawer_path, drawer_opened, drawer_opening_centre,
                           free_table_spot, in_drawer, make_task, released_at_rest, score, with_objects_on_plate)
from mqe.robot import pose_from_state, rotation_from_rpy, state_from_pose
from mqe.sim.world import SceneState, World

CONTROL_PERIOD = 0.2  # s, 5 Hz
MAX_STEPS = 60
PRE_PLACED_PROBABILITIES = (0.4, 0.3, 0.3)  # 0, 1 or 2 other objects already on the plate
TABLE_SPOT_RADIUS = 0.03  # m: an object placed on the table must end this close to its spot
# m: the drawer primitives' opened drawer, "about" the goal state's (tasks.DRAWER_GOAL_OPENING), inside
# the scorer's [DRAWER_OPEN_ENOUGH, DRAWER_RAIL_LENGTH]
OPENED_RANGE = (0.09, 0.11)


class PrimitiveFailed(RuntimeError):
    pass


def gripper_state(world: World) -> float:
    opening = world.finger_positions().mean()
    return float(np.clip((opening - scene.FINGER_CLOSED) / (scene.FINGER_OPEN - scene.FINGER_CLOSED), 0.0, 1.0))


def pick_place_start(world: World, seed: int):
    """The seed's single_pnp task, its start state with 0-2 other objects already on the plate
    (PRE_PLACED_PROBABILITIES) and the plate spot the object goes to: one primitive, from the varied
    scenes a lab's data shows (Bridge's scenes are not reset to one layout between demonstrations)."""
    task = make_task("single_pnp", seed, world)
    obj = task.targets[0].object
    rng = np.random.default_rng([5, seed])
    count = int(rng.choice(len(PRE_PLACED_PROBABILITIES), p=PRE_PLACED_PROBABILITIES))
    others = [o for o in scene.OBJECTS if o != obj]
    chosen = [others[i] for i in rng.permutation(len(others))[:count]]
    slots = rng.permutation(len(PLATE_SLOTS))
    start = with_objects_on_plate(world, task.start, dict(zip(chosen, slots.tolist())), rng) if chosen else task.start
    target_xy = task.start.plate_xy + (np.array(PLATE_SLOTS[slots[count]]) if count else 0.0)
    return task, start, obj, target_xy


@dataclasses.dataclass
class Episode:
    """One primitive's episode, set up: the world is in its start state."""

    expert: WaypointExpert
    instruction: str
    failure: Callable[[World, WaypointExpert], str | None]  # the end state's failure reason, None = success


def _not_home(expert: WaypointExpert) -> str | None:
    """Every new primitive must end like PickPlaceExpert: back at the start pose, gripper open."""
    return None if expert.done else "not_home"


def _released_at_rest(world: World, obj: str) -> str | None:
    """The scorer's release and rest tests as a failure reason."""
    checks = released_at_rest(world, obj)
    if not checks["released"]:
        return "not_released"
    return None if checks["at_rest"] else "moving"


def _pick_place_plate(world: World, seed: int) -> Episode:
    task, start, obj, target_xy = pick_place_start(world, seed)
    world.reset(start)
    expert = PickPlaceExpert(world, obj, target_xy, scene.PLATE_TOP, np.random.default_rng([3, seed]))
    # the scorer's plate point only (record_pick_place's test since before the other primitives)
    return Episode(expert, f"put the {scene.OBJECT_WORDS[obj]} on the plate",
                   lambda world, expert: None if score(world, task)[0] >= 1 else "not_placed")


def _pick_place_table(world: World, seed: int) -> Episode:
    """The single_pnp object of the seed's layout, to a free table spot clear of the rest."""
    task = make_task("single_pnp", seed, world)
    obj = task.targets[0].object
    spot = free_table_spot(task.start, np.random.default_rng([7, seed]), ignore=(obj,),
                           away_from=task.start.objects[obj][:2])
    if spot is None:
        raise PrimitiveFailed("no_free_spot")
    world.reset(task.start)
    expert = PickPlaceExpert(world, obj, spot, 0.0, np.random.default_rng([3, seed]))

    def failure(world: World, expert: WaypointExpert) -> str | None:
        position = world.object_poses()[obj][:2]
        if np.linalg.norm(position - spot) > TABLE_SPOT_RADIUS or not world.resting_on(obj, "table"):
            return "not_at_spot"
        return _released_at_rest(world, obj) or _not_home(expert)

    return Episode(expert, f"put the {scene.OBJECT_WORDS[obj]} on the table", failure)


def _drawer_start(world: World, seed: int, opening: float | None) -> SceneState:
    """The seed's layout with the drawer's path cleared (and the drawer pulled out `opening` m)."""
    state = make_task("open_drawer", seed, world).start.copy()
    if opening is not None:
        state.drawer = opening
    cleared = clear_drawer_path(world, state, np.random.default_rng([11, seed]))
    if cleared is None:
        raise PrimitiveFailed("no_room")
    world.reset(cleared)
    return cleared


def _open_drawer(world: World, seed: int) -> Episode:
    rng = np.random.default_rng([3, seed])
    _drawer_start(world, seed, None)
    expert = OpenDrawerExpert(world, rng.uniform(*OPENED_RANGE), rng)

    def failure(world: World, expert: WaypointExpert) -> str | None:
        drawer = drawer_opened(world)
        if drawer["pulled_off"] or not drawer["opened_enough"]:
            return "pulled_off" if drawer["pulled_off"] else "not_opened"
        return _not_home(expert)

    return Episode(expert, "open the drawer", failure)


def _close_drawer(world: World, seed: int) -> Episode:
    rng = np.random.default_rng([3, seed])
    _drawer_start(world, seed, rng.uniform(*OPENED_RANGE))
    expert = CloseDrawerExpert(world, rng)
    return Episode(expert, "close the drawer",
                   lambda world, expert: "not_closed" if world.drawer_opening() >= DRAWER_CLOSED else _not_home(expert))


def _place_in_drawer(world: World, seed: int) -> Episode:
    """The mushroom (open_drawer_and_place's object) into the open drawer, where that task's goal has it."""
    rng = np.random.default_rng([3, seed])
    start = _drawer_start(world, seed, rng.uniform(*OPENED_RANGE))
    obj = "mushroom"
    expert = PickPlaceExpert(world, obj, drawer_opening_centre(start), scene.DRAWER_FLOOR, rng)

    def failure(world: World, expert: WaypointExpert) -> str | None:
        if not in_drawer(world, world.object_poses()[obj]):
            return "not_in_drawer"
        return _released_at_rest(world, obj) or _not_home(expert)

    return Episode(expert, f"put the {scene.OBJECT_WORDS[obj]} in the drawer", failure)


_SETUPS = {"pick_place_plate": _pick_place_plate, "pick_place_table": _pick_place_table, "open_drawer": _open_drawer,
           "close_drawer": _close_drawer, "place_in_drawer": _place_in_drawer}
PRIMITIVES = tuple(_SETUPS)


def record_primitive(world: World, primitive: str, seed: int, image_size: int = 256) -> dict:
    """One episode of `primitive` for `seed`: its arrays; raises PrimitiveFailed("<reason>") when it fails.
    plate_xy is the episode's plate: the drawer primitives may have moved it off the seed's layout."""
    if primitive not in _SETUPS:
        raise ValueError(f"primitive: unknown {primitive!r}, expected one of {PRIMITIVES}")
    episode = _SETUPS[primitive](world, seed)
    expert = episode.expert
    target = pose_from_state(robot.START_POSE)
    low, high = np.array(robot.WORKSPACE_LOW), np.array(robot.WORKSPACE_HIGH)
    limits = np.array([robot.MAX_TRANSLATION_STEP] * 3 + [robot.MAX_ROTATION_STEP] * 3)
    states, actions, images, privileged, drawer = [], [], [], [], []
    for _ in range(MAX_STEPS):
        state = np.concatenate([state_from_pose(world.ee_pose()), [gripper_state(world)]])
        action = expert({"state": state})
        delta = np.clip(action[:6], -limits, limits)
        new_target = target.copy()
        new_target[:3, 3] = np.clip(target[:3, 3] + delta[:3], low, high)
        new_target[:3, :3] = rotation_from_rpy(*delta[3:6]) @ target[:3, :3]
        joints = world.solve_ik(new_target, world.joint_targets())
        if joints is None:
            raise PrimitiveFailed("ik_failure")
        recorded = np.concatenate([new_target[:3, 3] - target[:3, 3], delta[3:6], [action[6]]])
        states.append(state)
        actions.append(recorded)
        images.append(world.render(image_size, image_size))
        privileged.append(np.stack([world.object_poses()[n] for n in scene.OBJECTS]))
        drawer.append(world.drawer_opening())
        target = new_target
        world.command_joints(joints, CONTROL_PERIOD)
        world.command_gripper(1.0 if action[6] >= 0.5 else 0.0)
        world.step(CONTROL_PERIOD)
        if expert.done:
            break
    reason = episode.failure(world, expert)
    if reason:
        raise PrimitiveFailed(reason)
    return {"states": np.array(states, np.float32), "actions": np.array(actions, np.float32),
            "images": np.stack(images), "objects": np.array(privileged, np.float32),
            "drawer": np.array(drawer, np.float32), "instruction": episode.instruction, "seed": seed,
            "primitive": primitive, "plate_xy": world.plate_xy().astype(np.float32)}


def record_pick_place(world: World, seed: int, image_size: int = 256) -> dict:
    """One pick-and-place-onto-the-plate episode's arrays; raises PrimitiveFailed when it fails."""
    return record_primitive(world, "pick_place_plate", seed, image_size)


def record_or_failure(primitive: str, seed: int, image_size: int):
    """Worker-process entry (the generators here and in mqe.bench.stitch): one episode's arrays, or
    "<primitive>:<reason>" when the primitive failed."""
    global _WORKER_WORLD
    if _WORKER_WORLD is None:
        _WORKER_WORLD = World()
    try:
        return record_primitive(_WORKER_WORLD, primitive, seed, image_size)
    except PrimitiveFailed as failure:
        return f"{primitive}:{failure}"


_WORKER_WORLD = None


def generate(out: str | Path, episodes: int, seed: int = 0, image_size: int = 256, overwrite: bool = False,
             log=print, primitives: tuple[str, ...] = PRIMITIVES) -> tuple[Path, dict]:
    """Write `episodes` episodes (train + val) of `primitives`, round-robin by seed: seed offset k records
    primitives[k % len(primitives)], so a primitive that fails more often is written a little less.
    stats: written, written per primitive, failures ("<primitive>:<reason>" -> count), seconds."""
    from mqe.data.bridge import make_episode, write_bridge_dataset

    unknown = [p for p in primitives if p not in PRIMITIVES]
    if unknown or not primitives:
        raise ValueError(f"primitives: unknown {unknown or 'none given'}, expected some of {PRIMITIVES}")

    out = Path(out)
    pool = concurrent.futures.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
    failures: dict[str, int] = {}
    per_primitive: dict[str, int] = {}
    stats = {"written": 0, "per_primitive": per_primitive, "failures": failures}
    start = time.perf_counter()

    def episodes_of(split: str, count: int, first: int):
        written, attempt = 0, first
        while written < count:
            primitive = primitives[attempt % len(primitives)]
            recorded = pool.submit(record_or_failure, primitive, seed * 1_000_000 + attempt, image_size).result()
            if isinstance(recorded, str):
                failures[recorded] = failures.get(recorded, 0) + 1
                attempt += 1
                continue
            file_path = f"sim/{primitive}/seed_{recorded['seed']}"
            sidecar = out / "sim_privileged" / split / f"{file_path.replace('/', '_')}.npz"
            sidecar.parent.mkdir(parents=True, exist_ok=True)
            np.savez_compressed(sidecar, objects=recorded["objects"], drawer=recorded["drawer"],
                                object_names=np.array(scene.OBJECTS), plate_xy=recorded["plate_xy"])
            written += 1
            attempt += 1
            stats["written"] += 1
            per_primitive[primitive] = per_primitive.get(primitive, 0) + 1
            elapsed = time.perf_counter() - start
            log(f"\r{stats['written']}/{episodes} episodes, {stats['written'] / elapsed:.2f} episodes/s, "
                f"discarded {sum(failures.values())}", end="")
            yield make_episode(recorded["states"], recorded["actions"], {"image_0": recorded["images"]},
                               language_instruction=recorded["instruction"], file_path=file_path,
                               episode_id=recorded["seed"])

    val = max(1, episodes // 10)
    # disjoint seed ranges per split, so a val episode never shares a layout with a train one
    splits = {"train": episodes_of("train", episodes - val, 0), "val": episodes_of("val", val, 500_000)}
    try:
        path = write_bridge_dataset(out, splits,
                                    image_size=image_size, overwrite=overwrite)
    finally:
        pool.shutdown()
    stats["seconds"] = time.perf_counter() - start
    log("")
    return path, stats


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mqe-make-sim-dataset", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="TFDS data_dir; the dataset goes to OUT/bridge_dataset/1.0.0")
    parser.add_argument("--episodes", type=int, default=20, help="episodes written in total (train + val)")
    parser.add_argument("--seed", type=int, default=0, help="the same seed gives the same dataset")
    parser.add_argument("--image-size", type=int, default=256, help="image_0 size (the release: 256)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing dataset at --out")
    parser.add_argument("--primitives", nargs="+", choices=PRIMITIVES, default=list(PRIMITIVES),
                        help="primitives to record, round-robin by seed (default: all)")
    args = parser.parse_args(argv)
    if args.episodes < 2:
        print("mqe-make-sim-dataset: --episodes must be >= 2 (train and val)", file=sys.stderr)
        return 2
    import tensorflow_datasets as tfds

    tfds.disable_progress_bar()
    try:
        path, stats = generate(args.out, args.episodes, args.seed, args.image_size, args.overwrite,
                               primitives=tuple(args.primitives))
    except FileExistsError as error:
        print(f"mqe-make-sim-dataset: {error}", file=sys.stderr)
        return 2
    print(f"wrote {stats['written']} episodes to {path} in {stats['seconds']:.1f} s "
          f"({stats['written'] / stats['seconds']:.2f} episodes/s): {stats['per_primitive']}; "
          f"discarded {stats['failures'] or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
