"""Goal-conditioned behaviour cloning (GCBC): the MQE actor trained by maximum likelihood alone,
loss = -mean log pi(a_i | s_i, g_i) with g the actor goals."""

from __future__ import annotations

import torch

from mqe.agents.base import Agent
from mqe.agents.common import GoalConditionedActor, detach_metrics, encode_together
from mqe.data import goal_sampling
from mqe.networks import get_trunk_config


def get_config() -> dict:
    return dict(
        agent_name="gcbc",  # registry name
        lr=3e-4,  # Adam learning rate (the trainer builds the optimiser from it)
        **get_trunk_config(),  # trunk, trunk_weights, small_conv_channels, state_trunk_dims
        layer_norm=True,  # LayerNorm in every critic and trunk MLP (Linear -> LN -> GELU)
        actor_layer_norm=True,  # LayerNorm in the actor MLP (the MQE release's GCActor has none)
        actor_hidden_dims=(256, 256, 256),  # policy MLP over [f(s), f(g)]
        const_std=True,  # actor std fixed at 1 (OGBench const_std); False learns a state-independent log std
        clip_actor_actions=False,  # clip the deterministic action to [-1, 1] (OGBench state tasks: True)
        goal_sampling=goal_sampling.get_config(),  # actor goals uniform over the rest of the trajectory
    )


class GCBCAgent(Agent):
    name = "gcbc"
    has_distance = False

    def __init__(self, config: dict, observation_spec, action_dim: int):
        super().__init__(config, observation_spec, action_dim)
        self.actor = GoalConditionedActor(config, self.observation_spec, action_dim)

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        features_s, features_g = encode_together(self.actor.trunk, batch["observations"], batch["actor_goals"])
        mean = self.actor.mean(features_s, features_g)
        log_prob = self.actor.log_prob(mean, batch["actions"])
        loss = -log_prob.mean()
        return loss, detach_metrics({
            "actor/loss": loss,
            "actor/bc_log_prob": log_prob.mean(),
            "actor/mse": (mean - batch["actions"]).square().mean(),
            "actor/std": self.actor.std_metric(),
            "total_loss": loss,
        })

