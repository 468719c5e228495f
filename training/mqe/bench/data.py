"""Loader throughput: samples/s that `BridgeLoader.next_batch` delivers (a table, not a test).

    python -m mqe.bench.data                                  # a synthetic 256 px dataset in a temp dir
    python -m mqe.bench.data --data-dir ~/tensorflow_datasets/bridge_dataset/1.0.0 --decode-threads 1,2,4

`mqe-bench data` prints this beside the train step's samples/s: the loader must not be the
bottleneck. One sample uses five frames (observation, next, waypoint, value goal, actor goal).
The default regime streams: the synthetic set (96 episodes) is larger than the buffer (64 episodes)
and 4 episodes are replaced per batch, so the decoded-frame cache is measured in steady state after
a warm-up, not with the whole set cached.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from mqe.config import apply_overrides


def measure_loader(
    data_dir: str | Path,
    batch_size: int = 128,
    image_size: int = 128,
    decode_threads: int = 2,
    batches: int = 30,
    warmup: int = 10,
    overrides: tuple[str, ...] = (),
) -> dict:
    """Time `batches` calls of next_batch after `warmup` calls; returns one result row."""
    from mqe.data.loader import BridgeLoader, get_config

    config = get_config()
    config.update(data_dir=str(data_dir), image_size=image_size, decode_threads=decode_threads)
    config = apply_overrides(config, overrides)
    with BridgeLoader(config, "train", batch_size, seed=0) as loader:
        for _ in range(warmup):
            loader.next_batch()
        start = time.perf_counter()
        for _ in range(batches):
            loader.next_batch()
        seconds = time.perf_counter() - start
    return {
        "batch_size": batch_size,
        "image_size": image_size,
        "decode_threads": decode_threads,
        "batches": batches,
        "seconds": seconds,
        "batches_per_s": batches / seconds,
        "samples_per_s": batches * batch_size / seconds,
    }


def make_benchmark_dataset(out: Path, episodes: int = 96, steps: int = 35, image_size: int = 256) -> Path:
    """A synthetic dataset shaped like the release (256 px JPEGs, ~35-step episodes)."""
    from mqe.data.synthetic import make_synthetic_dataset

    return make_synthetic_dataset(out, episodes=episodes, steps=steps, image_size=image_size, num_shards=4)


def format_table(rows: list[dict]) -> str:
    header = f"{'batch':>5} {'size':>4} {'threads':>7} {'batches/s':>9} {'samples/s':>9}"
    lines = [header, "-" * len(header)]
    for row in rows:
        lines.append(
            f"{row['batch_size']:>5} {row['image_size']:>4} {row['decode_threads']:>7} "
            f"{row['batches_per_s']:>9.2f} {row['samples_per_s']:>9.0f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from mqe.bench.inference import machine_description

    parser = argparse.ArgumentParser(prog="python -m mqe.bench.data", description="BridgeLoader samples/s")
    parser.add_argument("--data-dir", help="a bridge_dataset directory (default: write a synthetic one to a temp dir)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--image-sizes", default="128,256", help="comma-separated native policy sizes")
    parser.add_argument("--decode-threads", default="1,2", help="comma-separated decode thread counts")
    parser.add_argument("--batches", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=10, help="batches before timing (fills the frame cache)")
    parser.add_argument("--set", nargs="*", default=["buffer_episodes=64", "refresh_per_batch=4.0"],
                        metavar="KEY=VALUE", help="loader config overrides (default: a streaming regime)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        data_dir = Path(args.data_dir) if args.data_dir else make_benchmark_dataset(Path(scratch))
        rows = [
            measure_loader(data_dir, args.batch_size, int(size), int(threads), args.batches, args.warmup,
                           overrides=tuple(args.set))
            for size in args.image_sizes.split(",")
            for threads in args.decode_threads.split(",")
        ]
    dataset = args.data_dir or "a synthetic 256 px dataset (96 episodes x 35 steps)"
    print(f"BridgeLoader throughput on {dataset}; loader overrides: {' '.join(args.set) or 'none'}")
    print(f"machine: {machine_description()}")
    print(format_table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
