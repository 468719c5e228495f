"""`mqe-demo`: the product's main job on an embedded default, start to finish on this machine.

    mqe-demo [--goal PATH | --target X,Y,Z] [--seconds 20] [--workdir artifacts/demo]

1. Gets a policy with mqe.demo.ensure_demo_policy (reuses a finished export; otherwise makes a
   small synthetic Bridge-format dataset, trains a small MQE agent and exports it).
2. Picks the goal image: --goal, or the simulated tabletop rendered with the end-effector at
   --target (the scene the sim camera shows).
3. Starts camera(sim) + arm(sim) + policy in this process from mqe_policy.system, the description
   that run.launch.py uses, on a private loopback ROS domain.
4. Prints live feedback once a second, stops cleanly and prints a summary: did the end-effector
   move toward the goal pose?
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from pathlib import Path

import numpy as np

DEFAULT_TARGET = (0.38, 0.12, 0.02)  # m, base frame: forward-left of the start pose, near the table


def _log(message: str) -> None:
    print(f"[mqe-demo] {message}", flush=True)


def write_goal_image(target: tuple[float, float, float], path: Path, image_size: int, scene_seed: int) -> Path:
    """The sim camera's view with the end-effector at `target`, gripper open, written atomically."""
    import cv2

    from mqe.synthetic_scene import render_tabletop

    rgb = render_tabletop(np.asarray(target, np.float64), 1.0, image_size=image_size, scene_seed=scene_seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp.png")
    if not cv2.imwrite(str(temporary), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
        raise OSError(f"could not write {temporary}")
    os.replace(temporary, path)
    return path


def parse_target(text: str) -> tuple[float, float, float]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3:
        raise argparse.ArgumentTypeError(f"--target {text!r}: expected X,Y,Z in metres, e.g. 0.38,0.12,0.02")
    return values


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mqe-demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--goal", type=Path, help="goal image (default: render the sim scene at --target)")
    parser.add_argument("--target", type=parse_target, default=DEFAULT_TARGET, help="goal end-effector position X,Y,Z (m)")
    parser.add_argument("--seconds", type=float, default=20.0, help="how long the closed loop runs")
    parser.add_argument("--workdir", type=Path, default=Path("artifacts/demo"), help="mqe.demo's data/run/export directory")
    parser.add_argument("--training-steps", type=int, default=None, help="training steps if no export exists yet")
    options = parser.parse_args(argv)

    # An isolated loopback domain: the simulated system never meets a real robot's topics.
    os.environ.setdefault("ROS_DOMAIN_ID", str(random.randint(102, 200)))
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    os.environ.setdefault("ROS_LOCALHOST_ONLY", "1")

    import rclpy
    from rclpy.signals import SignalHandlerOptions

    from mqe.demo import DEMO_STEPS, ensure_demo_policy
    from mqe_policy.run import InProcessSystem
    from widowx_bridge.camera_node import DEFAULTS as CAMERA_DEFAULTS

    started = time.monotonic()
    export = ensure_demo_policy(options.workdir, options.training_steps or DEMO_STEPS)
    _log(f"policy: {export}")
    if options.goal is None:
        goal = write_goal_image(options.target, options.workdir / "goal_target.png",
                                CAMERA_DEFAULTS["synthetic_image_size"], CAMERA_DEFAULTS["synthetic_scene_seed"])
        _log(f"goal: the sim scene with the end-effector at {options.target} m -> {goal}")
    else:
        goal = options.goal
        _log(f"goal: {goal}")
    target = np.asarray(options.target)

    from mqe_policy import system

    system.apply_dds_environment()
    rclpy.init(args=["mqe-demo"], signal_handler_options=SignalHandlerOptions.NO)
    try:
        arguments = {"goal": str(goal), "model": str(export), "use_sim": "true", "camera": "synthetic"}
        with InProcessSystem(arguments) as running:
            policy, arm = running.nodes["policy"], running.nodes["widowx_arm"]
            position = lambda: arm.controller.commanded_pose[:3, 3].copy()  # noqa: E731
            start_position, first_steps = position(), None
            _log(f"running camera(sim) + arm(sim) + policy for {options.seconds:g} s; start EE {np.round(start_position, 3)} m")
            print(f"{'t s':>5} {'state':<18} {'steps-to-goal':>13} {'latency ms':>10} {'rate Hz':>7}  EE xyz (m)            to target (m)")
            begin = time.monotonic()
            while time.monotonic() - begin < options.seconds and running.spinning():
                time.sleep(1.0)
                feedback = policy.loop.feedback()
                if first_steps is None and np.isfinite(feedback.steps_to_goal):
                    first_steps = feedback.steps_to_goal
                xyz = position()
                print(f"{time.monotonic() - begin:5.1f} {feedback.state:<18} {feedback.steps_to_goal:13.1f} "
                      f"{feedback.latency_ms:10.1f} {feedback.rate_hz:7.2f}  {np.array2string(xyz, precision=3):<21} "
                      f"{np.linalg.norm(xyz - target):.3f}", flush=True)
            policy.loop.stop()
            final = policy.loop.feedback()
            final_position = position()
    except (ValueError, RuntimeError) as error:  # refusals: bad model or goal image, camera errors
        print(f"mqe-demo: refusing to start: {error}", file=sys.stderr)
        return 2
    finally:
        rclpy.try_shutdown()

    before, after = np.linalg.norm(start_position - target), np.linalg.norm(final_position - target)
    print("\nsummary")
    print(f"  actions published      {final.actions_published} in {options.seconds:g} s "
          f"(skipped busy {final.ticks_skipped_busy}, held by watchdogs {final.ticks_blocked}, errors {final.errors})")
    print(f"  end-effector           start {np.round(start_position, 3)} -> final {np.round(final_position, 3)} m")
    print(f"  distance to the goal   {before:.3f} m -> {after:.3f} m")
    if first_steps is not None and np.isfinite(final.steps_to_goal):
        print(f"  critic steps-to-goal   {first_steps:.1f} -> {final.steps_to_goal:.1f}")
    verdict = "yes" if after < before - 0.005 else "no"
    print(f"  moved toward the goal: {verdict} (a {DEMO_STEPS}-step synthetic-data policy is a smoke test, not a trained robot policy)")
    print(f"  total time             {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
