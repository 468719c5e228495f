"""`mqe-closed-loop-bench`: the closed loop on this machine, printed as a markdown table.

    mqe-closed-loop-bench [--sizes 128,256] [--camera-rates 30,60] [--seconds 20] [--precisions fp32,int8]

For each native size, a random-init ResNet34 MQE agent is exported once (cached in --export-dir;
timing does not depend on the weights). Then the replay camera (640x480 frames), the sim arm and the
policy node each run in a process of their own, as run.launch.py starts them, and this process
records what they publish, all over DDS on a private loopback domain. Reported per run:
  latency   frame stamp -> action received by the arm side (what the arm waits for)
  period    interval between consecutive actions as received (target 200 ms at 5 Hz), and the
            policy's own control tick period (policy/tick_period_ms): the clock itself
  frame age age of the frame each tick acts on (policy/frame_age): a backlog would make it grow
  inference the policy graph's run time (policy/inference_latency_ms), and the same call (OnnxPolicy.act
            on a 640x480 frame, same threads, precision and provider) timed standalone in this process
            just before and just after the run, with no node running: in-loop p50 / standalone p50
  CPU       % of one core of the policy, camera and arm processes, over the measured window
  load avg  the machine's 1-minute load average at the end of the run (other work competes)
The 60 Hz camera rate is the flood: latency and frame age must not grow with it.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from mqe.bench.machine import machine_description

DEFAULT_EXPORT_DIR = Path("artifacts") / "bench_policies"


def export_resnet34_policy(size: int, export_dir: Path, int8: bool = False) -> Path:
    """A random-init ResNet34 MQE export at `size` (with int8 graphs if asked), made once and reused."""
    from mqe.runtime import OnnxPolicy

    out = export_dir / f"mqe_resnet34_{size}"
    try:
        OnnxPolicy(out, threads=1, precision="int8" if int8 else "fp32")
        return out
    except ValueError:
        pass
    if int8 and (out / "policy.onnx").is_file():
        from mqe.bench.inference import add_int8_graphs

        add_int8_graphs(out, size, export_dir / "calibration")
        return out
    import torch

    from mqe import contract
    from mqe.agents import get_config, make_agent
    from mqe.export import export_agent

    print(f"exporting a random-init ResNet34 MQE policy at {size}x{size} to {out} (once) ...", file=sys.stderr)
    torch.manual_seed(0)
    config = get_config("mqe")
    config.update(trunk="resnet34", trunk_weights=None)
    agent = make_agent("mqe", config, ("image", size), contract.ACTION_DIM)
    export_agent(agent, out, image_size=size, camera="image_0", action_stats=contract.ActionStats.identity(),
                 gamma=0.98, control_rate_hz=5.0, training_config=config, dataset_fingerprint="benchmark")
    if int8:
        from mqe.bench.inference import add_int8_graphs

        add_int8_graphs(out, size, export_dir / "calibration")
    return out


def standalone_inference_ms(model: Path, frame: np.ndarray, goal: np.ndarray, threads: int, precision: str, provider: str,
                            calls: int = 30) -> tuple[np.ndarray, np.ndarray]:
    """Wall and process-CPU ms of OnnxPolicy.act on `frame` in this process, timed as the policy node
    times it (mqe_policy.control)."""
    from mqe.runtime import OnnxPolicy

    policy = OnnxPolicy(model, threads=threads, precision=precision, provider=provider)
    policy.set_goal(goal)
    for _ in range(5):
        policy.act(frame)
    wall, cpu = np.empty(calls), np.empty(calls)
    for index in range(calls):
        started, started_cpu = time.perf_counter(), time.process_time()
        policy.act(frame)
        wall[index], cpu[index] = (time.perf_counter() - started) * 1e3, (time.process_time() - started_cpu) * 1e3
    return wall, cpu


def write_frames(folder: Path, count: int = 90) -> Path:
    """Distinct 640x480 frames (a looped replay never shows a tick the same pixels twice)."""
    import cv2

    rng = np.random.default_rng(0)
    base = cv2.resize(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8), (640, 480), interpolation=cv2.INTER_LINEAR)
    for index in range(count):
        frame = np.clip(base.astype(np.int16) + rng.integers(-20, 21, base.shape), 0, 255).astype(np.uint8)
        cv2.imwrite(str(folder / f"frame_{index:03d}.png"), frame)
    return folder


def percentile(values, q: float) -> float:
    return float(np.percentile(values, q)) if len(values) else float("nan")


def cpu_seconds(pid: int) -> float:
    import psutil

    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def run_once(model: Path, frames: Path, goal: Path, camera_rate: float, seconds: float, threads: int,
             precision: str = "fp32", provider: str = "cpu") -> dict:
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node
    from sensor_msgs.msg import JointState
    from std_msgs.msg import Float32

    from mqe_policy import topics

    class Recorder(Node):
        def __init__(self, context):
            super().__init__("closed_loop_bench", context=context)
            self.recording = False
            self.actions, self.frame_ages, self.inference, self.ticks = [], [], [], []
            self.create_subscription(JointState, topics.ACTION, self._on_action, 100)
            self.create_subscription(Float32, topics.FRAME_AGE_S, self._keep(self.frame_ages), 100)
            self.create_subscription(Float32, topics.INFERENCE_LATENCY_MS, self._keep(self.inference), 100)
            self.create_subscription(Float32, topics.TICK_PERIOD_MS, self._keep(self.ticks), 100)

        def _keep(self, series):
            return lambda msg: series.append(msg.data) if self.recording else None

        def _on_action(self, msg):
            if self.recording:
                stamp = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
                self.actions.append((time.monotonic(), time.time() - stamp))

    def start_node(module: str, parameters: dict) -> subprocess.Popen:
        arguments = [item for name, value in parameters.items() for item in ("-p", f"{name}:={value}")]
        # stderr to a file, not a pipe: a node's warnings must never block it on a full pipe
        return subprocess.Popen([sys.executable, "-m", module, "--ros-args", *arguments, "--log-level", "warn"],
                                stdout=subprocess.DEVNULL, stderr=tempfile.TemporaryFile("w+"))

    def stderr_of(process: subprocess.Popen) -> str:
        process.stderr.seek(0)
        return process.stderr.read().strip()

    context = rclpy.Context()
    rclpy.init(context=context)
    recorder = Recorder(context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(recorder)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    processes = {
        "camera": start_node("widowx_bridge.camera_node", {"source": "replay", "replay_path": frames, "rate_hz": camera_rate}),
        "arm": start_node("widowx_bridge.arm_node", {"backend": "sim"}),
        "policy": start_node("mqe_policy.policy_node", {"model": model, "goal": goal, "threads": threads,
                                                        "precision": precision, "provider": provider}),
    }
    try:
        deadline = time.monotonic() + 120
        recorder.recording = True
        while len(recorder.actions) < 5:
            failed = {name: process for name, process in processes.items() if process.poll() is not None}
            if failed or time.monotonic() > deadline:
                errors = "; ".join(f"{name}: {stderr_of(process)}" for name, process in failed.items())
                raise RuntimeError(f"the closed loop did not start: {errors or 'no actions within 120 s'}")
            time.sleep(0.1)
        time.sleep(2.0)  # warm-up: onnxruntime's first runs allocate
        for series in (recorder.actions, recorder.frame_ages, recorder.inference, recorder.ticks):
            series.clear()
        started = time.monotonic()
        cpu_before = {name: cpu_seconds(process.pid) for name, process in processes.items()}
        time.sleep(seconds)
        load = os.getloadavg()[0]  # other work on the machine: the figures are only as good as this
        recorder.recording = False
        wall = time.monotonic() - started
        cpu = {name: (cpu_seconds(process.pid) - cpu_before[name]) / wall * 100 for name, process in processes.items()}
    finally:
        for process in processes.values():
            process.terminate()
        for process in processes.values():
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
        executor.shutdown(timeout_sec=5)
        recorder.destroy_node()
        rclpy.try_shutdown(context=context)

    received = np.array([at for at, _ in recorder.actions])
    latency_ms = np.array([age for _, age in recorder.actions]) * 1e3
    half = len(latency_ms) // 2
    return {
        "actions": len(received),
        "rate_hz": (len(received) - 1) / (received[-1] - received[0]) if len(received) > 1 else float("nan"),
        "latency_p50": percentile(latency_ms, 50),
        "latency_p99": percentile(latency_ms, 99),
        "latency_first_half_p50": percentile(latency_ms[:half], 50),
        "latency_second_half_p50": percentile(latency_ms[half:], 50),
        "period_p50": percentile(np.diff(received) * 1e3, 50),
        "period_p1": percentile(np.diff(received) * 1e3, 1),
        "period_p99": percentile(np.diff(received) * 1e3, 99),
        "tick_p50": percentile(recorder.ticks, 50),
        "tick_p1": percentile(recorder.ticks, 1),
        "tick_p99": percentile(recorder.ticks, 99),
        "frame_age_p50": percentile(np.array(recorder.frame_ages) * 1e3, 50),
        "frame_age_p99": percentile(np.array(recorder.frame_ages) * 1e3, 99),
        "inference_p50": percentile(recorder.inference, 50),
        "policy_cpu": cpu["policy"],
        # all of the policy process's CPU (inference, 1-in-N distance graph, frame reception) per action
        "policy_cpu_ms_per_action": cpu["policy"] * 10 * wall / max(len(received), 1),
        "camera_cpu": cpu["camera"],
        "arm_cpu": cpu["arm"],
        "load": load,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="128,256", help="native policy sizes to export and run")
    parser.add_argument("--camera-rates", default="30,60", help="replay camera rates in Hz (60 = the flood)")
    parser.add_argument("--seconds", type=float, default=20.0, help="measured seconds per run (after warm-up)")
    parser.add_argument("--threads", type=int, default=2, help="onnxruntime intra-op threads in the policy")
    parser.add_argument("--precisions", default="fp32,int8", help="policy precisions; each row runs them one after the other")
    parser.add_argument("--provider", default="cpu", help="execution provider of the policy node (refused if unavailable)")
    parser.add_argument("--export-dir", type=Path, default=DEFAULT_EXPORT_DIR, help="where the ResNet34 exports are cached")
    parser.add_argument("--domain-id", type=int, default=None, help="ROS_DOMAIN_ID (default: a random private one)")
    options = parser.parse_args(argv)

    from mqe.runtime import check_provider

    check_provider(options.provider)  # one line before anything starts, not a node's refusal 30 s later
    # A private loopback domain: the benchmark never talks to a real robot on the network.
    os.environ["ROS_DOMAIN_ID"] = str(options.domain_id if options.domain_id is not None else random.randint(102, 200))
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    os.environ["ROS_LOCALHOST_ONLY"] = "1"
    from mqe_policy import system

    system.apply_dds_environment()  # full 640x480 frames through shared memory, as in run.launch.py
    sizes = [int(s) for s in options.sizes.split(",")]
    rates = [float(r) for r in options.camera_rates.split(",")]
    precisions = options.precisions.split(",")
    rows = []
    with tempfile.TemporaryDirectory(prefix="mqe-bench-") as tmp:
        frames = Path(tmp) / "frames"
        frames.mkdir()
        write_frames(frames)
        goal = sorted(frames.iterdir())[0]
        from mqe.runtime import load_goal_image

        goal_rgb = load_goal_image(goal)
        frame_rgb = load_goal_image(sorted(frames.iterdir())[1])  # a 640x480 frame, as the camera sends
        for size in sizes:
            model = export_resnet34_policy(size, options.export_dir, int8="int8" in precisions)
            for rate in rates:
                for precision in precisions:  # fp32 and int8 back to back: the same machine state
                    print(f"running {size}x{size} {precision} with the camera at {rate:g} Hz for {options.seconds:g} s ...",
                          file=sys.stderr)
                    before = standalone_inference_ms(model, frame_rgb, goal_rgb, options.threads, precision, options.provider)
                    result = run_once(model, frames, goal, rate, options.seconds, options.threads, precision, options.provider)
                    after = standalone_inference_ms(model, frame_rgb, goal_rgb, options.threads, precision, options.provider)
                    result["standalone_p50"] = percentile(np.concatenate([before[0], after[0]]), 50)
                    result["standalone_cpu_p50"] = percentile(np.concatenate([before[1], after[1]]), 50)
                    rows.append((size, rate, precision, result))

    print(f"\nClosed loop, sim arm + replay camera (640x480) + ResNet34 MQE policy, one process each (onnxruntime, "
          f"{options.threads} threads, provider {options.provider}); {machine_description()}; {options.seconds:g} s per row.\n")
    print("| size | precision | provider | camera Hz | actions | rate Hz | latency p50 / p99 ms | action period p50 / p99 ms (p1) | "
          "tick period p50 / p99 ms (p1) | "
          "frame age p50 / p99 ms | latency 1st / 2nd half p50 ms | inference p50 in loop / standalone ms (ratio) | "
          "policy CPU ms per action in loop / standalone act | CPU % policy / camera / arm | load avg |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for size, rate, precision, r in rows:
        print(f"| {size} | {precision} | {options.provider} | {rate:g} | {r['actions']} | {r['rate_hz']:.2f} | "
              f"{r['latency_p50']:.1f} / {r['latency_p99']:.1f} | "
              f"{r['period_p50']:.1f} / {r['period_p99']:.1f} ({r['period_p1']:.1f}) | "
              f"{r['tick_p50']:.1f} / {r['tick_p99']:.1f} ({r['tick_p1']:.1f}) | "
              f"{r['frame_age_p50']:.1f} / {r['frame_age_p99']:.1f} | "
              f"{r['latency_first_half_p50']:.1f} / {r['latency_second_half_p50']:.1f} | "
              f"{r['inference_p50']:.1f} / {r['standalone_p50']:.1f} ({r['inference_p50'] / r['standalone_p50']:.2f}x) | "
              f"{r['policy_cpu_ms_per_action']:.1f} / {r['standalone_cpu_p50']:.1f} | "
              f"{r['policy_cpu']:.0f} / {r['camera_cpu']:.0f} / {r['arm_cpu']:.0f} | {r['load']:.1f} |")
    by_cell = {(size, rate, precision): r for size, rate, precision, r in rows}
    if "fp32" in precisions and "int8" in precisions:
        print("\nint8 vs fp32 latency p99 in the loop (target at 256: <= 0.5x)\n")
        print("| size | camera Hz | fp32 p99 ms | int8 p99 ms | ratio |")
        print("|---|---|---|---|---|")
        for size in sizes:
            for rate in rates:
                fp32, int8 = by_cell[(size, rate, "fp32")]["latency_p99"], by_cell[(size, rate, "int8")]["latency_p99"]
                print(f"| {size} | {rate:g} | {fp32:.1f} | {int8:.1f} | {int8 / fp32:.2f}x |")
    print("\nTargets (2 cores): period p99 within 200 +- 10 ms; latency p99 <= 100 ms at 256; "
          "no backlog at 60 Hz (frame age and latency do not grow); in-loop inference p50 <= 1.15x standalone.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
