"""Goal-conditioned implicit Q-learning (GCIQL), following OGBench's impls/agents/gciql.py.

Critic trunk f (shared by Q and V), an ensemble of Q(s, a, g) = MLP([f(s), a, f(g)]) and
V(s, g) = MLP([f(s), f(g)]); the actor has its own trunk. Reward 0 at the goal, else -1:
  value   expectile regression of V(s, g) towards min_e Q_target(s, a, g)
  critic  Q_e(s, a, g) -> r + gamma * mask * V(s', g),   mask = 0 at the goal
  actor   "ddpgbc": -mean(q)/stopgrad(mean|q|) - alpha mean log pi, q = min_e Q(s, pi(s, g), g)
          "awr":    -mean(min(exp(alpha * (Q - V)), 100) * log pi)
The target Q (trunk and heads) is an exponential moving average updated after each optimiser step.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from mqe.agents.base import Agent
from mqe.agents.common import (
    GoalConditionedActor,
    ddpg_bc_loss,
    detach_metrics,
    detached_call,
    encode_together,
)
from mqe.data import goal_sampling
from mqe.networks import MLP, EnsembleMLP, get_trunk_config, make_trunk

AWR_MAX_WEIGHT = 100.0  # OGBench's cap on exp(alpha * advantage)


def get_config() -> dict:
    return dict(
        agent_name="gciql",  # registry name
        lr=3e-4,  # Adam learning rate (the trainer builds the optimiser from it)
        **get_trunk_config(),  # trunk, trunk_weights, small_conv_channels, state_trunk_dims
        layer_norm=True,  # LayerNorm in every critic and trunk MLP (Linear -> LN -> GELU)
        actor_layer_norm=True,  # LayerNorm in the actor MLP (the MQE release's GCActor has none)
        value_hidden_dims=(256, 256, 256),  # hidden dims of the Q and V MLPs
        ensemble_size=2,  # Q ensemble members; targets and the actor use their minimum
        expectile=0.9,  # IQL expectile of the value regression
        tau=0.005,  # target-Q EMA rate per optimiser step
        actor_loss="ddpgbc",  # policy extraction: "ddpgbc" or "awr"
        alpha=0.3,  # BC coefficient (ddpgbc) or inverse temperature (awr); OGBench's default
        actor_hidden_dims=(256, 256, 256),  # policy MLP over [f(s), f(g)]
        const_std=True,  # actor std fixed at 1 (OGBench const_std); False learns a state-independent log std
        clip_actor_actions=False,  # clip the DDPG action to [-1, 1] (OGBench state tasks: True)
        goal_sampling=dict(  # OGBench's GCIQL value goals: 20% current state, 30% random, 50% trajectory
            goal_sampling.get_config(), value_p_curgoal=0.2, value_p_randomgoal=0.3
        ),
    )


class QCritic(nn.Module):
    """Trunk f and an ensemble of Q(s, a, g) = MLP([f(s), a, f(g)]) -> [E, B]."""

    def __init__(self, config: dict, observation_spec, action_dim: int):
        super().__init__()
        self.trunk = make_trunk(config, observation_spec)
        self.q = EnsembleMLP(
            config["ensemble_size"], 2 * self.trunk.out_dim + action_dim, config["value_hidden_dims"], 1,
            config["layer_norm"],
        )

    def q_values(self, features_s, actions, features_g) -> torch.Tensor:
        return self.q(torch.cat([features_s, actions, features_g], dim=-1)).squeeze(-1)


class GCIQLAgent(Agent):
    name = "gciql"
    has_distance = False

    def __init__(self, config: dict, observation_spec, action_dim: int):
        super().__init__(config, observation_spec, action_dim)
        if config["actor_loss"] not in ("ddpgbc", "awr"):
            raise ValueError(f"gciql config actor_loss: expected 'ddpgbc' or 'awr', got {config['actor_loss']!r}")
        self.critic = QCritic(config, self.observation_spec, action_dim)
        self.value = MLP(2 * self.critic.trunk.out_dim, config["value_hidden_dims"], 1, config["layer_norm"])
        self.target_critic = copy.deepcopy(self.critic).requires_grad_(False)
        self.actor = GoalConditionedActor(config, self.observation_spec, action_dim)

    def state_value(self, features_s, features_g) -> torch.Tensor:
        return self.value(torch.cat([features_s, features_g], dim=-1)).squeeze(-1)

    def value_loss(self, batch, features_s, features_g):
        with torch.no_grad():
            target_s, target_g = encode_together(self.target_critic.trunk, batch["observations"], batch["value_goals"])
            q = self.target_critic.q_values(target_s, batch["actions"], target_g).amin(dim=0)
        v = self.state_value(features_s, features_g)
        advantage = q - v
        weight = torch.where(advantage >= 0, self.config["expectile"], 1 - self.config["expectile"])
        loss = (weight * advantage.square()).mean()
        return loss, {"value/loss": loss, "value/v_mean": v.mean(), "value/v_min": v.min(), "value/v_max": v.max()}

    def critic_loss(self, batch, features_s, features_next, features_g):
        success = (batch["value_goal_steps"] == 0).to(features_s.dtype)  # the goal is the current state
        reward, mask = success - 1.0, 1.0 - success
        with torch.no_grad():
            target = reward + self.gamma * mask * self.state_value(features_next, features_g)
        q = self.critic.q_values(features_s, batch["actions"], features_g)  # [E, B]
        loss = (q - target).square().mean(dim=-1).sum()
        return loss, {"critic/loss": loss, "critic/q_mean": q.mean(), "critic/target_mean": target.mean()}

    def actor_loss(self, batch, features_s, features_actor_goal):
        actions = batch["actions"]
        actor_s, actor_g = encode_together(self.actor.trunk, batch["observations"], batch["actor_goals"])
        mean = self.actor.mean(actor_s, actor_g)
        log_prob = self.actor.log_prob(mean, actions)
        features_s, features_actor_goal = features_s.detach(), features_actor_goal.detach()
        if self.config["actor_loss"] == "ddpgbc":
            policy_actions = self.actor.deterministic(mean)
            q = detached_call(self.critic.q, torch.cat([features_s, policy_actions, features_actor_goal], -1))
            loss, metrics = ddpg_bc_loss(q.squeeze(-1).amin(dim=0), log_prob, self.config["alpha"])
        else:
            with torch.no_grad():
                advantage = self.critic.q_values(features_s, actions, features_actor_goal).amin(dim=0) - self.state_value(
                    features_s, features_actor_goal
                )
                weight = torch.exp(self.config["alpha"] * advantage).clamp(max=AWR_MAX_WEIGHT)
            loss = -(weight * log_prob).mean()
            metrics = {"actor/advantage": advantage.mean(), "actor/bc_log_prob": log_prob.mean()}
        metrics.update({
            "actor/loss": loss,
            "actor/mse": (mean - actions).square().mean(),
            "actor/std": self.actor.std_metric(),
        })
        return loss, metrics

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        features_s, features_next, features_g, features_actor_goal = encode_together(
            self.critic.trunk, batch["observations"], batch["next_observations"], batch["value_goals"], batch["actor_goals"]
        )
        value_loss, metrics = self.value_loss(batch, features_s, features_g)
        critic_loss, critic_metrics = self.critic_loss(batch, features_s, features_next, features_g)
        actor_loss, actor_metrics = self.actor_loss(batch, features_s, features_actor_goal)
        total = value_loss + critic_loss + actor_loss
        metrics.update(critic_metrics)
        metrics.update(actor_metrics)
        metrics["total_loss"] = total
        return total, detach_metrics(metrics)

    @torch.no_grad()
    def after_optimizer_step(self) -> None:
        """target <- tau * online + (1 - tau) * target; BatchNorm statistics are copied."""
        for target, online in zip(self.target_critic.parameters(), self.critic.parameters()):
            target.lerp_(online, self.config["tau"])
        for target, online in zip(self.target_critic.buffers(), self.critic.buffers()):
            target.copy_(online)

