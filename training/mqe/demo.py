"""The main job on an embedded default: a small synthetic Bridge-format dataset, a few hundred MQE
steps with the small conv trunk, an ONNX export, and one run of it with onnxruntime.

    python -m mqe.demo                     # artifacts/demo/{data,run,export}; reuses a finished export
    python -m mqe.demo --workdir /tmp/demo --steps 300 --force

`ensure_demo_policy(workdir) -> Path` returns the export directory, building whatever is missing:
an existing valid export is reused as it is, an interrupted training run resumes from its newest
checkpoint, and an existing dataset is not rewritten.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from mqe import contract

DEMO_STEPS = 500  # optimizer steps: enough for the losses to move, about a minute of CPU
DEMO_IMAGE_SIZE = 64  # native policy size of the demo (the dataset is rendered at 128)
DEMO_OVERRIDES = [  # small_conv MQE that trains at a few steps/s on 2 cores
    f"data.image_size={DEMO_IMAGE_SIZE}",
    "data.buffer_episodes=32",
    "batch_size=32",
    "log_every=25",
    "val_every=100",
    "val_batches=1",
    "checkpoint_every=100",
    "keep_checkpoints=1",
    "device=cpu",
    "cpu_threads=1",  # a model this small gains nothing from intra-op threads; spinning ones cost 5x here
    "agent.trunk=small_conv",
    "agent.small_conv_channels=[16,32,64]",
    "agent.latent_dim=64",
    "agent.mrn_components=4",
    "agent.value_hidden_dims=[128,128]",
    "agent.actor_hidden_dims=[128,128]",
]


def _log(message: str) -> None:
    print(f"[mqe.demo] {message}", file=sys.stderr, flush=True)


def find_export(export_dir: Path) -> Path | None:
    """`export_dir` if it holds a complete export (contract metadata, one export id), else None."""
    from mqe.export import read_metadata

    files = [(contract.GOAL_ENCODER_FILE, "goal_encoder"), (contract.POLICY_FILE, "policy")]
    if (export_dir / contract.DISTANCE_FILE).exists():
        files.append((contract.DISTANCE_FILE, "distance"))
    try:
        parsed = [contract.check_policy_metadata(read_metadata(export_dir / name), str(export_dir / name), role) for name, role in files]
    except (OSError, contract.PolicyArtifactError, Exception):  # missing or unreadable file: rebuild
        return None
    return export_dir if len({p["export_id"] for p in parsed}) == 1 else None


def ensure_demo_policy(workdir: str | Path = "artifacts/demo", steps: int = DEMO_STEPS, force: bool = False) -> Path:
    """Return <workdir>/export, making the dataset, training and exporting as needed."""
    workdir = Path(workdir)
    data_dir, run_dir, export_dir = workdir / "data", workdir / "run", workdir / "export"
    if force:
        shutil.rmtree(workdir, ignore_errors=True)
    if find_export(export_dir) is not None:
        _log(f"found an existing export in {export_dir}")
        return export_dir

    if not (data_dir / "bridge_dataset" / "1.0.0" / "dataset_info.json").exists():
        from mqe.data.synthetic import make_synthetic_dataset

        start = time.perf_counter()
        make_synthetic_dataset(data_dir, episodes=40, steps=25, image_size=128, val_episodes=4, overwrite=True)
        _log(f"wrote a synthetic Bridge-format dataset (40 episodes x 25 steps, TFRecords + JPEGs) to {data_dir} "
             f"in {time.perf_counter() - start:.0f} s")

    from mqe.export import export_checkpoint
    from mqe.train import build_config_from, train

    config = build_config_from(
        agent="mqe", data_dir=data_dir, workdir=run_dir, steps=steps, overrides=DEMO_OVERRIDES
    )
    start = time.perf_counter()
    train(config)
    _log(f"trained MQE (small conv trunk, {DEMO_IMAGE_SIZE}x{DEMO_IMAGE_SIZE}) for {steps} steps in "
         f"{time.perf_counter() - start:.0f} s; metrics in {run_dir / 'metrics.jsonl'}")
    start = time.perf_counter()
    export_checkpoint(run_dir, export_dir, verify=True)
    _log(f"exported ONNX to {export_dir} in {time.perf_counter() - start:.0f} s (onnxruntime matches torch to 1e-4)")
    return export_dir


def run_once(export_dir: Path, data_dir: Path) -> dict:
    """One goal + one observation through the export with the robot's runtime (no torch)."""
    from mqe.data.loader import BridgeLoader
    from mqe.data.loader import get_config as get_loader_config
    from mqe.runtime import OnnxPolicy

    config = get_loader_config()
    config.update(data_dir=str(data_dir), image_size=128, buffer_episodes=4)
    with BridgeLoader(config, "val", batch_size=1, seed=0) as loader:
        batch = loader.next_batch()
    # The value goal's offset from the observation is known, so the estimate can be compared with it.
    observation, goal, true_steps = batch["observations"][0], batch["value_goals"][0], float(batch["value_goal_steps"][0])
    policy = OnnxPolicy(export_dir)
    policy.set_goal(goal)
    start = time.perf_counter()
    action = policy.act(observation)
    latency_ms = (time.perf_counter() - start) * 1e3
    return {"action": action, "steps_to_goal": policy.steps_to_goal(observation), "latency_ms": latency_ms,
            "image_size": policy.image_size, "true_steps": true_steps}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m mqe.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", default="artifacts/demo", help="where data/, run/ and export/ go")
    parser.add_argument("--steps", type=int, default=DEMO_STEPS, help="training steps")
    parser.add_argument("--force", action="store_true", help="delete the workdir and start over")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    export_dir = ensure_demo_policy(args.workdir, args.steps, args.force)
    result = run_once(export_dir, Path(args.workdir) / "data")
    names = ", ".join(f"{n}={v:+.3f}" for n, v in zip(contract.ACTION_NAMES, np.asarray(result["action"]).tolist()))
    print(f"policy: {export_dir}")
    print(f"action for one validation frame toward a later frame of its episode (robot units): {names}")
    if result["steps_to_goal"] is not None:
        print(f"estimated steps to goal: {result['steps_to_goal']:.1f} (the goal frame is {result['true_steps']:.0f} steps "
              "ahead in its episode; a demo-sized run estimates it roughly at best)")
    print(f"onnxruntime latency of one goal-cached step at {result['image_size']}x{result['image_size']}: "
          f"{result['latency_ms']:.1f} ms; demo took {time.perf_counter() - start:.0f} s in total")


if __name__ == "__main__":
    main()
