"""MQE learns: on random walks along a chain of cells its critic recovers the temporal distance
(steps between cells, in units of -log gamma) and prefers the action that moves toward the goal."""

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from mqe.agents import get_config, make_agent
from mqe.data.batch import assemble_batch
from mqe.data.goal_sampling import sample_goal_indices
from mqe.quasimetric import mrn_distance

CELLS = 12
EPISODES, EPISODE_STEPS = 200, 40
GAMMA = 0.9
TRAIN_STEPS, BATCH, LR = 300, 64, 3e-3


@pytest.fixture
def one_thread():
    """Tiny networks run far faster on one thread, above all on a loaded machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def random_walk_dataset(rng):
    """Flat arrays of cell indices and +-1 actions; the last state of each episode has no action."""
    cells, actions, final_index = [], [], []
    for episode in range(EPISODES):
        cell = int(rng.integers(CELLS))
        for _ in range(EPISODE_STEPS):
            step = int(rng.choice([-1, 1]))
            cells.append(cell)
            actions.append(step)
            cell = int(np.clip(cell + step, 0, CELLS - 1))
        cells.append(cell)
        actions.append(0)
        final_index += [(episode + 1) * (EPISODE_STEPS + 1) - 1] * (EPISODE_STEPS + 1)
    return np.array(cells), np.array(actions, np.float32)[:, None], np.array(final_index)


def test_mqe_critic_learns_chain_distances(one_thread):
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    cells, actions, final_index = random_walk_dataset(rng)
    one_hot = np.eye(CELLS, dtype=np.float32)
    transitions = np.flatnonzero(np.arange(len(cells)) < final_index)

    config = get_config("mqe")
    config.update(trunk="mlp", latent_dim=32, mrn_components=4, value_hidden_dims=(64, 64), actor_hidden_dims=(64, 64))
    config["goal_sampling"]["gamma"] = GAMMA
    agent = make_agent("mqe", config, ("state", CELLS), 1)
    optimizer = torch.optim.Adam(agent.parameters(), lr=LR)
    for _ in range(TRAIN_STEPS):
        index = rng.choice(transitions, BATCH)
        goals = sample_goal_indices(rng, index, final_index[index], len(cells), config["goal_sampling"])
        batch = assemble_batch(lambda i: one_hot[cells[i]], actions, index, goals)
        loss, metrics = agent({k: torch.from_numpy(v) for k, v in batch.items()})
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert torch.isfinite(loss)

    agent.eval()
    states = torch.from_numpy(one_hot)
    with torch.no_grad():
        embedding = agent.encode_critic_goal(states)
        distance = torch.stack(
            [agent.distance_to_goal_embedding(states, embedding[g].expand(CELLS, -1)) for g in range(CELLS)], dim=1
        ).numpy()  # [s, g]
        true_steps = np.abs(np.arange(CELLS)[:, None] - np.arange(CELLS)[None])
        off_diagonal = true_steps > 0
        correlation = spearmanr(distance[off_diagonal] / -np.log(GAMMA), true_steps[off_diagonal]).correlation
        assert correlation > 0.9

        # Q prefers the step toward the goal: d(phi(s, toward), psi(g)) < d(phi(s, away), psi(g))
        psi = agent.critic.psi(states)  # [E, cells, L]
        prefers_toward = []
        for s in range(1, CELLS - 1):
            for g in range(CELLS):
                if abs(g - s) < 2:
                    continue
                toward = 1.0 if g > s else -1.0
                phi = agent.critic.phi(torch.cat([states[[s, s]], torch.tensor([[toward], [-toward]])], dim=-1))
                d = mrn_distance(phi, psi[:, [g, g]], 4).amax(0)
                prefers_toward.append(bool(d[0] < d[1]))
        assert np.mean(prefers_toward) > 0.8
