"""Benchmark: time the arm's per-action work and the camera's per-frame work on this machine.

    python -m widowx_bridge.bench [--steps 300] [--seed 0]

Prints a table. The arm must finish each action well inside the 200 ms control period: the
number reported is ArmController.apply_action (clip, integrate, workspace clip, IK with the
modern-robotics solver, joint-limit and velocity checks) on the kinematic sim backend, for a
random walk of actions drawn uniformly from the clip range.
"""

from __future__ import annotations

import argparse
import array
import platform
import time

import numpy as np

from mqe import robot
from widowx_bridge.backends.sim import SimArmBackend
from widowx_bridge.control import ArmController, ControlConfig
from widowx_bridge.kinematics import MODELS


def _percentiles(samples_ms: list[float]) -> tuple[float, float, float]:
    values = np.asarray(samples_ms)
    return float(np.percentile(values, 50)), float(np.percentile(values, 99)), float(values.max())


def bench_arm(robot_model: str, steps: int, seed: int) -> tuple[str, float, float, float, str]:
    backend = SimArmBackend(robot_model)
    backend.startup()
    config = ControlConfig()
    controller = ArmController(backend, config)
    controller.reset(now=-config.reset_moving_time)  # the reset move is over at t = 0
    rng = np.random.default_rng(seed)
    limits = np.array([config.max_translation_step] * 3 + [config.max_rotation_step] * 3)
    times = []
    for step in range(steps):
        action = np.concatenate([rng.uniform(-limits, limits), [rng.uniform(0.0, 1.0)]])
        started = time.perf_counter()
        controller.apply_action(action, now=step * 0.2)
        times.append((time.perf_counter() - started) * 1e3)
    failures = controller.counters.ik_failures
    return (f"arm step {robot_model}", *_percentiles(times), f"IK failures {failures}/{steps}")


def bench_frame_packing(width: int, height: int, repeats: int) -> tuple[str, float, float, float, str]:
    frame = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        array.array("B", frame.tobytes())  # what camera_node does to fill sensor_msgs/Image.data
        times.append((time.perf_counter() - started) * 1e3)
    return (f"frame to Image.data {width}x{height}", *_percentiles(times), "")


def bench_sim_render(image_size: int, repeats: int) -> tuple[str, float, float, float, str]:
    from mqe.synthetic_scene import render_tabletop

    rng = np.random.default_rng(0)
    times = []
    for _ in range(repeats):
        xyz = rng.uniform(robot.WORKSPACE_LOW, robot.WORKSPACE_HIGH)
        started = time.perf_counter()
        render_tabletop(xyz, 1.0, image_size)
        times.append((time.perf_counter() - started) * 1e3)
    return (f"synthetic camera render {image_size}x{image_size}", *_percentiles(times), "")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300, help="actions per arm model / frames per camera row")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random action walk")
    args = parser.parse_args(argv)
    rows = [bench_arm(model, args.steps, args.seed) for model in sorted(MODELS)]
    rows.append(bench_frame_packing(640, 480, args.steps))
    rows.append(bench_sim_render(256, args.steps))
    print(f"widowx_bridge benchmark on {platform.processor() or platform.machine()}, "
          f"python {platform.python_version()}, {args.steps} samples per row")
    print(f"| {'what':<34} | {'p50 ms':>7} | {'p99 ms':>7} | {'max ms':>7} | note")
    print(f"|{'-' * 36}|{'-' * 9}|{'-' * 9}|{'-' * 9}|------")
    for name, p50, p99, worst, note in rows:
        print(f"| {name:<34} | {p50:7.2f} | {p99:7.2f} | {worst:7.2f} | {note}")


if __name__ == "__main__":
    main()
