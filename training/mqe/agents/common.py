"""Pieces shared by the agents: the goal-conditioned Gaussian actor, DDPG+BC normalisation,
calls through a module with its parameters detached, and batch-to-trunk plumbing."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.func import functional_call

from mqe.networks import MLP, make_trunk

LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0  # OGBench's clip for a learned log std


class GoalConditionedActor(nn.Module):
    """pi(a | s, g) = N(mean(f(s), f(g)), std) with its own trunk f. The goal side, f(g), is
    computed separately so the robot can encode each goal once."""

    def __init__(self, config: dict, observation_spec, action_dim: int):
        super().__init__()
        self.trunk = make_trunk(config, observation_spec)
        self.mean_net = MLP(
            2 * self.trunk.out_dim, config["actor_hidden_dims"], action_dim,
            layer_norm=config["actor_layer_norm"], final_init_scale=1e-2,  # OGBench: small initial actions
        )
        self.log_std = None if config["const_std"] else nn.Parameter(torch.zeros(action_dim))
        self.clip_actions = config["clip_actor_actions"]

    def encode_goal(self, goals: torch.Tensor) -> torch.Tensor:
        return self.trunk(goals)

    def mean(self, observation_features: torch.Tensor, goal_features: torch.Tensor) -> torch.Tensor:
        return self.mean_net(torch.cat([observation_features, goal_features], dim=-1))

    def log_prob(self, mean: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Diagonal Gaussian log density of `actions` [B, A] around `mean`, summed over dims -> [B]."""
        log_std = None if self.log_std is None else self.log_std.clamp(LOG_STD_MIN, LOG_STD_MAX)
        return diagonal_gaussian_log_prob(mean, log_std, actions)

    def deterministic(self, mean: torch.Tensor) -> torch.Tensor:
        return mean.clamp(-1.0, 1.0) if self.clip_actions else mean

    def act_from_goal_features(self, observations: torch.Tensor, goal_features: torch.Tensor) -> torch.Tensor:
        return self.deterministic(self.mean(self.trunk(observations), goal_features))

    def std_metric(self) -> torch.Tensor:
        if self.log_std is None:
            return self.mean_net.net[0].weight.new_ones(())  # on the agent's device, like the other metrics
        return self.log_std.clamp(LOG_STD_MIN, LOG_STD_MAX).exp().mean()


def diagonal_gaussian_log_prob(mean: torch.Tensor, log_std: torch.Tensor | None, actions: torch.Tensor) -> torch.Tensor:
    """log N(actions; mean, exp(log_std)^2 I) summed over the last dim; log_std None means std 1."""
    log_std = torch.zeros_like(mean) if log_std is None else log_std.expand_as(mean)
    z = (actions - mean) * torch.exp(-log_std)
    return (-0.5 * z.square() - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)


def detached_call(module: nn.Module, *args: torch.Tensor) -> torch.Tensor:
    """Run `module` with its parameters detached: gradients reach the inputs, never the module."""
    params = {name: p.detach() for name, p in module.named_parameters()}
    return functional_call(module, params, args)


def ddpg_bc_loss(q: torch.Tensor, log_prob: torch.Tensor, alpha: float) -> tuple[torch.Tensor, dict]:
    """-mean(q) / stopgrad(mean|q|) - alpha * mean(log pi(a|s,g)) (Fujimoto & Gu; OGBench)."""
    q_scale = q.abs().mean().detach() + 1e-6
    q_loss = -q.mean() / q_scale
    bc_loss = -alpha * log_prob.mean()
    return q_loss + bc_loss, {
        "actor/q_loss": q_loss,
        "actor/bc_loss": bc_loss,
        "actor/q_mean": q.mean(),
        "actor/q_abs_mean": q_scale,
        "actor/bc_log_prob": log_prob.mean(),
    }


def encode_together(trunk: nn.Module, *observations: torch.Tensor) -> list[torch.Tensor]:
    """One trunk pass over several observation batches (one BatchNorm batch, one conv call)."""
    sizes = [x.shape[0] for x in observations]
    return list(torch.split(trunk(torch.cat(observations)), sizes))


def detach_metrics(metrics: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {key: torch.as_tensor(value).detach() for key, value in metrics.items()}
