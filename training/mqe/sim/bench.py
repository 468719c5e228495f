"""`mqe-bench sim`: physics + rendering speed of the simulated tabletop (one process, one core).

Simulated seconds per wall second while the arm follows 5 Hz joint targets (random reachable
moves) and the camera renders at 30 Hz of simulated time, at 256x256 and 640x480, and without
the camera. Prints a markdown table. With --expert-seeds N, a second one: per primitive of
mqe.sim.dataset, how many of seeds 0..N-1 the scripted expert completes (the recorder's own success
tests, 16x16 frames), the mean length of the completed episodes and the failures by reason.

    mqe-bench sim --seconds 10 [--expert-seeds 100]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from mqe.sim.dataset import PRIMITIVES, PrimitiveFailed, record_primitive
from mqe.sim.tasks import make_task
from mqe.robot import pose_from_state
from mqe.sim.world import World

CONTROL_PERIOD = 0.2  # s, 5 Hz
CAMERA_PERIOD = 1.0 / 30.0  # s


def measure(world: World, seconds: float, frame_size: tuple[int, int] | None, seed: int = 0) -> dict:
    task = make_task("quadruple_pnp", seed, world)
    world.reset(task.start)
    rng = np.random.default_rng(seed)
    joints = world.joint_positions()
    frames, next_frame = 0, 0.0
    if frame_size:
        world.render(*frame_size)  # create the renderer before timing
    start_sim, start = world.time, time.perf_counter()
    while world.time - start_sim < seconds:
        target = world.solve_ik(pose_from_state([*rng.uniform([0.2, -0.1, 0.03], [0.4, 0.2, 0.15]), 0, 0, 0]), joints)
        if target is not None:
            joints = target
            world.command_joints(joints, CONTROL_PERIOD)
        end = world.time + CONTROL_PERIOD
        while world.time < end - 1e-9:
            chunk = min(CAMERA_PERIOD, end - world.time) if frame_size else end - world.time
            world.step(chunk)
            if frame_size and world.time >= next_frame:
                world.render(*frame_size)
                frames += 1
                next_frame = world.time + CAMERA_PERIOD - 1e-9
    wall = time.perf_counter() - start
    simulated = world.time - start_sim
    return {"frames": "none" if not frame_size else f"{frame_size[0]}x{frame_size[1]} @ 30 Hz",
            "sim_s": simulated, "wall_s": wall, "realtime": simulated / wall, "rendered": frames}


def expert_success(world: World, primitive: str, seeds: int) -> dict:
    """Successes of `primitive` over seeds 0..seeds-1, mean steps of the successes, failures by reason."""
    lengths, failures = [], {}
    for seed in range(seeds):
        try:
            lengths.append(len(record_primitive(world, primitive, seed, image_size=16)["states"]))
        except PrimitiveFailed as failure:
            failures[str(failure)] = failures.get(str(failure), 0) + 1
    return {"primitive": primitive, "successes": len(lengths), "seeds": seeds,
            "mean_steps": float(np.mean(lengths)) if lengths else float("nan"), "failures": failures}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mqe-bench sim", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="simulated seconds per row")
    parser.add_argument("--expert-seeds", type=int, default=0, metavar="N",
                        help="also run each primitive's scripted expert on seeds 0..N-1 (second table)")
    args = parser.parse_args(argv)
    world = World()
    rows = [measure(world, args.seconds, size) for size in (None, (256, 256), (640, 480))]
    print("| camera | simulated s | wall s | simulated s per wall s | frames rendered |")
    print("|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['frames']} | {row['sim_s']:.1f} | {row['wall_s']:.2f} | {row['realtime']:.2f} | {row['rendered']} |")
    if args.expert_seeds > 0:
        print()
        print("| primitive | successes / seeds | mean steps (successes) | failures |")
        print("|---|---|---|---|")
        for primitive in PRIMITIVES:
            row = expert_success(world, primitive, args.expert_seeds)
            failures = ", ".join(f"{reason} {count}" for reason, count in sorted(row["failures"].items())) or "none"
            print(f"| {primitive} | {row['successes']}/{row['seeds']} | {row['mean_steps']:.1f} | {failures} |",
                  flush=True)
    world.close()
    return 0
