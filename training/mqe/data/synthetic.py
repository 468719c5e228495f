"""`mqe-make-dataset`: a small synthetic dataset in exactly the `bridge_dataset` TFDS format.

Scripted noisy reaching episodes on the synthetic tabletop (mqe.synthetic_scene): the end-effector
starts at a random pose and moves toward a random target with clipped, noisy Δxyz steps while the
wrist orientation drifts; the gripper closes at some step and may reopen later. Like the real
release, the first action is all zeros (the arm has not moved yet), actions are the commanded
deltas and the next state is where the arm actually got (tracking noise, workspace clipping), so
relabelling from states differs slightly from the stored actions. Images come from
`render_tabletop`, the same renderer as the simulated camera of the ROS stack.

`corrupt_episode` damages one stored episode on purpose (missing feature, wrong shape, bad JPEG,
empty episode, corrupt record) so tests and users can see how the loader reports it.

    mqe-make-dataset --out data/synthetic --episodes 20 --steps 30
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from pathlib import Path

import numpy as np

from mqe.data.bridge import (
    ACTION_KEY,
    LANGUAGE_EMBEDDING_DIM,
    STATE_KEY,
    BridgeSource,
    image_key,
    iter_records,
    make_episode,
    write_bridge_dataset,
    write_records,
)
from mqe.synthetic_scene import WORKSPACE_HIGH, WORKSPACE_LOW, render_tabletop

MAX_TRANSLATION_STEP = 0.03  # m per 200 ms step (the arm clips at 0.05)
MAX_ROTATION_STEP = 0.1  # rad per step
CORRUPTIONS = ("missing_feature", "wrong_shape", "bad_jpeg", "undecodable_jpeg", "empty", "corrupt_record")


def scripted_episode(rng: np.random.Generator, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """States and actions (float32 [steps, 7]) of one noisy reach with a gripper close/open."""
    margin = 0.02
    low, high = WORKSPACE_LOW + margin, WORKSPACE_HIGH - margin
    position = rng.uniform(low, high)
    target = rng.uniform(low, high)
    orientation = rng.normal(0.0, [0.05, 0.05, 0.3])
    gripper_state = 1.0
    close_step = int(rng.integers(steps // 3, max(steps // 3 + 1, 2 * steps // 3)))
    open_step = int(rng.integers(close_step + 2, steps + 3))  # may fall after the episode: stays closed
    states = np.zeros((steps, 7), np.float32)
    actions = np.zeros((steps, 7), np.float32)
    for t in range(steps):
        states[t] = [*position, *orientation, gripper_state]
        if t == 0:
            continue  # the first action stays all zero, as in the release; the arm does not move
        if t < close_step or t >= open_step:
            command = 1.0
        elif t == close_step:
            command = 0.5  # a half-way command while the operator squeezes the trigger
        else:
            command = 0.0
        translation = np.clip(0.35 * (target - position) + rng.normal(0.0, 0.006, 3), -MAX_TRANSLATION_STEP, MAX_TRANSLATION_STEP)
        rotation = np.clip(rng.normal(0.0, 0.03, 3) - 0.1 * orientation, -MAX_ROTATION_STEP, MAX_ROTATION_STEP)
        actions[t] = [*translation, *rotation, command]
        position = np.clip(position + translation + rng.normal(0.0, 0.001, 3), WORKSPACE_LOW, WORKSPACE_HIGH)
        orientation = orientation + rotation + rng.normal(0.0, 0.002, 3)
        gripper_state = 0.5 * gripper_state + 0.5 * command
    return states, actions


def _instruction_embedding(instruction: str) -> np.ndarray:
    """A fixed unit vector per instruction standing in for the release's sentence embedding (zeros
    for no instruction); nothing reads it in training, the format must hold it."""
    if not instruction:
        return np.zeros(LANGUAGE_EMBEDDING_DIM, np.float32)
    seed = int.from_bytes(hashlib.sha256(instruction.encode()).digest()[:8], "little")
    vector = np.random.default_rng(seed).standard_normal(LANGUAGE_EMBEDDING_DIM)
    return (vector / np.linalg.norm(vector)).astype(np.float32)


def synthetic_episodes(count: int, steps: int, seed: int, image_size: int, first_id: int = 0, scene_seed: int = 0):
    """Yield `count` episodes (bridge_dataset layout); episode i depends only on (seed, first_id + i)."""
    for episode_id in range(first_id, first_id + count):
        rng = np.random.default_rng([seed, episode_id])
        states, actions = scripted_episode(rng, steps)
        images = np.stack([render_tabletop(s[:3], s[6], image_size, scene_seed) for s in states])
        # Like the release: some episodes carry no instruction (empty text, zero embedding).
        instruction = "" if episode_id % 5 == 4 else "move the gripper to the target and grasp"
        yield make_episode(
            states,
            actions,
            {"image_0": images},
            language_instruction=instruction,
            language_embedding=_instruction_embedding(instruction),
            file_path=f"synthetic/seed_{seed}/episode_{episode_id:05d}",
            episode_id=episode_id,
        )


def make_synthetic_dataset(
    out: str | Path,
    episodes: int = 20,
    steps: int = 30,
    seed: int = 0,
    image_size: int = 256,
    val_episodes: int | None = None,
    num_shards: int | None = None,
    scene_seed: int = 0,
    overwrite: bool = False,
) -> Path:
    """Write train and val splits through the one Bridge writer; return the dataset directory."""
    if steps < 2:
        raise ValueError(f"synthetic dataset: --steps must be >= 2 (one transition), got {steps}")
    val_episodes = max(1, episodes // 10) if val_episodes is None else val_episodes
    train_episodes = episodes - val_episodes
    if train_episodes < 1 or val_episodes < 0:
        raise ValueError(f"synthetic dataset: {episodes} episodes cannot hold {val_episodes} validation episodes")
    if num_shards is not None and num_shards > min(train_episodes, val_episodes or train_episodes):
        raise ValueError(f"synthetic dataset: {num_shards} shards need at least as many episodes in each split "
                         f"(train {train_episodes}, val {val_episodes})")
    if num_shards is None:  # several shards per split, like the release (as many as the smaller split allows)
        num_shards = max(1, min(4, train_episodes, val_episodes or train_episodes))
    splits = {"train": synthetic_episodes(train_episodes, steps, seed, image_size, 0, scene_seed)}
    if val_episodes:
        splits["val"] = synthetic_episodes(val_episodes, steps, seed, image_size, train_episodes, scene_seed)
    return write_bridge_dataset(out, splits, image_size=image_size, num_shards=num_shards, overwrite=overwrite)


def corrupt_episode(dataset_dir: str | Path, kind: str, split: str = "train", shard: int = 0, episode: int = 0) -> str:
    """Damage one stored episode in place; returns the shard file name. Kinds: see CORRUPTIONS."""
    from tensorflow.core.example import example_pb2

    if kind not in CORRUPTIONS:
        raise ValueError(f"corrupt_episode: kind must be one of {CORRUPTIONS}, got {kind!r}")
    source = BridgeSource(dataset_dir)
    shard_name = source.shards(split)[shard]
    path = source.path / shard_name
    payloads = [payload for _, payload in iter_records(path)]
    if not 0 <= episode < len(payloads):
        raise ValueError(f"corrupt_episode: {shard_name} has {len(payloads)} episodes, no episode {episode}")
    example = example_pb2.Example.FromString(payloads[episode])
    features = example.features.feature
    if kind == "missing_feature":
        del features[STATE_KEY]
    elif kind == "wrong_shape":
        del features[ACTION_KEY].float_list.value[-3:]
    elif kind == "bad_jpeg":
        features[image_key("image_0")].bytes_list.value[1] = b"this is not a jpeg"
    elif kind == "undecodable_jpeg":  # passes the cheap marker check, fails only when decoded
        features[image_key("image_0")].bytes_list.value[1] = b"\xff\xd8" + b"\x00garbage" * 8 + b"\xff\xd9"
    elif kind == "empty":
        for key in list(features):
            if key.startswith("steps/"):
                del getattr(features[key], features[key].WhichOneof("kind")).value[:]
    payloads[episode] = example.SerializeToString()
    write_records(path, payloads)
    if kind == "corrupt_record":  # flip stored bytes without updating the checksum, like a bad disk
        offset = sum(12 + len(payload) + 4 for payload in payloads[:episode]) + 12
        with open(path, "r+b") as file:
            file.seek(offset)
            data = file.read(4)
            file.seek(offset)
            file.write(bytes(b ^ 0x5A for b in data))
    return shard_name


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mqe-make-dataset", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="TFDS data_dir; the dataset goes to OUT/bridge_dataset/1.0.0")
    parser.add_argument("--episodes", type=int, default=20, help="episodes in total (train + val)")
    parser.add_argument("--val-episodes", type=int, default=None, help="validation episodes (default: a tenth, at least 1)")
    parser.add_argument("--steps", type=int, default=30, help="steps per episode")
    parser.add_argument("--seed", type=int, default=0, help="random seed; the same seed gives the same dataset")
    parser.add_argument("--image-size", type=int, default=256, help="rendered image size (the release uses 256)")
    parser.add_argument("--shards", type=int, default=None, help="TFRecord shards per split (default: up to 4, as many as each split can fill)")
    parser.add_argument("--scene-seed", type=int, default=0, help="which synthetic tabletop layout to render")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing dataset at --out")
    parser.add_argument(
        "--corrupt", action="append", default=[], metavar="KIND[:EPISODE]",
        help=f"after writing, damage train shard 0 episode EPISODE (default 0) on purpose; KIND in {', '.join(CORRUPTIONS)}",
    )
    args = parser.parse_args(argv)
    import tensorflow_datasets as tfds

    tfds.disable_progress_bar()
    start = time.perf_counter()
    try:
        path = make_synthetic_dataset(
            args.out, args.episodes, args.steps, args.seed, args.image_size, args.val_episodes,
            args.shards, args.scene_seed, args.overwrite,
        )
        for item in args.corrupt:
            kind, _, episode = item.partition(":")
            shard = corrupt_episode(path, kind, episode=int(episode or 0))
            print(f"corrupted {shard} episode {int(episode or 0)}: {kind}")
    except (ValueError, FileExistsError) as error:
        print(f"mqe-make-dataset: {error}", file=sys.stderr)
        return 2
    print(f"wrote {args.episodes} episodes x {args.steps} steps to {path} in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
