"""`mqe-demo`: the product's main job on an embedded default, start to finish on this machine.

    mqe-demo [--task single_pnp --seed 1000] [--model DIR] [--steps 80] [--workdir artifacts/demo]

1. Finds a policy: --model, else the small sim policy kept in the repository (mqe.sim.demo_policy's
   KEPT_EXPORT, with the command that trained it and its measured scores in its README), else trains
   that recipe into WORKDIR/sim_policy (python -m mqe.sim.demo_policy, in a subprocess: its
   TensorFlow data loader and MuJoCo's renderer cannot share a process).
2. The goal image: the task instance's goal state rendered by mqe.sim (objects at their targets, the
   arm at the start pose), written to WORKDIR/sim_<task>_seed<seed>.png (goal_capture.write_sim_goal).
3. Starts the system of `run.launch.py use_sim:=true` in this process (mqe_policy.system: the
   simulated tabletop, which is the arm node and the camera, and the policy node) on a private
   loopback ROS domain, with the tabletop's lockstep clock so that the run replays exactly.
4. Prints live feedback once a second (policy state, steps, latency, the scene's points), stops when
   the task is complete or after --steps actions, prints the sim's score and writes the rollout as a
   strip of camera frames beside the goal (WORKDIR/rollout.png).
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

STRIP_FRAMES = 6  # camera frames in the rollout strip (first, last and evenly between)
STRIP_HEIGHT = 180  # px per tile


def _log(message: str) -> None:
    print(f"[mqe-demo] {message}", flush=True)


def find_policy(model: Path | None, workdir: Path) -> Path:
    """--model, else the kept sim policy, else one trained now with the kept policy's recipe."""
    from mqe.sim import demo_policy
    from mqe.demo import find_export

    if model is not None:
        return model
    for candidate in (demo_policy.KEPT_EXPORT, workdir / "sim_policy" / "export"):
        if find_export(candidate) is not None:
            return candidate
    _log(f"no kept policy in {demo_policy.KEPT_EXPORT}: training one with its recipe into {workdir / 'sim_policy'} "
         "(python -m mqe.sim.demo_policy; tens of minutes on 2 cores)")
    subprocess.run([sys.executable, "-m", "mqe.sim.demo_policy", "--out", str(workdir / "sim_policy")], check=True)
    return workdir / "sim_policy" / "export"


def rollout_strip(frames: list[np.ndarray], goal: np.ndarray, caption: str) -> np.ndarray:
    """The goal, then STRIP_FRAMES frames of the run (first, last and evenly between), one row."""
    import cv2

    picks = np.unique(np.linspace(0, len(frames) - 1, min(STRIP_FRAMES, len(frames))).round().astype(int))

    def tile(image: np.ndarray, label: str) -> np.ndarray:
        width = round(image.shape[1] * STRIP_HEIGHT / image.shape[0])
        tile = cv2.resize(image, (width, STRIP_HEIGHT), interpolation=cv2.INTER_AREA).copy()
        cv2.putText(tile, label, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
        return tile

    tiles = [tile(goal, "goal")] + [tile(frames[i], f"frame {i}") for i in picks]
    strip = np.concatenate(tiles, axis=1)
    banner = np.full((26, strip.shape[1], 3), 30, np.uint8)
    cv2.putText(banner, caption, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    return np.concatenate([banner, strip], axis=0)


class FrameKeeper:
    """Keeps every camera frame of the run (a subscriber in the demo's own process)."""

    def __init__(self, context):
        from rclpy.node import Node
        from rclpy.qos import qos_profile_sensor_data
        from sensor_msgs.msg import Image

        from widowx_bridge import topics

        self.node = Node("mqe_demo_frames", context=context)
        self.frames: list[np.ndarray] = []
        self._lock = threading.Lock()
        self._decode = topics.image_from_msg
        self.node.create_subscription(Image, topics.CAMERA_IMAGE, self._on_frame, qos_profile_sensor_data)

    def _on_frame(self, message) -> None:
        with self._lock:
            self.frames.append(self._decode(message))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mqe-demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", default="single_pnp", help="mqe.sim task (single_pnp, double_pnp, ..., open_drawer)")
    parser.add_argument("--seed", type=int, default=1000, help="task seed (1000.. are layouts no training data used)")
    parser.add_argument("--model", type=Path, help="a policy written by mqe-export (default: the kept sim policy)")
    parser.add_argument("--steps", type=int, default=80, help="most actions before the run stops")
    parser.add_argument("--workdir", type=Path, default=Path("artifacts/demo"), help="goal image, rollout, trained policy")
    options = parser.parse_args(argv)

    # An isolated loopback domain: the simulated system never meets a real robot's topics.
    os.environ.setdefault("ROS_DOMAIN_ID", str(random.randint(102, 200)))
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    os.environ.setdefault("ROS_LOCALHOST_ONLY", "1")
    os.environ.setdefault("MUJOCO_GL", "egl")

    import rclpy
    from rclpy.signals import SignalHandlerOptions

    from mqe import sim
    from mqe.runtime import load_goal_image
    from mqe_policy import system
    from mqe_policy.goal_capture import write_image, write_sim_goal
    from mqe_policy.run import InProcessSystem

    started = time.monotonic()
    try:
        task = sim.make_task(options.task, options.seed)
    except ValueError as error:
        print(f"mqe-demo: {error}", file=sys.stderr)
        return 2
    model = find_policy(options.model, options.workdir)
    _log(f"policy: {model}")
    goal = write_sim_goal(task, options.workdir)
    goal_rgb = load_goal_image(goal)
    _log(f"task {task.name} seed {task.seed}: {task.instruction}; goal image {goal}")
    _log(f"rubric: {task.rubric}")
    clock = options.workdir / "tabletop_lockstep.yaml"
    clock.write_text("widowx_arm:\n  ros__parameters:\n    sim_clock: lockstep\n")

    system.apply_dds_environment()
    rclpy.init(args=["mqe-demo"], signal_handler_options=SignalHandlerOptions.NO)
    keeper = None
    try:
        arguments = {"goal": str(goal), "model": str(model), "use_sim": "true", "sim_task": task.name,
                     "sim_seed": str(task.seed), "params_file": str(clock)}
        with InProcessSystem(arguments) as running:
            keeper = FrameKeeper(running.context or rclpy.get_default_context())
            running.add_node(keeper.node)
            policy, tabletop = running.nodes["policy"], running.nodes["widowx_arm"]
            _log(f"running the simulated tabletop (arm + camera, lockstep clock) + the policy node; up to {options.steps} actions")
            print(f"{'t s':>5} {'state':<18} {'steps':>5} {'latency ms':>10}  points")
            begin = time.monotonic()
            while running.spinning():
                time.sleep(1.0)
                feedback, score = policy.loop.feedback(), tabletop.score()
                print(f"{time.monotonic() - begin:5.1f} {feedback.state:<18} {score['steps']:5d} {feedback.latency_ms:10.1f}  "
                      f"{score['points']}/{score['max_points']}", flush=True)
                if score["points"] == score["max_points"] or score["steps"] >= options.steps:
                    break
            policy.loop.stop()
            time.sleep(0.5)  # the action in flight lands and its frame arrives
            final, score = policy.loop.feedback(), tabletop.score()
    except (ValueError, RuntimeError) as error:  # refusals: bad model or goal image
        print(f"mqe-demo: refusing to start: {error}", file=sys.stderr)
        return 2
    finally:
        rclpy.try_shutdown()

    complete = score["points"] == score["max_points"]
    caption = (f"{task.name} seed {task.seed}: {score['points']}/{score['max_points']} points after {score['steps']} "
               f"steps ({'complete' if complete else 'not complete'})")
    strip = (write_image(rollout_strip(keeper.frames, goal_rgb, caption), options.workdir / "rollout.png", force=True)
             if keeper.frames else None)
    print("\nsummary")
    print(f"  task                   {task.name} seed {task.seed}: {task.instruction}")
    print(f"  actions published      {final.actions_published} (skipped busy {final.ticks_skipped_busy}, "
          f"held by watchdogs {final.ticks_blocked}, errors {final.errors}); arm steps {score['steps']}")
    for target in score["details"]["targets"]:
        print(f"  target                 {target['object']} -> {target['region']}: "
              f"{'1 point' if target['point'] else '0 points'} ({', '.join(f'{k}={v}' for k, v in target.items() if k not in ('object', 'region', 'point'))})")
    print(f"  score                  {score['points']}/{score['max_points']} points (sim/score)")
    print(f"  completed the task:    {'yes' if complete else 'no'}")
    if strip is not None:
        print(f"  rollout                {strip} ({len(keeper.frames)} camera frames)")
    print(f"  total time             {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
