"""Inference latency of the exported policy with onnxruntime at batch 1 (a table, not a test).

    mqe-bench inference                          # ResNet34 MQE, sizes 128 and 256, 1 and 2 threads
    mqe-bench inference --policy runs/x/export   # an existing export instead of a random-init one
    mqe-bench inference --opt-levels basic,extended,all --iterations 100
    mqe-bench inference --precisions fp32,int8 --providers cpu,openvino   # int8 vs fp32, per provider

Per row: one robot step with the goal cached (policy.onnx only: the goal was encoded once; one
trunk pass), one step without caching (goal_encoder.onnx + policy.onnx: the goal goes through the
actor's and the critic's trunks, which are separate (paper C.1), plus the observation through the
actor's: three trunk passes), and the distance graph (distance.onnx, the operator's steps-to-goal;
one pass of the critic's trunk). Weights are random: latency does not
depend on their values. The int8 graphs of a random-init export are calibrated (mqe.quantize) on
frames of a small synthetic Bridge dataset, read back through the training reader and
resize_for_policy like real data; a given --policy must already hold its int8 graphs.

The precisions (and providers) of one cell are timed interleaved, in rounds, in one process, so a
load change on the shared machine hits both sides; the int8 speed-up table divides the p50s of one
cell. Providers this onnxruntime lacks are listed and skipped, never replaced by the CPU.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import onnxruntime as ort

from mqe import contract
from mqe.bench import machine
from mqe.runtime import OPTIMIZATION_LEVELS, PROVIDERS, ProviderUnavailableError, check_provider, open_session

ROUNDS = 5  # interleaving rounds per cell: each precision runs iterations / ROUNDS calls per round



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


def add_int8_graphs(out_dir: Path, image_size: int, calibration_dir: Path) -> None:
    """int8 graphs for a benchmark export, calibrated on a synthetic Bridge dataset (made once)."""
    from mqe import quantize
    from mqe.data.synthetic import make_synthetic_dataset

    dataset = calibration_dir / "bridge_dataset"
    if not (calibration_dir / "complete").exists():
        make_synthetic_dataset(dataset, episodes=12, steps=8, image_size=256, val_episodes=4, overwrite=True)
        (calibration_dir / "complete").touch()
    calibration = quantize.bridge_pairs(dataset, "image_0", "train", 64, image_size)
    held_out = quantize.bridge_pairs(dataset, "image_0", "val", 32, image_size, seed=1)
    # Random weights: the accuracy report describes nothing a robot would run, so it never refuses here.
    report = quantize.quantize_export(out_dir, calibration, held_out, print_report=lambda text: None, refuse=False)
    print(f"int8 accuracy at {image_size} (random weights, not a policy's): worst mean |int8 - fp32| action "
          f"{max(report['action_error_mean_over_std']):.4f} std, steps-to-goal Spearman {report['steps_to_goal_spearman']:.3f}")


def export_calls(policy_dir: Path, threads: int, opt_level: str, spin: bool = False, precision: str = "fp32",
                 provider: str = "cpu") -> dict:
    """Zero-argument calls at batch 1: one cached step, one uncached step and (if any) one distance call."""
    def graph(name):
        return open_session(policy_dir / contract.graph_file(name, precision), threads, opt_level, spin, provider)

    goal_session = graph(contract.GOAL_ENCODER_FILE)
    policy_session = graph(contract.POLICY_FILE)
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

    calls = {"goal-cached step": cached, "uncached step": uncached}
    if (policy_dir / contract.graph_file(contract.DISTANCE_FILE, precision)).exists():
        distance_session = graph(contract.DISTANCE_FILE)
        embedding = goal_outputs[contract.CRITIC_GOAL_EMBEDDING]
        calls["distance"] = lambda: distance_session.run(
            None, {contract.OBSERVATION_IMAGE: observation, contract.CRITIC_GOAL_EMBEDDING: embedding})
    return calls


def benchmark_interleaved(variants: dict, iterations: int, warmup: int) -> dict:
    """{variant: {call: (wall ms, CPU ms)}} with the variants' calls alternating in ROUNDS rounds."""
    per_round = max(1, iterations // ROUNDS)
    samples = {variant: {call: ([], []) for call in calls} for variant, calls in variants.items()}
    for round_index in range(ROUNDS):
        for variant, calls in variants.items():
            for call_name, call in calls.items():
                wall, cpu = time_calls(call, per_round, warmup if round_index == 0 else 1)
                samples[variant][call_name][0].append(wall)
                samples[variant][call_name][1].append(cpu)
    return {variant: {call: (np.concatenate(wall), np.concatenate(cpu)) for call, (wall, cpu) in calls.items()}
            for variant, calls in samples.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="mqe-bench inference", description=__doc__.split("\n\n")[0])
    parser.add_argument("--policy", help="an existing export directory (default: random-init exports per size)")
    parser.add_argument("--sizes", default="128,256", help="native image sizes to export and time")
    parser.add_argument("--threads", default="1,2", help="onnxruntime intra-op thread counts")
    parser.add_argument("--opt-levels", default="all", help=f"graph optimisation levels among {','.join(OPTIMIZATION_LEVELS)}")
    parser.add_argument("--spin", default="0", help="intra-op thread spinning (the runtime uses 0), e.g. 0,1 to compare")
    parser.add_argument("--precisions", default="fp32,int8", help="graph precisions, timed interleaved (int8: mqe.quantize)")
    parser.add_argument("--providers", default=",".join(PROVIDERS), help="execution providers; those this onnxruntime lacks are skipped, said so")
    parser.add_argument("--agent", default="mqe", help="agent to export (random init)")
    parser.add_argument("--trunk", default="resnet34", help="trunk of the random-init export")
    parser.add_argument("--cache", help="keep the random-init exports in CACHE/<agent>_<trunk>_<size> and reuse them")
    parser.add_argument("--iterations", type=int, default=50, help="timed calls per cell and precision")
    parser.add_argument("--warmup", type=int, default=5, help="untimed calls first")
    args = parser.parse_args(argv)

    threads = [int(t) for t in args.threads.split(",")]
    opt_levels = args.opt_levels.split(",")
    spins = [bool(int(value)) for value in args.spin.split(",")]
    precisions = args.precisions.split(",")
    for level in opt_levels:
        if level not in OPTIMIZATION_LEVELS:
            parser.error(f"--opt-levels: unknown level {level!r}; choose from {', '.join(OPTIMIZATION_LEVELS)}")
    for precision in precisions:
        if precision not in contract.PRECISIONS:
            parser.error(f"--precisions: unknown precision {precision!r}; choose from {', '.join(contract.PRECISIONS)}")
    providers = []
    for provider in args.providers.split(","):
        try:
            check_provider(provider)
            providers.append(provider)
        except ProviderUnavailableError as error:
            print(f"skipped: {error}")
    if not providers:
        parser.error("--providers: none of them is available here")
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
                if "int8" in precisions and not (out_dir / contract.graph_file(contract.POLICY_FILE, "int8")).exists():
                    start = time.perf_counter()
                    add_int8_graphs(out_dir, size, Path(args.cache or tmp) / "calibration")
                    print(f"quantised {label} at {size}x{size} to int8 in {time.perf_counter() - start:.1f} s")
                exports.append((out_dir, label))
        print()
        print(f"onnxruntime latency at batch 1 ({args.iterations} calls per precision after {args.warmup} warm-up, "
              f"precisions and providers interleaved in {ROUNDS} rounds), ms; "
              "CPU p50 = process CPU time per call (all threads), which contention does not inflate")
        print()
        print("| model | size | provider | precision | threads | spin | graph opt | call | p50 | p90 | p99 | CPU p50 |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|")
        speedups = []
        for policy_dir, label in exports:
            size = int(open_session(policy_dir / contract.POLICY_FILE, 1, "disabled").get_inputs()[0].shape[1])
            for level in opt_levels:
                for thread_count in threads:
                    for spin in spins if thread_count > 1 else spins[:1]:
                        variants = {(provider, precision): export_calls(policy_dir, thread_count, level, spin, precision, provider)
                                    for provider in providers for precision in precisions}
                        results = benchmark_interleaved(variants, args.iterations, args.warmup)
                        for (provider, precision), calls in results.items():
                            for call, (wall, cpu) in calls.items():
                                p50, p90, p99 = np.percentile(wall, [50, 90, 99])
                                print(f"| {label} | {size} | {provider} | {precision} | {thread_count} | {int(spin)} | {level} | {call} "
                                      f"| {p50:.1f} | {p90:.1f} | {p99:.1f} | {np.median(cpu):.1f} |", flush=True)
                        if "fp32" in precisions and "int8" in precisions:
                            for provider in providers:
                                for call in results[(provider, "fp32")]:
                                    fp32 = np.median(results[(provider, "fp32")][call][0])
                                    int8 = np.median(results[(provider, "int8")][call][0])
                                    speedups.append((size, provider, thread_count, int(spin), level, call, fp32, int8))
        if speedups:
            print("\nint8 speed-up (fp32 p50 / int8 p50 of one interleaved cell); targets: goal-cached step >= 2.5x at 256, >= 2x at 128\n")
            print("| size | provider | threads | spin | graph opt | call | fp32 p50 ms | int8 p50 ms | speed-up |")
            print("|---|---|---|---|---|---|---|---|---|")
            for size, provider, thread_count, spin, level, call, fp32, int8 in speedups:
                print(f"| {size} | {provider} | {thread_count} | {spin} | {level} | {call} | {fp32:.1f} | {int8:.1f} | {fp32 / int8:.2f}x |")
        print(f"\nload average at the end: {'/'.join(f'{x:.1f}' for x in os.getloadavg())} (1/5/15 min)")


if __name__ == "__main__":
    main()
