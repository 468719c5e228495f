"""Collect OGBench pointmaze datasets with OGBench's recipe, written by this project (OGBench's own
files cannot be downloaded here).

Recipe (OGBench `data_gen_scripts/generate_locomaze.py`, pointmaze): the environment runs with
`terminate_at_goal=False` and a time limit of `episode_steps`; a noisy expert moves toward the
centre of the neighbouring cell with the smallest BFS distance to its goal: action = unit direction
+ N(0, noise^2), clipped to [-1, 1].
  navigate  start in a random free cell, goal a random non-corridor cell; on success a new goal.
  stitch    start in a random free cell, goal a random cell exactly 4 BFS steps away (short
            segments only, so long tasks require stitching).
`episodes` training episodes are followed by episodes // 10 validation episodes, saved as
`<name>.npz` and `<name>-val.npz` in OGBench's layout: observations, actions, terminals (bool,
true on each episode's last step), qpos, qvel.

Deterministic given the seed: it seeds our generator, the env (`reset(seed=)`, action space) and
the global `np.random`, which OGBench uses for start/goal noise.

    python -m mqe.ogbench.collect --dataset pointmaze-medium-stitch [--episodes 100 --steps 201]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import time
from pathlib import Path
from typing import Callable

import numpy as np

from mqe.files import atomic_write_bytes
from mqe.ogbench.maze import Maze

DATA_DIR_ENV = "MQE_DATA_DIR"
DEFAULT_DATA_DIR = "~/.cache/mqe/ogbench"
DATASET_KEYS = ("observations", "actions", "terminals", "qpos", "qvel")
STITCH_GOAL_STEPS = 4  # stitch goals are exactly this many BFS steps from the start cell
DATASET_NAME = re.compile(r"^(?P<env>pointmaze)-(?P<maze>medium|large|giant)-(?P<kind>navigate|stitch)(?:-v0)?$")


def default_data_dir() -> Path:
    return Path(os.environ.get(DATA_DIR_ENV, DEFAULT_DATA_DIR)).expanduser()


@dataclasses.dataclass(frozen=True)
class Recipe:
    dataset: str  # OGBench dataset name, e.g. "pointmaze-medium-stitch-v0"
    episodes: int  # training episodes; episodes // 10 validation episodes follow
    episode_steps: int  # steps per episode (OGBench's max_episode_steps)
    noise: float = 0.5  # std of the Gaussian action noise
    seed: int = 0  # seeds the expert, the env and np.random

    @property
    def env_name(self) -> str:
        return parse_dataset_name(self.dataset)[0]

    @property
    def kind(self) -> str:
        return parse_dataset_name(self.dataset)[1]

    @property
    def val_episodes(self) -> int:
        return self.episodes // 10

    def file_stem(self) -> str:
        """OGBench's file name for the standard recipe; a suffix naming the settings otherwise, so a
        small test collection never shadows a full one."""
        if self == default_recipe(self.dataset):
            return self.dataset
        noise = f"-noise{self.noise:g}" if self.noise != 0.5 else ""
        return f"{self.dataset}-{self.episodes}x{self.episode_steps}{noise}-seed{self.seed}"


def parse_dataset_name(name: str) -> tuple[str, str]:
    """'pointmaze-medium-stitch[-v0]' -> ('pointmaze-medium-v0', 'stitch')."""
    match = DATASET_NAME.match(name)
    if match is None:
        raise ValueError(
            f"dataset {name!r}: expected pointmaze-{{medium,large,giant}}-{{navigate,stitch}}[-v0]"
        )
    return f"{match['env']}-{match['maze']}-v0", match["kind"]


def canonical_dataset_name(name: str) -> str:
    env_name, kind = parse_dataset_name(name)
    return env_name.replace("-v0", f"-{kind}-v0")


def default_recipe(dataset: str, seed: int = 0) -> Recipe:
    dataset = canonical_dataset_name(dataset)
    env_name, kind = parse_dataset_name(dataset)
    if kind == "stitch":
        return Recipe(dataset, episodes=5000, episode_steps=201, seed=seed)
    if "giant" in env_name:
        return Recipe(dataset, episodes=500, episode_steps=2001, seed=seed)
    return Recipe(dataset, episodes=1000, episode_steps=1001, seed=seed)


def make_env(env_name: str, **kwargs):
    import gymnasium
    import ogbench  # noqa: F401  (registers the environments)

    return gymnasium.make(env_name, **kwargs)


def collect(recipe: Recipe, progress: Callable[[int, int], None] | None = None) -> dict[str, np.ndarray]:
    """Run the noisy expert for train + validation episodes; arrays over all steps in order."""
    env = make_env(recipe.env_name, terminate_at_goal=False, max_episode_steps=recipe.episode_steps)
    maze_env = env.unwrapped
    maze = Maze.from_env(env)
    rng = np.random.default_rng(recipe.seed)
    np.random.seed(recipe.seed)
    env.action_space.seed(recipe.seed)
    free_cells, vertex_cells = maze.free_cells, maze.vertex_cells()

    total_episodes = recipe.episodes + recipe.val_episodes
    columns: dict[str, list] = {key: [] for key in DATASET_KEYS}
    for episode in range(total_episodes):
        start = free_cells[rng.integers(len(free_cells))]
        if recipe.kind == "navigate":
            goal = vertex_cells[rng.integers(len(vertex_cells))]
        else:
            nearby = maze.cells_at_distance(start, STITCH_GOAL_STEPS)
            goal = nearby[rng.integers(len(nearby))] if nearby else start
        observation, _ = env.reset(
            seed=recipe.seed if episode == 0 else None, options=dict(task_info=dict(init_ij=start, goal_ij=goal))
        )
        done = False
        while not done:
            direction = maze.expert_direction(maze_env.get_xy(), maze_env.cur_goal_xy)
            action = np.clip(direction + rng.normal(0.0, recipe.noise, 2), -1.0, 1.0)
            next_observation, _, terminated, truncated, info = env.step(action)
            done = terminated or truncated
            if info["success"] and recipe.kind == "navigate":
                maze_env.set_goal(vertex_cells[rng.integers(len(vertex_cells))])
            columns["observations"].append(observation)
            columns["actions"].append(action)
            columns["terminals"].append(done)
            columns["qpos"].append(info["prev_qpos"])
            columns["qvel"].append(info["prev_qvel"])
            observation = next_observation
        if progress is not None:
            progress(episode + 1, total_episodes)
    env.close()
    return {
        key: np.asarray(values, bool if key == "terminals" else np.float32) for key, values in columns.items()
    }


def split_train_val(arrays: dict[str, np.ndarray], recipe: Recipe) -> tuple[dict, dict]:
    """The first `episodes` episodes train, the rest validate (every episode has `episode_steps` steps)."""
    train_steps = recipe.episodes * recipe.episode_steps
    return {k: v[:train_steps] for k, v in arrays.items()}, {k: v[train_steps:] for k, v in arrays.items()}


def save_npz_atomic(path: Path, arrays: dict[str, np.ndarray]) -> None:
    atomic_write_bytes(path, lambda file: np.savez_compressed(file, **arrays))


def dataset_paths(recipe: Recipe, data_dir: Path | str | None = None) -> tuple[Path, Path]:
    data_dir = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
    stem = recipe.file_stem()
    return data_dir / f"{stem}.npz", data_dir / f"{stem}-val.npz"


def ensure_dataset(
    recipe: Recipe, data_dir: Path | str | None = None, log: Callable[[str], None] = print
) -> tuple[Path, Path]:
    """Paths of the train/val files, collecting them first unless both are already there."""
    train_path, val_path = dataset_paths(recipe, data_dir)
    if train_path.exists() and val_path.exists():
        log(f"reusing {train_path} and {val_path.name}")
        return train_path, val_path
    log(f"collecting {recipe} into {train_path.parent}")
    started = time.perf_counter()
    arrays = collect(recipe)
    seconds = time.perf_counter() - started
    steps = len(arrays["terminals"])
    train, val = split_train_val(arrays, recipe)
    save_npz_atomic(val_path, val)
    save_npz_atomic(train_path, train)
    stats = dict(recipe=dataclasses.asdict(recipe), steps=steps, seconds=round(seconds, 2), steps_per_second=round(steps / seconds))
    atomic_write_bytes(train_path.with_suffix(".json"), lambda file: file.write((json.dumps(stats, indent=2) + "\n").encode()))
    log(f"collected {steps} steps in {seconds:.1f} s ({steps / seconds:.0f} steps/s)")
    return train_path, val_path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", required=True, help="pointmaze-{medium,large,giant}-{navigate,stitch}")
    parser.add_argument("--episodes", type=int, help="training episodes (default: OGBench's)")
    parser.add_argument("--steps", type=int, help="steps per episode (default: OGBench's)")
    parser.add_argument("--noise", type=float, default=0.5, help="expert action noise std")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", help=f"default ${DATA_DIR_ENV} or {DEFAULT_DATA_DIR}")
    args = parser.parse_args(argv)
    recipe = default_recipe(args.dataset, seed=args.seed)
    recipe = dataclasses.replace(
        recipe,
        episodes=args.episodes or recipe.episodes,
        episode_steps=args.steps or recipe.episode_steps,
        noise=args.noise,
    )
    ensure_dataset(recipe, args.data_dir)


if __name__ == "__main__":
    main()
