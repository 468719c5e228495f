"""Inference latency of the exported policy with onnxruntime at batch 1 (a table, not a test).

    mqe-bench inference                          # ResNet34 MQE, sizes 128 and 256, 1 and 2 threads
    mqe-bench inference --policy runs/x/export   # an existing export instead of a random-init one
    mqe-bench inference --opt-levels basic,extended,all --iterations 100

Per row: one robot step with the goal cached (policy.onnx only: the goal was encoded once; one
trunk pass), one step without caching (goal_encoder.onnx + policy.onnx: the goal goes through the
actor's and the critic's trunks, which are separate (paper C.1), plus the observation through the
actor's: three trunk passes), and the distance graph (distance.onnx, the operator's steps-to-goal;
one pass of the critic's trunk). Weights are random: latency does not
depend on their values.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import onnxruntime as ort

from mqe import contract
from mqe.bench import machine
from mqe.runtime import OPTIMIZATION_LEVELS, open_session



def machine_description() -> str:
    return f"{machine.machine_description()}, onnxruntime {ort.__version__}"


def export_random_policy(out_dir: Path, image_size: int, agent_name: str = "mqe", trunk: str = "resnet34") -> Path:
    """Export a randomly initialised agent (Bridge config) at `image_size` to `out_dir`."""
    import torch

    from mqe.agents import get_config, make_agent
    from mqe.export import export_agent

    torch.manual_seed(0)
    config = get_config(agent_name)
    config["trunk"] = trunk
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the random-init ResNet34 warning is expected here
        agent = make_agent(agent_name, config, ("image", image_size), contract.ACTION_DIM)
    return export_agent(
        agent,
        out_dir,
        image_size=image_size,
        camera="image_0",
        action_stats=contract.ActionStats.identity(),
        gamma=config["goal_sampling"]["gamma"],
        training_config={"agent": config},
        dataset_fingerprint="random-init-benchmark",
    )


def time_calls(call, iterations: int, warmup: int) -> tuple[np.ndarray, np.ndarray]:
    """Wall-clock and process CPU time of each call, in ms. On a shared machine the CPU time of a
    one-thread session is what the call costs without competition; the wall time is what it got."""
    for _ in range(warmup):
        call()
    wall, cpu = np.empty(iterations), np.empty(iterations)
    for i in range(iterations):
        start_wall, start_cpu = time.perf_counter(), time.process_time()
        call()
        wall[i], cpu[i] = time.perf_counter() - start_wall, time.process_time() - start_cpu
    return wall * 1e3, cpu * 1e3


def benchmark_export(policy_dir: Path, threads: int, opt_level: str, iterations: int, warmup: int,
                     spin: bool = False) -> dict[str, tuple]:
    """(wall, CPU) times in ms of one cached step, one uncached step and one distance call at batch 1."""
    goal_session = open_session(policy_dir / contract.GOAL_ENCODER_FILE, threads, opt_level, spin)
    policy_session = open_session(policy_dir / contract.POLICY_FILE, threads, opt_level, spin)
    size = policy_session.get_inputs()[0].shape[1]
    rng = np.random.default_rng(0)
    observation = rng.integers(0, 256, (1, size, size, 3), dtype=np.uint8)
    goal = rng.integers(0, 256, (1, size, size, 3), dtype=np.uint8)
    goal_outputs = dict(zip([o.name for o in goal_session.get_outputs()], goal_session.run(None, {contract.GOAL_IMAGE: goal})))
    features = goal_outputs[contract.ACTOR_GOAL_FEATURES]

    def cached():
        policy_session.run(None, {contract.OBSERVATION_IMAGE: observation, contract.ACTOR_GOAL_FEATURES: features})

    def uncached():
        goal_features = goal_session.run([contract.ACTOR_GOAL_FEATURES], {contract.GOAL_IMAGE: goal})[0]
        policy_session.run(None, {contract.OBSERVATION_IMAGE: observation, contract.ACTOR_GOAL_FEATURES: goal_features})

    results = {"goal-cached step": time_calls(cached, iterations, warmup), "uncached step": time_calls(uncached, iterations, warmup)}
    if (policy_dir / contract.DISTANCE_FILE).exists():
        distance_session = open_session(policy_dir / contract.DISTANCE_FILE, threads, opt_level, spin)
        embedding = goal_outputs[contract.CRITIC_GOAL_EMBEDDING]
        results["distance"] = time_calls(
            lambda: distance_session.run(None, {contract.OBSERVATION_IMAGE: observation, contract.CRITIC_GOAL_EMBEDDING: embedding}),
            iterations,
            warmup,
        )
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="mqe-bench inference", description=__doc__.split("\n\n")[0])
    parser.add_argument("--policy", help="an existing export directory (default: random-init exports per size)")
    parser.add_argument("--sizes", default="128,256", help="native image sizes to export and time")
    parser.add_argument("--threads", default="1,2", help="onnxruntime intra-op thread counts")
    parser.add_argument("--opt-levels", default="all", help=f"graph optimisation levels among {','.join(OPTIMIZATION_LEVELS)}")
    parser.add_argument("--spin", default="0,1", help="intra-op thread spinning (the runtime uses 0), e.g. 0,1 to compare")
    parser.add_argument("--agent", default="mqe", help="agent to export (random init)")
    parser.add_argument("--trunk", default="resnet34", help="trunk of the random-init export")
    parser.add_argument("--cache", help="keep the random-init exports in CACHE/<agent>_<trunk>_<size> and reuse them")
    parser.add_argument("--iterations", type=int, default=50, help="timed calls per cell")
    parser.add_argument("--warmup", type=int, default=5, help="untimed calls first")
    args = parser.parse_args(argv)

    threads = [int(t) for t in args.threads.split(",")]
    opt_levels = args.opt_levels.split(",")
    spins = [bool(int(value)) for value in args.spin.split(",")]
    for level in opt_levels:
        if level not in OPTIMIZATION_LEVELS:
            parser.error(f"--opt-levels: unknown level {level!r}; choose from {', '.join(OPTIMIZATION_LEVELS)}")
    print(f"Machine: {machine_description()}\n")
    with tempfile.TemporaryDirectory(prefix="mqe-bench-") as tmp:
        if args.policy:
            exports = [(Path(args.policy), "given")]
        else:
            exports = []
            label = f"{args.agent}/{args.trunk} random init"
            for size in (int(s) for s in args.sizes.split(",")):
                out_dir = Path(args.cache or tmp) / f"{args.agent}_{args.trunk}_{size}"
                if not (out_dir / contract.POLICY_FILE).exists():
                    start = time.perf_counter()
                    export_random_policy(out_dir, size, args.agent, args.trunk)
                    print(f"exported {label} at {size}x{size} in {time.perf_counter() - start:.1f} s")
                exports.append((out_dir, label))
        print()
        print(f"onnxruntime CPU latency at batch 1 ({args.iterations} calls after {args.warmup} warm-up), ms; "
              "CPU p50 = process CPU time per call (all threads), which contention does not inflate")
        print()
        print("| model | size | threads | spin | graph opt | call | p50 | p90 | p99 | CPU p50 |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        for policy_dir, label in exports:
            size = int(open_session(policy_dir / contract.POLICY_FILE, 1, "disabled").get_inputs()[0].shape[1])
            for level in opt_levels:
                for thread_count in threads:
                    for spin in spins if thread_count > 1 else spins[:1]:
                        results = benchmark_export(policy_dir, thread_count, level, args.iterations, args.warmup, spin)
                        for call, (wall, cpu) in results.items():
                            p50, p90, p99 = np.percentile(wall, [50, 90, 99])
                            print(f"| {label} | {size} | {thread_count} | {int(spin)} | {level} | {call} | {p50:.1f} "
                                  f"| {p90:.1f} | {p99:.1f} | {np.median(cpu):.1f} |", flush=True)


if __name__ == "__main__":
    main()
