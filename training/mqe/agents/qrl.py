"""Quasimetric RL (QRL, Wang et al. 2023), following OGBench's impls/agents/qrl.py.

A quasimetric value d(s, g) = d_IQE(psi(s), psi(g)) (MRN as an option), psi = MLP(f(s)):
  value     maximise distances to random goals, softly: mean 100 softplus(5 - d(s, g) / 100),
            subject to one-step consistency mean relu(d(s, s') - 1)^2 <= eps, enforced with a
            learned Lagrange multiplier lambda = exp(log_lambda) (dual ascent on eps - constraint)
  dynamics  a latent model psi(s') ~ psi(s) + D([psi(s), a]), fitted with the symmetrised distance
  actor     "ddpgbc": q = -d(psi(s) + D([psi(s), pi(s, g)]), psi(g)) with the value and dynamics
            held fixed; "awr": weights exp(alpha * (d(s, g) - d(s', g))) capped at 100
d counts steps (each transition costs at most ~1); the exported distance is d * -log(gamma) so that
it is in the contract's units (-log V), i.e. steps_from_distance gives back d.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
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
from mqe.networks import MLP, get_trunk_config, make_trunk
from mqe.quasimetric import iqe_distance, mrn_distance

AWR_MAX_WEIGHT = 100.0  # OGBench's cap on exp(alpha * advantage)


def get_config() -> dict:
    return dict(
        agent_name="qrl",  # registry name
        lr=3e-4,  # Adam learning rate (the trainer builds the optimiser from it)
        **get_trunk_config(),  # trunk, trunk_weights, small_conv_channels, state_trunk_dims
        layer_norm=True,  # LayerNorm in every critic and trunk MLP (Linear -> LN -> GELU)
        actor_layer_norm=True,  # LayerNorm in the actor MLP (the MQE release's GCActor has none)
        latent_dim=256,  # size of psi(s)
        value_hidden_dims=(256, 256, 256),  # hidden dims of psi and of the latent dynamics model
        quasimetric="iqe",  # "iqe" (OGBench's default) or "mrn"
        iqe_component_dim=8,  # IQE: dims per component
        mrn_components=8,  # MRN: number of components
        eps=0.05,  # margin of the constraint mean relu(d(s, s') - 1)^2 <= eps
        actor_loss="ddpgbc",  # policy extraction: "ddpgbc" (latent dynamics) or "awr"
        alpha=0.003,  # BC coefficient (ddpgbc) or inverse temperature (awr); OGBench's default
        actor_hidden_dims=(256, 256, 256),  # policy MLP over [f(s), f(g)]
        const_std=True,  # actor std fixed at 1 (OGBench const_std); False learns a state-independent log std
        clip_actor_actions=True,  # clip the DDPG action to [-1, 1] before the dynamics model (OGBench)
        goal_sampling=dict(goal_sampling.get_config(), value_p_randomgoal=1.0),  # value goals: random states
    )


class QuasimetricValue(nn.Module):
    """Trunk f, psi = MLP(f(s)) and the quasimetric between latents (IQE with its learned mean/max
    mixing weight, or MRN)."""

    def __init__(self, config: dict, observation_spec):
        super().__init__()
        self.kind = config["quasimetric"]
        if self.kind not in ("iqe", "mrn"):
            raise ValueError(f"qrl config quasimetric: expected 'iqe' or 'mrn', got {self.kind!r}")
        divisor = config["iqe_component_dim"] if self.kind == "iqe" else 2 * config["mrn_components"]
        if config["latent_dim"] % divisor:
            raise ValueError(f"qrl config: latent_dim {config['latent_dim']} must be a multiple of {divisor} for {self.kind}")
        self.config = config
        self.trunk = make_trunk(config, observation_spec)
        self.psi = MLP(self.trunk.out_dim, config["value_hidden_dims"], config["latent_dim"], config["layer_norm"])
        self.mean_weight_logit = nn.Parameter(torch.zeros(())) if self.kind == "iqe" else None

    def distance(self, x: torch.Tensor, y: torch.Tensor, frozen: bool = False) -> torch.Tensor:
        if self.kind == "mrn":
            return mrn_distance(x, y, self.config["mrn_components"])
        logit = self.mean_weight_logit.detach() if frozen else self.mean_weight_logit
        return iqe_distance(x, y, self.config["iqe_component_dim"], torch.sigmoid(logit))


class QRLAgent(Agent):
    name = "qrl"
    has_distance = True

    def __init__(self, config: dict, observation_spec, action_dim: int):
        super().__init__(config, observation_spec, action_dim)
        if config["actor_loss"] not in ("ddpgbc", "awr"):
            raise ValueError(f"qrl config actor_loss: expected 'ddpgbc' or 'awr', got {config['actor_loss']!r}")
        self.value = QuasimetricValue(config, self.observation_spec)
        self.log_lambda = nn.Parameter(torch.zeros(()))
        latent = config["latent_dim"]
        self.dynamics = (
            MLP(latent + action_dim, config["value_hidden_dims"], latent, config["layer_norm"])
            if config["actor_loss"] == "ddpgbc"
            else None
        )
        self.actor = GoalConditionedActor(config, self.observation_spec, action_dim)

    def value_loss(self, latent_s, latent_next, latent_g):
        d_neg = self.value.distance(latent_s, latent_g)
        d_pos = self.value.distance(latent_s, latent_next)
        lam = self.log_lambda.exp()
        d_neg_loss = (100 * F.softplus(5 - d_neg / 100)).mean()
        d_pos_loss = F.relu(d_pos - 1).square().mean()
        value_loss = d_neg_loss + d_pos_loss * lam.detach()
        lambda_loss = lam * (self.config["eps"] - d_pos_loss.detach())
        loss = value_loss + lambda_loss
        return loss, {
            "value/loss": value_loss,
            "value/lambda_loss": lambda_loss,
            "value/lambda": lam,
            "value/d_neg_loss": d_neg_loss,
            "value/d_neg_mean": d_neg.mean(),
            "value/d_pos_loss": d_pos_loss,
            "value/d_pos_mean": d_pos.mean(),
        }

    def predict_next_latent(self, latent_s, actions, frozen: bool = False):
        inputs = torch.cat([latent_s, actions], dim=-1)
        return latent_s + (detached_call(self.dynamics, inputs) if frozen else self.dynamics(inputs))

    def dynamics_loss(self, latent_s, latent_next, actions):
        predicted = self.predict_next_latent(latent_s, actions)
        loss = 0.5 * (self.value.distance(latent_next, predicted) + self.value.distance(predicted, latent_next)).mean()
        return loss, {"dynamics/loss": loss}

    def actor_loss(self, batch, latent_s, latent_next, latent_actor_goal):
        actions = batch["actions"]
        actor_s, actor_g = encode_together(self.actor.trunk, batch["observations"], batch["actor_goals"])
        mean = self.actor.mean(actor_s, actor_g)
        log_prob = self.actor.log_prob(mean, actions)
        latent_s, latent_next, latent_actor_goal = latent_s.detach(), latent_next.detach(), latent_actor_goal.detach()
        if self.config["actor_loss"] == "ddpgbc":
            predicted = self.predict_next_latent(latent_s, self.actor.deterministic(mean), frozen=True)
            q = -self.value.distance(predicted, latent_actor_goal, frozen=True)
            loss, metrics = ddpg_bc_loss(q, log_prob, self.config["alpha"])
        else:
            with torch.no_grad():
                advantage = self.value.distance(latent_s, latent_actor_goal) - self.value.distance(
                    latent_next, latent_actor_goal
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
        features = encode_together(
            self.value.trunk, batch["observations"], batch["next_observations"], batch["value_goals"], batch["actor_goals"]
        )
        latent_s, latent_next, latent_g, latent_actor_goal = torch.split(
            self.value.psi(torch.cat(features)), [f.shape[0] for f in features]
        )
        total, metrics = self.value_loss(latent_s, latent_next, latent_g)
        if self.dynamics is not None:
            dynamics_loss, dynamics_metrics = self.dynamics_loss(latent_s, latent_next, batch["actions"])
            total = total + dynamics_loss
            metrics.update(dynamics_metrics)
        actor_loss, actor_metrics = self.actor_loss(batch, latent_s, latent_next, latent_actor_goal)
        total = total + actor_loss
        metrics.update(actor_metrics)
        metrics["total_loss"] = total
        return total, detach_metrics(metrics)

    def encode_critic_goal(self, goals: torch.Tensor) -> torch.Tensor:
        return self.value.psi(self.value.trunk(goals))

    def distance_to_goal_embedding(self, observations: torch.Tensor, critic_goal_embedding: torch.Tensor) -> torch.Tensor:
        """d(psi(s), psi(g)) in the contract's units: QRL's step count times -log(gamma)."""
        latent_s = self.value.psi(self.value.trunk(observations))
        return self.value.distance(latent_s, critic_goal_embedding) * -math.log(self.gamma)
