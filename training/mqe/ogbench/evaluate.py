"""OGBench evaluation: the maze's 5 fixed tasks, `episodes` episodes each, success from info['success'].

Episodes of one task run side by side in `episodes` environments so the policy sees a batch per
step. The environments are OGBench's evaluation defaults (terminate at the goal, 1000 steps), so an
episode's last `info['success']` says whether the goal was reached. Seeding covers the env's
reset noise and the global `np.random` (OGBench's start/goal noise); the caller's global
`np.random` state is restored afterwards.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

from mqe.ogbench.collect import make_env
from mqe.ogbench.maze import Maze

TASK_IDS = (1, 2, 3, 4, 5)
# policy(observations [B, obs_dim], goals [B, obs_dim]) -> actions [B, action_dim], float32 numpy
Policy = Callable[[np.ndarray, np.ndarray], np.ndarray]


@dataclasses.dataclass
class EvaluationResult:
    success_by_task: dict[int, float]  # task id -> success rate over its episodes
    episodes_per_task: int

    @property
    def success(self) -> float:
        return float(np.mean(list(self.success_by_task.values())))

    def metrics(self) -> dict[str, float]:
        metrics = {f"eval/task{task}_success": rate for task, rate in self.success_by_task.items()}
        metrics["eval/success"] = self.success
        return metrics


class Evaluator:
    def __init__(self, env_name: str, episodes_per_task: int, seed: int = 0, max_episode_steps: int | None = None):
        """`max_episode_steps` shortens OGBench's 1000-step episodes (smoke tests only)."""
        if episodes_per_task < 1:
            raise ValueError(f"evaluation: episodes_per_task must be >= 1, got {episodes_per_task}")
        limit = {} if max_episode_steps is None else {"max_episode_steps": max_episode_steps}
        self.envs = [make_env(env_name, **limit) for _ in range(episodes_per_task)]
        self.maze = Maze.from_env(self.envs[0])
        self.seed = seed

    def close(self) -> None:
        for env in self.envs:
            env.close()

    def evaluate(self, policy: Policy, tasks: tuple[int, ...] = TASK_IDS) -> EvaluationResult:
        saved_state = np.random.get_state()
        try:
            return EvaluationResult({task: self._run_task(policy, task) for task in tasks}, len(self.envs))
        finally:
            np.random.set_state(saved_state)

    def _run_task(self, policy: Policy, task: int) -> float:
        np.random.seed(self.seed * 1000 + task)
        observations, goals = [], []
        for n, env in enumerate(self.envs):
            observation, info = env.reset(seed=self.seed * 1000 + task * 100 + n, options=dict(task_id=task))
            observations.append(observation)
            goals.append(info["goal"])
        observations = np.asarray(observations, np.float32)
        goals = np.asarray(goals, np.float32)
        active = np.ones(len(self.envs), bool)
        success = np.zeros(len(self.envs))
        while active.any():
            running = np.nonzero(active)[0]
            actions = np.clip(policy(observations[running], goals[running]), -1.0, 1.0)
            for action, n in zip(actions, running):
                observation, _, terminated, truncated, info = self.envs[n].step(action)
                observations[n] = observation
                if terminated or truncated:
                    active[n] = False
                    success[n] = info["success"]
        return float(success.mean())


def expert_policy(maze: Maze) -> Policy:
    """The noiseless collection expert as a policy, a reference for the evaluator and the data. In the
    goal's cell it heads for the goal itself: the collection expert aims at cell centres, and the goal
    noise (up to 1 per axis) can put the goal beyond the success radius (1) of its cell's centre."""

    def direction(xy: np.ndarray, goal_xy: np.ndarray) -> np.ndarray:
        if maze.xy_to_ij(xy) == maze.xy_to_ij(goal_xy):
            offset = goal_xy - xy
            return offset / max(np.linalg.norm(offset), 1.0)
        return maze.expert_direction(xy, goal_xy)

    def act(observations: np.ndarray, goals: np.ndarray) -> np.ndarray:
        return np.stack([direction(o[:2], g[:2]) for o, g in zip(observations, goals)]).astype(np.float32)

    return act


def agent_policy(agent) -> Policy:
    """An `mqe.agents.base.Agent`'s deterministic action on CPU float32 state observations."""
    import torch

    def act(observations: np.ndarray, goals: np.ndarray) -> np.ndarray:
        was_training = agent.training
        agent.eval()
        device = next(agent.parameters()).device
        with torch.no_grad():
            actions = agent.act(torch.from_numpy(observations).to(device), torch.from_numpy(goals).to(device))
        agent.train(was_training)
        return actions.cpu().numpy().astype(np.float32)

    return act
