"""Goal and waypoint sampling, shared by every dataset (BridgeData V2 and OGBench) and every agent.

Indices are global positions in a flat array of states where `final_index[i]` is the index of the
last state of i's trajectory. A transition (s_t, a_t, s_{t+1}) exists for every t < final_index[t].

For a transition at t in a trajectory ending at T (issue #2, paper Eq. 3 and 8):
  value goal       g = s_{t + min(K, T - t)},      K ~ Geom(1 - gamma), support {1, 2, ...}
  waypoint         w = s_{t + k'},  k' = min(Geom(1 - lambda), K, T - t); with probability p, k' = 1
  actor goal       uniform over s_{t+1} .. s_T (or geometric like the value goal, or s_T); with probability
                   actor_p_randomgoal a random dataset state (OGBench's stitch datasets: 0.5)
Baselines mix in the current state or a random dataset state as value goal (OGBench's
p_curgoal / p_trajgoal / p_randomgoal); MQE uses trajectory goals only.
"""

from __future__ import annotations

import dataclasses

import numpy as np


def get_config() -> dict:
    return dict(
        gamma=0.98,  # discount: value goals are K ~ Geom(1 - gamma) steps ahead
        waypoint_lambda=0.95,  # waypoint offsets are k' ~ Geom(1 - lambda), clipped to K
        p_next_waypoint=0.2,  # probability p that the waypoint is s_{t+1} (one-step backup)
        value_p_curgoal=0.0,  # probability the value goal is the current state (GCIQL)
        value_p_randomgoal=0.0,  # probability the value goal is a random dataset state (GCIQL, QRL)
        actor_goal="uniform",  # "uniform" over the rest of the trajectory, "geometric", or "final" (its last state)
        actor_p_randomgoal=0.0,  # probability the actor goal is a random dataset state (OGBench stitch: 0.5)
    )


@dataclasses.dataclass
class GoalIndices:
    next: np.ndarray  # t + 1
    value_goal: np.ndarray  # index of g
    value_goal_steps: np.ndarray  # t-to-g offset; 0 for current-state goals, -1 for random goals
    waypoint: np.ndarray  # index of w
    waypoint_steps: np.ndarray  # k' >= 1
    actor_goal: np.ndarray  # index of the actor's goal


def check_transition_indices(index: np.ndarray, final_index: np.ndarray) -> None:
    if np.any(index >= final_index):
        raise ValueError("goal sampling: every transition index must be before its trajectory's final index")


def sample_goal_indices(
    rng: np.random.Generator,
    index: np.ndarray,
    final_index: np.ndarray,
    num_states: int,
    config: dict,
) -> GoalIndices:
    """Sample value goals, waypoints and actor goals for transitions starting at `index`."""
    index = np.asarray(index, np.int64)
    final_index = np.asarray(final_index, np.int64)
    check_transition_indices(index, final_index)
    size = index.shape
    remaining = final_index - index  # T - t >= 1

    horizon = rng.geometric(1.0 - config["gamma"], size=size)  # K >= 1
    goal_steps = np.minimum(horizon, remaining)

    waypoint_steps = np.minimum(rng.geometric(1.0 - config["waypoint_lambda"], size=size), goal_steps)
    waypoint_steps = np.where(rng.random(size) < config["p_next_waypoint"], 1, waypoint_steps)

    value_goal = index + goal_steps
    value_goal_steps = goal_steps.copy()
    choice = rng.random(size)
    is_current = choice < config["value_p_curgoal"]
    is_random = (~is_current) & (choice < config["value_p_curgoal"] + config["value_p_randomgoal"])
    random_goal = rng.integers(0, num_states, size=size)
    value_goal = np.where(is_current, index, np.where(is_random, random_goal, value_goal))
    value_goal_steps = np.where(is_current, 0, np.where(is_random, -1, value_goal_steps))

    if config["actor_goal"] == "uniform":
        actor_steps = rng.integers(1, remaining + 1, size=size)
    elif config["actor_goal"] == "geometric":
        actor_steps = np.minimum(rng.geometric(1.0 - config["gamma"], size=size), remaining)
    elif config["actor_goal"] == "final":  # single-primitive data whose goal images are end states (mqe.sim)
        actor_steps = remaining
    else:
        raise ValueError(
            f"goal sampling: actor_goal must be 'uniform', 'geometric' or 'final', got {config['actor_goal']!r}")

    actor_goal = index + actor_steps
    if config["actor_p_randomgoal"] > 0:  # drawn only when used: runs without it keep their random stream
        is_random_actor_goal = rng.random(size) < config["actor_p_randomgoal"]
        actor_goal = np.where(is_random_actor_goal, rng.integers(0, num_states, size=size), actor_goal)

    return GoalIndices(
        next=index + 1,
        value_goal=value_goal,
        value_goal_steps=value_goal_steps,
        waypoint=index + waypoint_steps,
        waypoint_steps=waypoint_steps,
        actor_goal=actor_goal,
    )
