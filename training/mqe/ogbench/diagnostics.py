"""Is the critic a quasimetric of the maze? Diagnostics for agents with `has_distance` (MQE, QRL).

- `distance_rank_correlation`: Spearman correlation between the critic's d(s, g) and the true BFS
  shortest-path distance between the cells of s and g, over random pairs of dataset states.
- `expert_path_distances`: d(s_t, g) along the noiseless expert's path of each evaluation task
  against the steps still to go (a quasimetric critic falls monotonically along it).
- `plot_distance_heatmap`: d(s, g) for s on a grid over the maze to one fixed goal, as a PNG.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from mqe.ogbench.maze import Maze


def critic_distances(agent, observations: np.ndarray, goals: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """d(psi(s_i), psi(g_i)) [N] from the agent's exported distance path (worst ensemble member)."""
    if not agent.has_distance:
        raise ValueError(f"{agent.name}: has no quasimetric distance to diagnose")
    device = next(agent.parameters()).device
    was_training = agent.training
    agent.eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(observations), chunk):
            s = torch.as_tensor(observations[start : start + chunk], dtype=torch.float32, device=device)
            g = torch.as_tensor(goals[start : start + chunk], dtype=torch.float32, device=device)
            out.append(agent.distance_to_goal_embedding(s, agent.encode_critic_goal(g)).cpu().numpy())
    agent.train(was_training)
    return np.concatenate(out)


def distance_rank_correlation(
    agent, maze: Maze, states: np.ndarray, rng: np.random.Generator, pairs: int = 2000
) -> float:
    """Spearman rho between d(s, g) and BFS cell distance over `pairs` random (s, g) from `states`."""
    from scipy.stats import spearmanr

    cells = maze.xy_to_cell_numbers(states[:, :2])
    states, cells = states[cells >= 0], cells[cells >= 0]
    first, second = rng.integers(len(states), size=(2, pairs))
    true_distance = maze.distances[cells[first], cells[second]]
    predicted = critic_distances(agent, states[first], states[second])
    return float(spearmanr(predicted, true_distance).statistic)


def expert_path_distances(agent, env_name: str, tasks=(1, 2, 3, 4, 5), seed: int = 0) -> dict[int, dict]:
    """Per evaluation task: roll the noiseless expert (mqe.ogbench.evaluate.expert_policy) from the
    task's start to its goal once and compare the critic's d(s_t, g) with the steps still to go:
    Spearman rho, d at the start and at the end, and the fraction of steps on which d falls."""
    from scipy.stats import spearmanr

    from mqe.ogbench.collect import make_env
    from mqe.ogbench.evaluate import expert_policy

    env = make_env(env_name)
    expert = expert_policy(Maze.from_env(env))
    out = {}
    try:
        for task in tasks:
            observation, info = env.reset(seed=seed * 1000 + task, options=dict(task_id=task))
            goal = np.asarray(info["goal"], np.float32)
            path, done, success = [np.asarray(observation, np.float32)], False, False
            while not done:
                observation, _, terminated, truncated, info = env.step(expert(path[-1][None], goal[None])[0])
                path.append(np.asarray(observation, np.float32))
                done, success = terminated or truncated, bool(info["success"])
            path = np.stack(path)
            d = critic_distances(agent, path, np.repeat(goal[None], len(path), axis=0))
            steps_to_go = np.arange(len(path))[::-1]
            out[task] = dict(
                path_steps=len(path) - 1,
                expert_success=success,
                spearman_steps_to_go=float(spearmanr(d, steps_to_go).statistic),
                d_start=float(d[0]),
                d_end=float(d[-1]),
                fraction_decreasing=float(np.mean(np.diff(d) < 0)),
            )
    finally:
        env.close()
    return out


def free_space_grid(maze: Maze, resolution: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """x, y axes covering the maze and a [len(y), len(x)] mask of points inside free cells."""
    low = maze.ij_to_xy((0, 0)) - maze.unit / 2
    high = maze.ij_to_xy((maze.map.shape[0] - 1, maze.map.shape[1] - 1)) + maze.unit / 2
    xs = np.arange(low[0] + resolution / 2, high[0], resolution)
    ys = np.arange(low[1] + resolution / 2, high[1], resolution)
    grid = np.stack(np.meshgrid(xs, ys), axis=-1).reshape(-1, 2)
    free = (maze.xy_to_cell_numbers(grid) >= 0).reshape(len(ys), len(xs))
    return xs, ys, free


def plot_distance_heatmap(
    agent, maze: Maze, goal_xy: np.ndarray, path: Path | str, resolution: float = 0.25, title: str = ""
) -> Path:
    """PNG of d(s, goal) over the free space of the maze (walls blank, the goal starred)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs, ys, free = free_space_grid(maze, resolution)
    points = np.stack(np.meshgrid(xs, ys), axis=-1).reshape(-1, 2).astype(np.float32)
    goals = np.tile(np.asarray(goal_xy, np.float32)[:2], (len(points), 1))
    distance = critic_distances(agent, points, goals).reshape(free.shape)
    distance = np.where(free, distance, np.nan)

    figure, axes = plt.subplots(figsize=(6, 5 * len(ys) / len(xs) + 0.4))
    image = axes.imshow(distance, origin="lower", extent=(xs[0], xs[-1], ys[0], ys[-1]), cmap="viridis")
    axes.plot(*np.asarray(goal_xy)[:2], marker="*", color="red", markersize=14)
    figure.colorbar(image, ax=axes, label="d(s, g)")
    axes.set_title(title or f"{agent.name}: d(s, g) to the starred goal", fontsize=10)
    axes.set_xticks([])
    axes.set_yticks([])
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=80, bbox_inches="tight")
    plt.close(figure)
    return path
