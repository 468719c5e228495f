"""The batch every dataset produces and every agent consumes (see mqe.agents.base for dtypes)."""

from __future__ import annotations

from typing import Callable

import numpy as np

from mqe.data.goal_sampling import GoalIndices

OBSERVATION_KEYS = ("observations", "next_observations", "waypoints", "value_goals", "actor_goals")
BATCH_KEYS = OBSERVATION_KEYS + ("actions", "waypoint_steps", "value_goal_steps")


def assemble_batch(
    fetch_observations: Callable[[np.ndarray], np.ndarray],
    actions: np.ndarray,
    index: np.ndarray,
    goals: GoalIndices,
) -> dict[str, np.ndarray]:
    """Gather one batch. `fetch_observations(indices)` returns observations for flat state indices;
    it is called once for all five observation roles so a dataset can decode each state only once."""
    batch_size = len(index)
    all_indices = np.concatenate([index, goals.next, goals.waypoint, goals.value_goal, goals.actor_goal])
    observations = fetch_observations(all_indices)
    batch = {key: observations[i * batch_size : (i + 1) * batch_size] for i, key in enumerate(OBSERVATION_KEYS)}
    batch["actions"] = np.asarray(actions[index], np.float32)
    batch["waypoint_steps"] = goals.waypoint_steps.astype(np.float32)
    batch["value_goal_steps"] = goals.value_goal_steps.astype(np.float32)
    return batch
