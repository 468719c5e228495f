"""`mqe-bench`: benchmarks that print markdown tables (they are commands, not tests).

    mqe-bench inference [...]   onnxruntime latency of the exported policy (mqe.bench.inference)
    mqe-bench data [...]        loader samples/s beside train-step samples/s for the same config
    mqe-bench ogbench [...]     OGBench pointmaze success rates (mqe.bench.ogbench)
    mqe-bench sim [...]         simulated tabletop speed: physics + 30 Hz camera (mqe.sim.bench)
    mqe-bench stitch [...]      sim stitching: single-primitive data, six tasks (mqe.bench.stitch)

`mqe-bench <command> --help` lists each command's options.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path


def measure_train_step(
    data_dir: str | Path,
    agent_name: str = "mqe",
    trunk: str = "resnet34",
    batch_size: int = 128,
    image_size: int = 128,
    steps: int = 2,
    warmup: int = 1,
    device: str = "auto",
) -> dict:
    """samples/s of mqe.train's step (augmentation + forward + backward + Adam) on loader batches.
    Batches are drawn before timing so only the step is measured."""
    import torch

    from mqe.agents import make_agent
    from mqe.data.augment import augment_batch
    from mqe.data.loader import BridgeLoader
    from mqe.train import build_config_from, loader_config, resolve_device, train_step

    config = build_config_from(agent=agent_name, data_dir=data_dir,
                               overrides=[f"batch_size={batch_size}", f"data.image_size={image_size}", f"agent.trunk={trunk}"])
    device = resolve_device(device if device != "auto" else config["device"])
    with BridgeLoader(loader_config(config), "train", batch_size, seed=0) as loader:
        batches = [loader.next_batch() for _ in range(warmup + steps)]
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # random-init ResNet34: expected for timing
        agent = make_agent(agent_name, config["agent"], ("image", image_size), 7).to(device)
    optimizer = torch.optim.Adam(agent.parameters(), lr=config["agent"]["lr"])
    generator = torch.Generator(device=device).manual_seed(0)
    seconds = 0.0
    for i, numpy_batch in enumerate(batches):
        start = time.perf_counter()
        batch = {key: torch.from_numpy(value).to(device) for key, value in numpy_batch.items()}
        loss, _ = train_step(agent, optimizer, augment_batch(batch, config["augment"], generator))
        loss.item()  # waits for the device
        if i >= warmup:
            seconds += time.perf_counter() - start
    return {"agent": agent_name, "trunk": trunk, "device": str(device), "batch_size": batch_size,
            "image_size": image_size, "steps": steps, "steps_per_s": steps / seconds,
            "samples_per_s": steps * batch_size / seconds}


def data_main(argv: list[str] | None = None) -> int:
    from mqe.bench.data import make_benchmark_dataset, measure_loader
    from mqe.bench.inference import machine_description

    parser = argparse.ArgumentParser(prog="mqe-bench data", description="loader samples/s vs train-step samples/s")
    parser.add_argument("--data-dir", help="a bridge_dataset directory (default: a synthetic 256 px one in a temp dir)")
    parser.add_argument("--batch-size", type=int, default=128, help="transitions per batch (paper: 128)")
    parser.add_argument("--image-sizes", default="128", help="comma-separated native policy sizes")
    parser.add_argument("--agent", default="mqe", help="agent whose train step is timed")
    parser.add_argument("--trunk", default="resnet34", help="trunk of that agent (resnet34 | small_conv)")
    parser.add_argument("--decode-threads", type=int, default=2, help="loader JPEG decode threads")
    parser.add_argument("--loader-batches", type=int, default=20, help="timed loader batches (after 10 warm-up)")
    parser.add_argument("--train-steps", type=int, default=2, help="timed train steps (after 1 warm-up)")
    parser.add_argument("--train-batch-size", type=int, default=None,
                        help="batch of the timed train step (default: --batch-size). ResNet34 at batch 128 needs "
                             "~20 GB of activations at 256 px on CPU; samples/s barely depends on the batch there")
    parser.add_argument("--device", default="auto", help="device of the train step")
    args = parser.parse_args(argv)

    rows = []
    with tempfile.TemporaryDirectory(prefix="mqe-bench-data-") as scratch:
        data_dir = Path(args.data_dir) if args.data_dir else make_benchmark_dataset(Path(scratch))
        for size in (int(s) for s in args.image_sizes.split(",")):
            loader = measure_loader(data_dir, args.batch_size, size, args.decode_threads, args.loader_batches, 10,
                                    overrides=("buffer_episodes=64", "refresh_per_batch=4.0"))
            step = measure_train_step(data_dir, args.agent, args.trunk, args.train_batch_size or args.batch_size, size,
                                      args.train_steps, device=args.device)
            rows.append((size, loader, step))
    print(f"Machine: {machine_description()}")
    print(f"Data: {args.data_dir or 'synthetic bridge_dataset, 256 px JPEGs, 96 episodes x 35 steps'}; "
          f"loader batch {args.batch_size}, streaming (buffer 64 episodes, 4 replaced per batch)")
    print()
    print("| size | loader threads | loader samples/s | train step (agent/trunk, device, batch) | train samples/s | train steps/s | bottleneck |")
    print("|---|---|---|---|---|---|---|")
    for size, loader, step in rows:
        bottleneck = "loader" if loader["samples_per_s"] < step["samples_per_s"] else "train step"
        print(f"| {size} | {loader['decode_threads']} | {loader['samples_per_s']:.0f} | {step['agent']}/{step['trunk']}, "
              f"{step['device']}, {step['batch_size']} | {step['samples_per_s']:.1f} | {step['steps_per_s']:.3f} | {bottleneck} |")
    return 0


COMMANDS = {
    "inference": ("mqe.bench.inference", "onnxruntime latency of the exported policy"),
    "data": (__name__, "loader samples/s vs train-step samples/s"),
    "ogbench": ("mqe.bench.ogbench", "OGBench pointmaze success rates per agent"),
    "sim": ("mqe.sim.bench", "simulated tabletop: physics + rendering, simulated s per wall s"),
    "stitch": ("mqe.bench.stitch", "sim stitching: train on single primitives, Table 5 on six tasks"),
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        lines = [f"  {name:<10} {help_text}" for name, (_, help_text) in COMMANDS.items()]
        print("usage: mqe-bench {" + ",".join(COMMANDS) + "} [options]\n\n" + "\n".join(lines), file=sys.stderr)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    command, rest = argv[0], argv[1:]
    if command == "data":
        return data_main(rest)
    import importlib

    result = importlib.import_module(COMMANDS[command][0]).main(rest)
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    raise SystemExit(main())
