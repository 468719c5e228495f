"""`mqe-bench sim`: physics + rendering speed of the simulated tabletop (one process, one core).

Simulated seconds per wall second while the arm follows 5 Hz joint targets (random reachable
moves) and the camera renders at 30 Hz of simulated time, at 256x256 and 640x480, and without
the camera. Prints a markdown table.

    mqe-bench sim --seconds 10
"""

from __future__ import annotations

import argparse
import time

import numpy as np

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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mqe-bench sim", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="simulated seconds per row")
    args = parser.parse_args(argv)
    world = World()
    rows = [measure(world, args.seconds, size) for size in (None, (256, 256), (640, 480))]
    print("| camera | simulated s | wall s | simulated s per wall s | frames rendered |")
    print("|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['frames']} | {row['sim_s']:.1f} | {row['wall_s']:.2f} | {row['realtime']:.2f} | {row['rendered']} |")
    world.close()
    return 0
