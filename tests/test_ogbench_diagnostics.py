"""mqe.ogbench.diagnostics.expert_path_distances: the noiseless expert's path of each evaluation task
in the real OGBench env, with a critic's d(s_t, g) against the steps still to go."""

import torch

from mqe.agents.base import Agent
from mqe.ogbench.diagnostics import expert_path_distances


class EuclideanCritic(Agent):
    """A stand-in critic whose distance is the straight-line distance of the 2-D positions."""

    name = "euclidean"
    has_distance = True

    def __init__(self):
        super().__init__({"goal_sampling": {"gamma": 0.99}}, ("state", 4), 2)
        self.unused = torch.nn.Parameter(torch.zeros(()))  # critic_distances reads the device from a parameter

    def encode_critic_goal(self, goals):
        return goals[:, :2]

    def distance_to_goal_embedding(self, observations, critic_goal_embedding):
        return torch.linalg.vector_norm(observations[:, :2] - critic_goal_embedding, dim=-1)


def test_expert_paths_reach_every_goal_and_report_the_distance_along_them():
    rows = expert_path_distances(EuclideanCritic(), "pointmaze-medium-v0", tasks=(1, 2), seed=0)
    assert set(rows) == {1, 2}
    for row in rows.values():
        assert row["expert_success"] and 0 < row["path_steps"] < 1000
        assert row["d_end"] < 1.0 < row["d_start"]  # success radius 1 in OGBench's pointmaze
        assert -1.0 <= row["spearman_steps_to_go"] <= 1.0 and 0.0 < row["fraction_decreasing"] <= 1.0
