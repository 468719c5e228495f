"""OGBench pointmaze: maze BFS, the collector's recipe and files, the evaluator, the in-memory dataset,
the quasimetric diagnostics."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from mqe.data.batch import BATCH_KEYS
from mqe.data.goal_sampling import get_config as goal_sampling_config
from mqe.ogbench.collect import (
    DATASET_KEYS,
    Recipe,
    collect,
    dataset_paths,
    default_recipe,
    ensure_dataset,
    make_env,
)
from mqe.ogbench.dataset import OGBenchDataset, final_indices
from mqe.ogbench.diagnostics import distance_rank_correlation, plot_distance_heatmap
from mqe.ogbench.evaluate import Evaluator, expert_policy
from mqe.ogbench.maze import UNREACHABLE, Maze

# 0 = free, 1 = wall; the cell (3, 5) is free but walled in.
HAND_MAZE = np.array(
    [
        [1, 1, 1, 1, 1, 1, 1],
        [1, 0, 0, 0, 1, 0, 1],
        [1, 0, 1, 0, 1, 0, 1],
        [1, 0, 1, 0, 0, 0, 1],
        [1, 1, 1, 1, 1, 1, 1],
    ]
)


@pytest.fixture(scope="module")
def medium_maze() -> Maze:
    return Maze.from_env(make_env("pointmaze-medium-v0"))


def test_bfs_on_hand_made_maze_gives_known_distances():
    maze = Maze(HAND_MAZE)
    grid = maze.bfs((1, 1))
    # path (1,1) (1,2) (1,3) (2,3) (3,3) (3,4) (3,5) (2,5) (1,5)
    assert grid[1, 3] == 2 and grid[3, 3] == 4 and grid[3, 5] == 6 and grid[1, 5] == 8
    assert grid[3, 1] == 2  # the dead end below the start
    assert (grid[HAND_MAZE == 1] == UNREACHABLE).all()
    assert maze.oracle_next_cell((1, 3), (1, 5)) == (2, 3)  # around the wall, not through it
    assert maze.oracle_next_cell((1, 5), (1, 5)) == (1, 5)
    assert sorted(maze.cells_at_distance((1, 1), 4)) == [(3, 3)]


def test_bfs_on_pointmaze_medium_is_a_consistent_shortest_path_metric(medium_maze):
    d = medium_maze.distances
    assert (d >= 0).all() and (np.diag(d) == 0).all()
    assert (d == d.T).all()
    cells = medium_maze.free_cells
    for a, b in itertools.product(range(len(cells)), repeat=2):
        if abs(cells[a][0] - cells[b][0]) + abs(cells[a][1] - cells[b][1]) == 1:
            assert d[a, b] == 1
    for goal in range(len(cells)):  # every non-goal cell has a neighbour exactly one step closer
        for a in range(len(cells)):
            if a != goal:
                closer = [d[n, goal] for n in range(len(cells)) if d[a, n] == 1]
                assert min(closer) == d[a, goal] - 1
    walls = np.argwhere(medium_maze.map == 1)
    grid = medium_maze.bfs(cells[0])
    assert all(grid[tuple(w)] == UNREACHABLE for w in walls)


def test_oracle_matches_ogbench_get_oracle_subgoal(medium_maze):
    env = make_env("pointmaze-medium-v0").unwrapped
    rng = np.random.default_rng(0)
    for _ in range(50):
        start, goal = (medium_maze.free_cells[k] for k in rng.integers(len(medium_maze.free_cells), size=2))
        xy = medium_maze.ij_to_xy(start) + rng.uniform(-1.5, 1.5, 2)
        expected, _ = env.get_oracle_subgoal(xy, medium_maze.ij_to_xy(goal))
        assert np.allclose(medium_maze.ij_to_xy(medium_maze.oracle_next_cell(medium_maze.xy_to_ij(xy), goal)), expected)


def test_collector_is_deterministic_and_follows_the_recipe():
    recipe = Recipe("pointmaze-medium-stitch-v0", episodes=10, episode_steps=40, seed=3)
    first, second = collect(recipe), collect(recipe)
    assert all(np.array_equal(first[key], second[key]) for key in DATASET_KEYS)
    other = collect(Recipe("pointmaze-medium-stitch-v0", episodes=10, episode_steps=40, seed=4))
    assert not np.array_equal(first["observations"], other["observations"])
    steps = (10 + 1) * 40
    assert first["observations"].shape == (steps, 2) and first["actions"].shape == (steps, 2)
    assert np.abs(first["actions"]).max() <= 1.0
    assert np.array_equal(np.nonzero(first["terminals"])[0], np.arange(39, steps, 40))
    # consecutive states are linked by the action (point mass: xy += 0.2 * action) unless a wall stops it
    moved = np.linalg.norm(first["observations"][1:40] - first["observations"][:39], axis=1)
    assert moved.max() <= 0.2 * np.sqrt(2) + 1e-4


def test_default_recipes_match_ogbench():
    assert default_recipe("pointmaze-medium-navigate") == Recipe("pointmaze-medium-navigate-v0", 1000, 1001)
    assert default_recipe("pointmaze-giant-navigate-v0") == Recipe("pointmaze-giant-navigate-v0", 500, 2001)
    assert default_recipe("pointmaze-large-stitch") == Recipe("pointmaze-large-stitch-v0", 5000, 201)
    with pytest.raises(ValueError, match="pointmaze-"):
        default_recipe("antmaze-medium-navigate")


def test_npz_files_layout_dtypes_and_val_split(tmp_path):
    recipe = Recipe("pointmaze-medium-navigate-v0", episodes=20, episode_steps=30, seed=0)
    train_path, val_path = ensure_dataset(recipe, tmp_path, log=lambda _: None)
    assert (train_path, val_path) == dataset_paths(recipe, tmp_path)
    assert train_path.name == "pointmaze-medium-navigate-v0-20x30-seed0.npz"
    assert val_path.name == "pointmaze-medium-navigate-v0-20x30-seed0-val.npz"
    with np.load(train_path) as train, np.load(val_path) as val:
        assert sorted(train.files) == sorted(DATASET_KEYS) == sorted(val.files)
        assert train["observations"].dtype == np.float32 and train["actions"].dtype == np.float32
        assert train["terminals"].dtype == bool
        assert train["observations"].shape == (20 * 30, 2) and val["observations"].shape == (2 * 30, 2)
        assert train["terminals"].sum() == 20 and val["terminals"].sum() == 2
        train_observations = train["observations"].copy()
    # reused, not collected again, when present
    mtime = train_path.stat().st_mtime_ns
    assert ensure_dataset(recipe, tmp_path, log=lambda _: None) == (train_path, val_path)
    assert train_path.stat().st_mtime_ns == mtime
    assert not list(tmp_path.glob("*.tmp"))
    dataset = OGBenchDataset(train_path, batch_size=16, goal_config=goal_sampling_config(), seed=0)
    assert np.array_equal(dataset.observations, train_observations)


def test_noiseless_expert_solves_the_evaluation_tasks_and_a_still_policy_does_not():
    evaluator = Evaluator("pointmaze-medium-v0", episodes_per_task=2, seed=0)
    assert evaluator.evaluate(expert_policy(evaluator.maze)).success == 1.0
    still = evaluator.evaluate(lambda observations, goals: np.zeros((len(observations), 2), np.float32))
    assert still.success == 0.0
    evaluator.close()


def test_dataset_batches_stay_inside_trajectories_and_resume_identically(tmp_path):
    terminals = np.zeros(30, bool)
    terminals[[9, 19, 29]] = True
    observations = np.stack([np.arange(30), np.arange(30) // 10], axis=1).astype(np.float32)
    path = tmp_path / "toy.npz"
    np.savez(path, observations=observations, actions=np.zeros((30, 2), np.float32), terminals=terminals)
    assert np.array_equal(final_indices(terminals), np.repeat([9, 19, 29], 10))
    dataset = OGBenchDataset(path, batch_size=64, goal_config=goal_sampling_config(), seed=1)
    state = dataset.state_dict()
    batch = dataset.next_batch()
    assert set(batch) == set(BATCH_KEYS)
    trajectory = batch["observations"][:, 1]
    assert not np.isin(batch["observations"][:, 0], [9, 19, 29]).any()  # last states start no transition
    for key in ("next_observations", "waypoints", "value_goals", "actor_goals"):
        assert np.array_equal(batch[key][:, 1], trajectory)
        assert (batch[key][:, 0] > batch["observations"][:, 0]).all()
    assert np.array_equal(batch["waypoints"][:, 0] - batch["observations"][:, 0], batch["waypoint_steps"])
    dataset.load_state_dict(state)
    again = dataset.next_batch()
    assert all(np.array_equal(batch[key], again[key]) for key in BATCH_KEYS)


def test_dataset_rejects_malformed_files(tmp_path):
    path = tmp_path / "bad.npz"
    np.savez(path, observations=np.zeros((5, 2), np.float32), terminals=np.ones(5, bool))
    with pytest.raises(ValueError, match=r"bad\.npz.*missing.*actions"):
        OGBenchDataset(path, 4, goal_sampling_config())
    np.savez(path, observations=np.zeros((5, 2)), actions=np.zeros((5, 2)), terminals=np.zeros(5, bool))
    with pytest.raises(ValueError, match="terminals"):
        OGBenchDataset(path, 4, goal_sampling_config())
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="junk.npz"):
        OGBenchDataset(tmp_path / "junk.npz", 4, goal_sampling_config())


class CellDistanceCritic(torch.nn.Module):
    """A critic whose distance is a given function of the two positions (to check the diagnostics)."""

    name = "cell_distance"
    has_distance = True

    def __init__(self, distance):
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(1))  # gives the module a device
        self.distance = distance

    def encode_critic_goal(self, goals):
        return goals

    def distance_to_goal_embedding(self, observations, goals):
        return torch.as_tensor(self.distance(observations.numpy(), goals.numpy()), dtype=torch.float32)


def test_spearman_diagnostic_is_one_for_the_true_distance_and_near_zero_for_noise(medium_maze, tmp_path):
    rng = np.random.default_rng(0)
    states = np.concatenate(
        [medium_maze.ij_to_xy(cell) + rng.uniform(-1.5, 1.5, (20, 2)) for cell in medium_maze.free_cells]
    ).astype(np.float32)

    def bfs_distance(s, g):
        return medium_maze.distances[medium_maze.xy_to_cell_numbers(s), medium_maze.xy_to_cell_numbers(g)]

    true_critic = CellDistanceCritic(bfs_distance)
    assert distance_rank_correlation(true_critic, medium_maze, states, rng, pairs=500) == pytest.approx(1.0)
    noise_critic = CellDistanceCritic(lambda s, g: rng.random(len(s)))
    assert abs(distance_rank_correlation(noise_critic, medium_maze, states, rng, pairs=2000)) < 0.1
    path = plot_distance_heatmap(true_critic, medium_maze, medium_maze.ij_to_xy((6, 6)), tmp_path / "d.png")
    assert path.stat().st_size > 1000
