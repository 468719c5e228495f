"""Temporal Representation Alignment, goal-image form (TRA-g; Myers et al. 2025, "Temporal
Representation Alignment: Successor Features Enable Emergent Compositionality in Robot Instruction
Following"), the MQE paper's strongest Bridge baseline after MQE (Table 5, App. C.1).

Two encoders with separate trunks: phi(s) = MLP(f_s(s)) for the current state and psi(g) =
MLP(f_g(g)) for a future state g of the same trajectory (the value goal, K ~ Geom(1 - gamma) steps
ahead). They are aligned by a symmetric InfoNCE loss over the batch with logits
    l_ij = phi(s_i) . psi(g_j) / sqrt(latent_dim)
    L_align = -1/(2B) sum_i [ log softmax_j(l_ij)_{j=i} + log softmax_i(l_ij)_{i=j} ]
              + repr_reg (mean phi^2 + mean psi^2)
(0.5 x (rows' cross-entropy + columns' cross-entropy): the public TRA code averages the same two
terms over all B x B entries, i.e. divides by B more, a constant factor absorbed by `alignment`.)

The actor is conditioned on the learned representations: pi(a | s, g) = N(mu(phi(s), psi(g)), std),
where the MLP mu runs on phi(s) and psi(g) enters by FiLM (Perez et al. 2018) in every hidden
layer, h <- h * (1 + gamma_k(psi(g))) + beta_k(psi(g)), as the MQE paper's C.1 says. It is
trained by behaviour cloning on the actor goals, with the gradient reaching both encoders:
    L_actor = -mean log pi(a_i | s_i, actor goal_i);  total = alignment * L_align + L_actor.
Inference encodes a goal once (psi(g), the exported actor goal features) and acts from phi(s).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from mqe.agents.base import Agent
from mqe.agents.common import LOG_STD_MIN, LOG_STD_MAX, detach_metrics, diagonal_gaussian_log_prob
from mqe.data import goal_sampling
from mqe.networks import MLP, get_trunk_config, make_trunk
from mqe.networks.mlp import xavier_linear


def get_config() -> dict:
    return dict(
        agent_name="tra",  # registry name
        lr=3e-4,  # Adam learning rate (the trainer builds the optimiser from it)
        **get_trunk_config(),  # trunk, trunk_weights, small_conv_channels, state_trunk_dims
        layer_norm=True,  # LayerNorm in the encoders' MLPs and trunks (Linear -> LN -> GELU)
        actor_layer_norm=True,  # LayerNorm in the actor MLP, before the FiLM modulation
        value_hidden_dims=(256, 256, 256),  # hidden dims of the phi and psi encoder MLPs
        latent_dim=256,  # size of phi(s) and psi(g)
        actor_hidden_dims=(256, 256, 256),  # policy MLP over phi(s), FiLM-modulated by psi(g)
        alignment=1.0,  # weight of the InfoNCE alignment loss (TRA code: 1.0)
        repr_reg=1e-6,  # L2 penalty on phi and psi (TRA code: 1e-6)
        const_std=True,  # actor std fixed at 1 (OGBench const_std); False learns a state-independent log std
        clip_actor_actions=False,  # clip the deterministic action to [-1, 1] (OGBench state tasks: True)
        goal_sampling=goal_sampling.get_config(),  # value goals (alignment) K ~ Geom(1 - gamma) ahead
    )


def symmetric_info_nce(phi: torch.Tensor, psi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """phi, psi [B, D] -> (loss, logits [B, B]); positives on the diagonal, logits phi.psi / sqrt(D)."""
    logits = phi @ psi.T / math.sqrt(phi.shape[-1])
    labels = torch.arange(len(logits), device=logits.device)
    loss = 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels))
    return loss, logits


class FiLMActor(nn.Module):
    """mu(x, z): hidden layers Linear -> [LayerNorm] -> FiLM(z) -> GELU, then a small-init Linear."""

    def __init__(self, in_dim: int, condition_dim: int, hidden_dims, action_dim: int, layer_norm: bool, const_std: bool):
        super().__init__()
        dims = [in_dim, *hidden_dims]
        self.linears = nn.ModuleList(xavier_linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.norms = nn.ModuleList((nn.LayerNorm(b) if layer_norm else nn.Identity()) for b in dims[1:])
        # FiLM generators start at zero: the modulation starts as the identity, like an unconditioned MLP
        self.films = nn.ModuleList(nn.Linear(condition_dim, 2 * b) for b in dims[1:])
        for film in self.films:
            nn.init.zeros_(film.weight)
            nn.init.zeros_(film.bias)
        self.head = xavier_linear(dims[-1], action_dim, scale=1e-2)  # OGBench: small initial actions
        self.log_std = None if const_std else nn.Parameter(torch.zeros(action_dim))

    def forward(self, x: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        for linear, norm, film in zip(self.linears, self.norms, self.films):
            scale, shift = film(condition).chunk(2, dim=-1)
            x = F.gelu(norm(linear(x)) * (1.0 + scale) + shift)
        return self.head(x)


class TRAAgent(Agent):
    name = "tra"
    has_distance = False

    def __init__(self, config: dict, observation_spec, action_dim: int):
        super().__init__(config, observation_spec, action_dim)
        hidden, latent, norm = config["value_hidden_dims"], config["latent_dim"], config["layer_norm"]
        self.state_trunk = make_trunk(config, self.observation_spec)
        self.goal_trunk = make_trunk(config, self.observation_spec)  # separate encoders phi, psi (paper C.1)
        self.phi = MLP(self.state_trunk.out_dim, hidden, latent, norm)
        self.psi = MLP(self.goal_trunk.out_dim, hidden, latent, norm)
        self.actor = FiLMActor(latent, latent, config["actor_hidden_dims"], action_dim,
                               config["actor_layer_norm"], config["const_std"])
        self.clip_actions = config["clip_actor_actions"]

    def encode_state(self, observations: torch.Tensor) -> torch.Tensor:
        return self.phi(self.state_trunk(observations))

    def encode_goal(self, goals: torch.Tensor) -> torch.Tensor:
        return self.psi(self.goal_trunk(goals))

    def alignment_loss(self, phi_s: torch.Tensor, psi_g: torch.Tensor):
        nce, logits = symmetric_info_nce(phi_s, psi_g)
        loss = nce + self.config["repr_reg"] * (phi_s.square().mean() + psi_g.square().mean())
        eye = torch.eye(len(logits), dtype=torch.bool, device=logits.device)
        return loss, {
            "value/alignment_loss": loss,
            "value/info_nce": nce,
            "value/categorical_accuracy": (logits.argmax(dim=1) == torch.arange(len(logits), device=logits.device)).float().mean(),
            "value/logits_pos": logits[eye].mean(),
            "value/logits_neg": logits[~eye].mean() if len(logits) > 1 else logits.new_zeros(()),
        }

    def log_prob(self, mean: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        log_std = None if self.actor.log_std is None else self.actor.log_std.clamp(LOG_STD_MIN, LOG_STD_MAX)
        return diagonal_gaussian_log_prob(mean, log_std, actions)

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        phi_s = self.encode_state(batch["observations"])
        goals = torch.cat([batch["value_goals"], batch["actor_goals"]])
        psi_value_goal, psi_actor_goal = torch.split(self.encode_goal(goals), len(phi_s))
        alignment, metrics = self.alignment_loss(phi_s, psi_value_goal)
        mean = self.actor(phi_s, psi_actor_goal)
        log_prob = self.log_prob(mean, batch["actions"])
        actor_loss = -log_prob.mean()
        total = self.config["alignment"] * alignment + actor_loss
        std = (self.actor.log_std.clamp(LOG_STD_MIN, LOG_STD_MAX).exp().mean() if self.actor.log_std is not None
               else mean.new_ones(()))
        metrics.update({
            "actor/loss": actor_loss,
            "actor/bc_log_prob": log_prob.mean(),
            "actor/mse": (mean - batch["actions"]).square().mean(),
            "actor/std": std,
            "total_loss": total,
        })
        return total, detach_metrics(metrics)

    # --- inference / export -------------------------------------------------------------------
    def encode_actor_goal(self, goals: torch.Tensor) -> torch.Tensor:
        """psi(g): the learned goal representation the actor is FiLM-conditioned on."""
        return self.encode_goal(goals)

    def act_from_goal_features(self, observations: torch.Tensor, actor_goal_features: torch.Tensor) -> torch.Tensor:
        mean = self.actor(self.encode_state(observations), actor_goal_features)
        return mean.clamp(-1.0, 1.0) if self.clip_actions else mean
