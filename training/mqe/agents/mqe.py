"""Multistep Quasimetric Estimation (MQE), paper §4 and App. B-C, in the form stated by issue #2.

Critic: one trunk f, then an ensemble of psi(s) = MLP(f(s)) and phi(s, a) = MLP([f(s), a]) in
R^{N*M}; distances are MRN: d((s,a), g) = d(phi(s,a), psi(g)), d(s, g) = d(psi(s), psi(g)),
with Q = exp(-d), V = exp(-d). The actor has its own trunk (paper C.1).

Losses, summed and minimised by one optimiser:
  critic      over all BxB pairs (i, j), per ensemble member, then averaged:
                d_ij  = d(phi(s_i, a_i), psi(g_j))
                d'_ij = stopgrad(d(psi(w_i), psi(g_j))) - k'_i log(gamma)
                l_ij  = exp(d_ij - d'_ij) - d_ij          (minimiser d_ij = d'_ij; Eq. 10-11
                        with the issue's "- d" instead of the paper's "- d'", which has no minimum)
              exp continued linearly above `loss_linear_threshold` so it never overflows
              ("release", the default: the MQE release's l_ij = d_ij - d_next_ij where d_ij - d_next_ij > t,
              d_next the waypoint distance before the k' log(gamma) shift; "tangent": exp's tangent in d - d');
              loss = 0.5 mean_i l_ii + 0.5 mean_ij l_ij.
  distance    the MRN mean over components times 1/sqrt(latent_dim) (distance_scale
              "inverse_sqrt_latent", the release's `dists.mean(-1) / sqrt(D)`; "none" unscaled).
The defaults follow the release code where it differs (docs/learner.md, measured in docs/ogbench.md).
  invariance  L_I = mean_i d(psi(s_i), phi(s_i, a_i))^2 (Eq. 14-15; "all_pairs": a_j for all j),
              on trunk features with the gradient stopped for images (Eq. 17).
  actor       DDPG+BC (Eq. 16): a_pi = mean pi(s_i, g_i), q_i = -max_ensemble d(phi(s_i, a_pi), psi(g_i)),
              loss = -mean(q) / stopgrad(mean|q|) - alpha mean log pi(a_i | s_i, g_i);
              the critic's parameters and psi(g) are held fixed in it.
"""

from __future__ import annotations

import math

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
from mqe.networks import EnsembleMLP, get_trunk_config, make_trunk
from mqe.quasimetric import mrn_distance, pairwise_mrn_distance


def get_config() -> dict:
    return dict(
        agent_name="mqe",  # registry name
        lr=3e-4,  # Adam learning rate (the trainer builds the optimiser from it)
        **get_trunk_config(),  # trunk, trunk_weights, small_conv_channels, state_trunk_dims
        layer_norm=True,  # LayerNorm in every critic and trunk MLP
        activation_before_norm=True,  # critic MLPs Linear -> GELU -> LN (release, OGBench); False: Linear -> LN -> GELU
        actor_layer_norm=False,  # LayerNorm in the actor MLP (the release's GCActor has none)
        latent_dim=256,  # size N*M of psi(s) and phi(s, a)
        value_hidden_dims=(256, 256, 256),  # hidden dims of the psi and phi MLPs
        mrn_components=8,  # N, the number of MRN components
        ensemble_size=2,  # critic ensemble members; the actor and the exported distance use the worst
        loss_linear_threshold=5.0,  # exp(d - d') is continued linearly above this threshold t
        loss_linear_form="release",  # "release": d - d_next above d - d_next = t; "tangent": exp's tangent above d - d' = t
        distance_scale="inverse_sqrt_latent",  # MRN distance / sqrt(latent_dim) (release); "none": unscaled
        l2_epsilon=1e-8,  # added inside the MRN L2 norm (release); 0: exact norm
        invariance="diagonal",  # L_I pairs: "diagonal" d(psi(s_i), phi(s_i, a_i)) or "all_pairs" (Eq. 15)
        actor_hidden_dims=(256, 256, 256),  # policy MLP over [f(s), f(g)]
        const_std=True,  # actor std fixed at 1 (OGBench const_std); False learns a state-independent log std
        clip_actor_actions=False,  # clip the DDPG action to [-1, 1] (OGBench state tasks: True)
        alpha=3.0,  # BC coefficient; the paper gives none for Bridge: Table 3's pixel manipulation value
        goal_sampling=goal_sampling.get_config(),  # gamma 0.98, lambda 0.95, p 0.2, trajectory goals only
    )


def linear_exp(x: torch.Tensor, threshold: float) -> torch.Tensor:
    """exp(x) for x <= threshold, continued by its tangent above it: finite values and gradients."""
    clipped = x.clamp(max=threshold)
    return torch.exp(clipped) * (1.0 + (x - clipped))


def backup_pair_loss(distance: torch.Tensor, target: torch.Tensor, threshold: float) -> torch.Tensor:
    """Per-pair critic loss exp(d - d') - d (linearly continued); minimised exactly at d = d'."""
    return linear_exp(distance - target, threshold) - distance


def release_backup_pair_loss(
    distance: torch.Tensor, next_distance: torch.Tensor, shift: torch.Tensor, threshold: float
) -> torch.Tensor:
    """The MQE release's per-pair loss: exp(d - d') - d with d' = d_next + shift (shift = -k' log gamma),
    replaced by d - d_next (slope 1) where d - d_next > threshold, i.e. the switch is decided before
    the shift and the branch above it has no exponential's scale and no -d."""
    delta = distance - next_distance
    above = delta > threshold
    exp_branch = torch.exp(torch.where(above, torch.full_like(delta, threshold), delta) - shift) - distance
    return torch.where(above, delta, exp_branch)


def diagonal_and_all_pairs_mean(pair_loss: torch.Tensor) -> torch.Tensor:
    """[..., B, B] -> 0.5 * mean of the diagonal + 0.5 * mean of all pairs (over every leading dim too)."""
    return 0.5 * pair_loss.diagonal(dim1=-2, dim2=-1).mean() + 0.5 * pair_loss.mean()


class MQECritic(nn.Module):
    """Trunk f and an ensemble of psi(s) = MLP(f(s)), phi(s, a) = MLP([f(s), a]) -> [E, B, N*M]."""

    def __init__(self, config: dict, observation_spec, action_dim: int):
        super().__init__()
        if config["latent_dim"] % (2 * config["mrn_components"]):
            raise ValueError(
                f"mqe config: latent_dim {config['latent_dim']} must split into mrn_components "
                f"{config['mrn_components']} components of even size"
            )
        self.trunk = make_trunk(config, observation_spec)
        size, hidden, latent = config["ensemble_size"], config["value_hidden_dims"], config["latent_dim"]
        norm, order = config["layer_norm"], config["activation_before_norm"]
        self.psi = EnsembleMLP(size, self.trunk.out_dim, hidden, latent, norm, activation_before_norm=order)
        self.phi = EnsembleMLP(size, self.trunk.out_dim + action_dim, hidden, latent, norm, activation_before_norm=order)


class MQEAgent(Agent):
    name = "mqe"
    has_distance = True

    def __init__(self, config: dict, observation_spec, action_dim: int):
        super().__init__(config, observation_spec, action_dim)
        self.components = config["mrn_components"]
        self.critic = MQECritic(config, self.observation_spec, action_dim)
        self.actor = GoalConditionedActor(config, self.observation_spec, action_dim)
        sampling = config["goal_sampling"]
        if sampling["value_p_curgoal"] or sampling["value_p_randomgoal"]:
            raise ValueError(
                "mqe config goal_sampling: value goals must come from the trajectory (value_p_curgoal and "
                "value_p_randomgoal 0): the backup target d(w, g) + k' assumes the waypoint lies between s and g"
            )
        if config["invariance"] not in ("diagonal", "all_pairs"):
            raise ValueError(f"mqe config invariance: expected 'diagonal' or 'all_pairs', got {config['invariance']!r}")
        if config["loss_linear_form"] not in ("tangent", "release"):
            raise ValueError(f"mqe config loss_linear_form: expected 'tangent' or 'release', got {config['loss_linear_form']!r}")
        if config["distance_scale"] not in ("none", "inverse_sqrt_latent"):
            raise ValueError(
                f"mqe config distance_scale: expected 'none' or 'inverse_sqrt_latent', got {config['distance_scale']!r}"
            )
        self.distance_factor = 1.0 if config["distance_scale"] == "none" else 1.0 / math.sqrt(config["latent_dim"])
        self.l2_epsilon = config["l2_epsilon"]

    # --- distances ----------------------------------------------------------------------------
    def distance(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return mrn_distance(x, y, self.components, self.l2_epsilon) * self.distance_factor

    def pairwise_distance(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return pairwise_mrn_distance(x, y, self.components, self.l2_epsilon) * self.distance_factor

    # --- losses -----------------------------------------------------------------------------
    def critic_loss(self, features_s, features_w, features_g, actions, waypoint_steps):
        phi_sa = self.critic.phi(torch.cat([features_s, actions], dim=-1))  # [E, B, L]
        psi_g = self.critic.psi(features_g)
        distance = self.pairwise_distance(phi_sa, psi_g)  # [E, B, B]
        with torch.no_grad():
            psi_w = self.critic.psi(features_w)
            next_distance = self.pairwise_distance(psi_w, psi_g)
            shift = -waypoint_steps[:, None] * math.log(self.gamma)  # k'_i (-log gamma) >= 0, row i
            target = next_distance + shift
        threshold = self.config["loss_linear_threshold"]
        if self.config["loss_linear_form"] == "tangent":
            pair_loss = backup_pair_loss(distance, target, threshold)
        else:
            pair_loss = release_backup_pair_loss(distance, next_distance, shift, threshold)
        loss = diagonal_and_all_pairs_mean(pair_loss)
        diagonal = distance.diagonal(dim1=-2, dim2=-1)
        batch = distance.shape[-1]
        off_diagonal = (distance.sum((-2, -1)) - diagonal.sum(-1)) / max(batch * (batch - 1), 1)
        return loss, {
            "critic/loss": loss,
            "critic/distance": diagonal.mean(),
            "critic/target": target.diagonal(dim1=-2, dim2=-1).mean(),
            "critic/distance_offdiagonal": off_diagonal.mean(),
            "critic/steps_to_goal": diagonal.mean() / -math.log(self.gamma),
        }

    def invariance_loss(self, features_s, actions):
        psi_s = self.critic.psi(features_s)  # [E, B, L]
        if self.config["invariance"] == "diagonal":
            phi_sa = self.critic.phi(torch.cat([features_s, actions], dim=-1))
            distance = self.distance(psi_s, phi_sa)  # [E, B]
        else:  # Eq. 15: every action a_j at every state s_i
            batch = len(features_s)
            pairs = torch.cat(
                [features_s[:, None].expand(-1, batch, -1), actions[None].expand(batch, -1, -1)], dim=-1
            ).reshape(batch * batch, -1)
            phi_sa = self.critic.phi(pairs).reshape(psi_s.shape[0], batch, batch, -1)
            distance = self.distance(psi_s[:, :, None], phi_sa)  # [E, B, B]
        loss = distance.square().mean()
        return loss, {"critic/invariance_loss": loss, "critic/invariance_distance": distance.mean()}

    def actor_loss(self, features_s, features_actor_goal, observations, actor_goals, actions):
        actor_s, actor_g = encode_together(self.actor.trunk, observations, actor_goals)
        mean = self.actor.mean(actor_s, actor_g)
        policy_actions = self.actor.deterministic(mean)
        phi = detached_call(self.critic.phi, torch.cat([features_s.detach(), policy_actions], dim=-1))
        with torch.no_grad():
            psi_g = self.critic.psi(features_actor_goal)
        q = -self.distance(phi, psi_g).amax(dim=0)  # worst ensemble member
        log_prob = self.actor.log_prob(mean, actions)
        loss, metrics = ddpg_bc_loss(q, log_prob, self.config["alpha"])
        metrics.update({
            "actor/loss": loss,
            "actor/mse": (mean - actions).square().mean(),
            "actor/std": self.actor.std_metric(),
        })
        return loss, metrics

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        actions = batch["actions"]
        features_s, features_w, features_g, features_actor_goal = encode_together(
            self.critic.trunk, batch["observations"], batch["waypoints"], batch["value_goals"], batch["actor_goals"]
        )
        critic_loss, metrics = self.critic_loss(features_s, features_w, features_g, actions, batch["waypoint_steps"])
        frozen_trunk = self.observation_spec.kind == "image"  # Eq. 17: L_I does not train the image trunk
        invariance_loss, invariance_metrics = self.invariance_loss(
            features_s.detach() if frozen_trunk else features_s, actions
        )
        actor_loss, actor_metrics = self.actor_loss(
            features_s, features_actor_goal, batch["observations"], batch["actor_goals"], actions
        )
        total = critic_loss + invariance_loss + actor_loss
        metrics.update(invariance_metrics)
        metrics.update(actor_metrics)
        metrics["total_loss"] = total
        return total, detach_metrics(metrics)

    # --- inference / export -------------------------------------------------------------------
    def encode_critic_goal(self, goals: torch.Tensor) -> torch.Tensor:
        """psi(g) of every ensemble member, flattened to [B, E * N * M]."""
        psi_g = self.critic.psi(self.critic.trunk(goals))  # [E, B, L]
        return psi_g.transpose(0, 1).reshape(goals.shape[0], -1)  # shape[0], not len(): keeps the ONNX batch axis dynamic

    def distance_to_goal_embedding(self, observations: torch.Tensor, critic_goal_embedding: torch.Tensor) -> torch.Tensor:
        psi_s = self.critic.psi(self.critic.trunk(observations))  # [E, B, L]
        psi_g = critic_goal_embedding.reshape(critic_goal_embedding.shape[0], psi_s.shape[0], -1).transpose(0, 1)
        return self.distance(psi_s, psi_g).amax(dim=0)
