"""OGBench state-task presets: overrides of each agent's Bridge defaults (`mqe.agents.get_config`).

Shared (paper Table 2 / OGBench): raw 2-D state into MLPs (512, 512, 512) with LayerNorm, latent
512, Adam 3e-4, batch 256, constant actor std, DDPG actions clipped to [-1, 1].
  mqe    gamma 0.995, lambda 0.95, p 0.2, alpha 0.03 (paper Table 3, pointmaze)
  gcbc   trajectory goals only (OGBench gcbc.py)
  gciql  OGBench gciql.py: expectile 0.9, DDPG+BC alpha 0.003 (hyperparameters.sh, pointmaze),
         value goals 0.2 current / 0.5 trajectory (geometric) / 0.3 random, gamma 0.99 (0.995 giant)
  tra    Myers et al. 2025 (TRA-g): encoders (512, 512, 512) -> 512, future goals Geom(1 - 0.99)
  qrl    OGBench qrl.py: IQE latent 512, value goals random states, DDPG+BC alpha 0.0003
         (hyperparameters.sh, pointmaze), gamma 0.99 (0.995 giant)
Stitch datasets: every agent draws half of its actor goals at random (OGBench's per-dataset setting
actor_p_trajgoal 0.5 / actor_p_randomgoal 0.5; its README: "especially important for datasets that
require stitching"); navigate datasets use trajectory actor goals only.
"""

from __future__ import annotations

from mqe.agents import get_config as agent_defaults
from mqe.config import set_path

BATCH_SIZE = 256  # paper Table 2

STATE_TASK = {
    "trunk": "mlp",  # states go straight into the MLPs (no separate trunk MLP)
    "state_trunk_dims": (),  # OGBench feeds the raw state
    "layer_norm": True,  # paper Table 2
    "actor_hidden_dims": (512, 512, 512),  # paper Table 2
    "lr": 3e-4,  # Adam, OGBench
    "const_std": True,  # OGBench const_std
}
CRITIC = {
    "value_hidden_dims": (512, 512, 512),  # paper Table 2
    "clip_actor_actions": True,  # OGBench state tasks clip the DDPG action
}
QUASIMETRIC = {"latent_dim": 512, "mrn_components": 8}  # paper Table 2 (MQE's MRN)

AGENT_PRESETS = {
    "mqe": {
        **CRITIC,
        **QUASIMETRIC,
        "alpha": 0.03,  # paper Table 3, pointmaze
        "goal_sampling.gamma": 0.995,  # paper Table 2
        "goal_sampling.waypoint_lambda": 0.95,
        "goal_sampling.p_next_waypoint": 0.2,
    },
    "gcbc": {"clip_actor_actions": True},
    "gciql": {
        **CRITIC,
        "alpha": 0.003,  # OGBench hyperparameters.sh, pointmaze
        "expectile": 0.9,
        "goal_sampling.gamma": 0.99,
        "goal_sampling.value_p_curgoal": 0.2,
        "goal_sampling.value_p_randomgoal": 0.3,
    },
    "qrl": {
        **CRITIC,
        "latent_dim": 512,  # OGBench qrl.py; IQE with 8-dim components (OGBench's default quasimetric)
        "alpha": 0.0003,  # OGBench hyperparameters.sh, pointmaze
        "goal_sampling.gamma": 0.99,
        "goal_sampling.value_p_curgoal": 0.0,
        "goal_sampling.value_p_randomgoal": 1.0,
    },
    "tra": {
        "clip_actor_actions": True,
        "value_hidden_dims": (512, 512, 512),
        "latent_dim": 512,
        "goal_sampling.gamma": 0.99,  # the public TRA code's discount for its future-state goals
    },
}
# The MQE release's (WJ2003B/mqe-release impls/agents/mqe.py, utils/networks.py) forms where the
# first implementation differed (docs/learner.md lists every difference). They are MQE's defaults
# since issue #14's measurement (docs/ogbench.md); "mqe-release" pins them explicitly and
# "mqe-previous" runs the earlier forms.
MQE_RELEASE = {
    "distance_scale": "inverse_sqrt_latent",  # dists.mean(-1) / sqrt(D)
    "activation_before_norm": True,  # Dense -> GELU -> LayerNorm
    "actor_layer_norm": False,  # its GCActor's MLP has no LayerNorm
    "l2_epsilon": 1e-8,  # norm(x - y + eps)
    "loss_linear_form": "release",  # d - d_next above d - d_next = t
}
MQE_PREVIOUS = {
    "distance_scale": "none",
    "activation_before_norm": False,  # Linear -> LayerNorm -> GELU
    "actor_layer_norm": True,
    "l2_epsilon": 0.0,
    "loss_linear_form": "tangent",  # exp's tangent above d - d' = t
}
VARIANTS = {  # benchmark name -> (registered agent, overrides)
    "mqe-release": ("mqe", MQE_RELEASE),
    "mqe-previous": ("mqe", MQE_PREVIOUS),
}


def base_agent(name: str) -> str:
    """The registered agent a benchmark name (an agent or a variant) builds."""
    return VARIANTS[name][0] if name in VARIANTS else name


GIANT_GAMMA = 0.995  # OGBench runs the giant mazes with discount 0.995 for every agent
STITCH_ACTOR_P_RANDOMGOAL = 0.5  # OGBench's stitch datasets, every agent


WIDTH_KEYS = ("actor_hidden_dims", "value_hidden_dims", "latent_dim")


def agent_config(agent: str, dataset: str, width: int = 512) -> dict:
    """The agent's defaults with the OGBench state-task preset applied (every key must exist in the
    agent's config: a renamed key fails here instead of silently training with a default).
    `agent` may be a variant name (VARIANTS). `width` < 512 scales every MLP width and the latent size down for CPU runs."""
    variant = VARIANTS.get(agent, (agent, {}))[1]
    agent = base_agent(agent)
    config = agent_defaults(agent)
    preset = {**STATE_TASK, **AGENT_PRESETS[agent], **variant}
    if "giant" in dataset and "goal_sampling.gamma" in preset:
        preset["goal_sampling.gamma"] = max(preset["goal_sampling.gamma"], GIANT_GAMMA)
    if "stitch" in dataset:
        preset["goal_sampling.actor_p_randomgoal"] = STITCH_ACTOR_P_RANDOMGOAL
    for key, value in preset.items():
        set_path(config, key, value)
    if width != 512:
        for key in WIDTH_KEYS:
            if key in config:
                config[key] = width if key == "latent_dim" else (width,) * len(config[key])
    return config
