"""Goal, waypoint and actor-goal sampling distributions (issue #2 'Sampling per transition')."""

import numpy as np
import pytest

from mqe.data.goal_sampling import get_config, sample_goal_indices

SAMPLES = 200_000


def long_trajectory(length=100_000):
    """One trajectory so long that clipping at T practically never happens for t = 0."""
    return np.zeros(SAMPLES, np.int64), np.full(SAMPLES, length, np.int64), length + 1


def test_value_goal_offset_is_geometric_from_one():
    config = get_config()
    index, final, num_states = long_trajectory()
    goals = sample_goal_indices(np.random.default_rng(0), index, final, num_states, config)
    steps = goals.value_goal_steps
    assert steps.min() == 1  # support starts at 1: the value goal is never the current state
    expected_mean = 1 / (1 - config["gamma"])  # 50 steps for gamma = 0.98
    assert steps.mean() == pytest.approx(expected_mean, rel=0.01)
    assert np.mean(steps == 1) == pytest.approx(1 - config["gamma"], abs=0.002)
    assert np.array_equal(goals.value_goal, index + steps)
    assert np.array_equal(goals.next, index + 1)


def test_value_goal_is_clipped_at_trajectory_end():
    config = get_config()
    t, end = 95, 100  # T - t = 5
    goals = sample_goal_indices(
        np.random.default_rng(1), np.full(SAMPLES, t), np.full(SAMPLES, end), end + 1, config
    )
    assert goals.value_goal.max() == end and goals.value_goal_steps.max() == end - t
    # s_T is the goal whenever K >= T - t: P = gamma^(T - t - 1)
    assert np.mean(goals.value_goal == end) == pytest.approx(config["gamma"] ** 4, abs=0.005)


def test_waypoint_never_passes_goal_or_trajectory_end():
    config = get_config()
    rng = np.random.default_rng(2)
    final = rng.integers(1, 60, size=SAMPLES)
    index = (final * rng.random(SAMPLES)).astype(np.int64)
    index = np.minimum(index, final - 1)
    goals = sample_goal_indices(rng, index, final, 100, config)
    assert np.all(goals.waypoint_steps >= 1)
    assert np.all(goals.waypoint_steps <= goals.value_goal_steps)  # k' <= min(K, T - t)
    assert np.all(goals.waypoint <= final)
    assert np.array_equal(goals.waypoint, index + goals.waypoint_steps)


def test_probability_of_next_state_waypoint():
    config = get_config()
    p, lam, gamma = config["p_next_waypoint"], config["waypoint_lambda"], config["gamma"]
    index, final, num_states = long_trajectory()
    goals = sample_goal_indices(np.random.default_rng(3), index, final, num_states, config)
    # k' = 1 when the Bernoulli(p) fires, or when min(Geom(1 - lambda), K) = 1
    assert np.mean(goals.waypoint_steps == 1) == pytest.approx(p + (1 - p) * (1 - lam * gamma), abs=0.004)
    # with gamma -> 1 this is the p + (1 - p)(1 - lambda)
    config["gamma"] = 0.99999
    goals = sample_goal_indices(np.random.default_rng(4), index, final, num_states, config)
    assert np.mean(goals.waypoint_steps == 1) == pytest.approx(p + (1 - p) * (1 - lam), abs=0.004)
    # without the Bernoulli, offsets beyond 1 follow Geom(1 - lambda): mean 1 / (1 - lambda)
    config.update(p_next_waypoint=0.0)
    goals = sample_goal_indices(np.random.default_rng(5), index, final, num_states, config)
    assert goals.waypoint_steps.mean() == pytest.approx(1 / (1 - lam), rel=0.02)


def test_actor_goals_uniform_over_rest_of_trajectory():
    config = get_config()
    t, end = 10, 15
    goals = sample_goal_indices(np.random.default_rng(6), np.full(SAMPLES, t), np.full(SAMPLES, end), 20, config)
    counts = np.bincount(goals.actor_goal, minlength=20)
    assert counts[: t + 1].sum() == 0 and counts[end + 1 :].sum() == 0
    assert np.allclose(counts[t + 1 : end + 1] / SAMPLES, 1 / 5, atol=0.005)
    config["actor_goal"] = "geometric"
    goals = sample_goal_indices(np.random.default_rng(7), np.full(SAMPLES, t), np.full(SAMPLES, end), 20, config)
    assert goals.actor_goal.min() == t + 1 and goals.actor_goal.max() == end
    assert np.mean(goals.actor_goal == t + 1) == pytest.approx(1 - config["gamma"], abs=0.003)


def test_current_and_random_goal_mixing():
    config = get_config()
    config.update(value_p_curgoal=0.2, value_p_randomgoal=0.3)
    rng = np.random.default_rng(8)
    index = rng.integers(0, 900, size=SAMPLES)
    final = np.full(SAMPLES, 999)
    goals = sample_goal_indices(rng, index, final, 5000, config)
    current = goals.value_goal_steps == 0
    random = goals.value_goal_steps == -1
    assert current.mean() == pytest.approx(0.2, abs=0.005)
    assert random.mean() == pytest.approx(0.3, abs=0.005)
    assert np.array_equal(goals.value_goal[current], index[current])
    assert goals.value_goal[random].max() > 999  # random goals come from the whole dataset
    traj = ~current & ~random
    assert np.array_equal(goals.value_goal[traj], index[traj] + goals.value_goal_steps[traj])
    assert np.all(goals.waypoint_steps >= 1)


def test_random_actor_goals_mix_in_dataset_states_without_touching_value_goals():
    config = get_config()
    rng_args = (np.arange(0, 900, 3), np.full(300, 999), 5000)
    plain = sample_goal_indices(np.random.default_rng(9), *rng_args, config)
    config["actor_p_randomgoal"] = 0.5
    index = np.repeat(np.arange(0, 900, 3), SAMPLES // 300)
    goals = sample_goal_indices(np.random.default_rng(9), index, np.full(len(index), 999), 5000, config)
    # half of the goals are random dataset states, and 4/5 of those lie beyond this trajectory's 1000
    assert np.mean(goals.actor_goal > 999) == pytest.approx(0.5 * 4000 / 5000, abs=0.01)
    assert goals.actor_goal.max() >= 4000
    assert np.all(goals.value_goal_steps >= 1) and np.all(goals.value_goal <= 999)  # value goals unchanged
    again = sample_goal_indices(np.random.default_rng(9), *rng_args, get_config())
    assert np.array_equal(plain.actor_goal, again.actor_goal)  # p = 0 draws nothing extra


def test_rejects_transitions_at_trajectory_end():
    with pytest.raises(ValueError, match="final index"):
        sample_goal_indices(np.random.default_rng(0), np.array([5]), np.array([5]), 10, get_config())
    config = get_config()
    config["actor_goal"] = "last"
    with pytest.raises(ValueError, match="actor_goal"):
        sample_goal_indices(np.random.default_rng(0), np.array([1]), np.array([5]), 10, config)
