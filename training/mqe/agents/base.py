"""The interface every agent (MQE, GCBC, GCIQL, QRL) implements; the trainer and the exporter
only talk to agents through it.

A batch is a dict of tensors on the agent's device (see mqe.data.batch.BATCH_KEYS):
  observations, next_observations, waypoints, value_goals, actor_goals
        uint8 [B, S, S, 3] images (NHWC RGB, already resized/augmented) or float32 [B, obs_dim] states
  actions             float32 [B, A]  normalised actions
  waypoint_steps      float32 [B]     k' (steps from s_t to the waypoint), >= 1
  value_goal_steps    float32 [B]     steps from s_t to the value goal; 0 = current state, -1 = random state
"""

from __future__ import annotations

import torch
from torch import nn

from mqe.networks import as_observation_spec


class Agent(nn.Module):
    """Base class: forward(batch) returns (total loss, namespaced metrics)."""

    name: str = "agent"
    has_distance: bool = False  # True when the agent exports a quasimetric distance (MQE, QRL)

    def __init__(self, config: dict, observation_spec, action_dim: int):
        super().__init__()
        self.config = config
        self.observation_spec = as_observation_spec(observation_spec)  # ("image", size) | ("state", dim)
        self.action_dim = action_dim
        self.gamma = config["goal_sampling"]["gamma"]

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        raise NotImplementedError

    def after_optimizer_step(self) -> None:
        """Hook for target-network updates (GCIQL); default: nothing."""

    # --- inference / export: the goal side is separable so the robot encodes a goal once ---
    # Every agent's policy is an mqe.agents.common.GoalConditionedActor at `self.actor`.
    def encode_actor_goal(self, goals: torch.Tensor) -> torch.Tensor:
        """Goal observation -> features the policy is conditioned on."""
        return self.actor.encode_goal(goals)

    def act_from_goal_features(self, observations: torch.Tensor, actor_goal_features: torch.Tensor) -> torch.Tensor:
        """Deterministic (mean) action in normalised units."""
        return self.actor.act_from_goal_features(observations, actor_goal_features)

    def act(self, observations: torch.Tensor, goals: torch.Tensor) -> torch.Tensor:
        return self.act_from_goal_features(observations, self.encode_actor_goal(goals))

    def encode_critic_goal(self, goals: torch.Tensor) -> torch.Tensor:
        """Goal observation -> psi(g); only for agents with has_distance."""
        raise NotImplementedError

    def distance_to_goal_embedding(self, observations: torch.Tensor, critic_goal_embedding: torch.Tensor) -> torch.Tensor:
        """d(psi(s), psi(g)) [B], worst (largest) over the critic ensemble; only with has_distance."""
        raise NotImplementedError
