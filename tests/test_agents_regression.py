"""Regression on fixed tensors: MQE's critic, invariance and actor losses and their gradients, in
the release-faithful form (`mqe.ogbench.presets.MQE_RELEASE`, the defaults since issue #14) and in
the earlier form (`MQE_PREVIOUS`), must stay what they were when the fixture was written, so that no later change alters the method silently.

How the fixture was obtained: `.venv/bin/python tests/test_agents_regression.py` (torch 2.13.0 CPU,
float64) ran `compute()` below once and wrote tests/fixtures/mqe_loss_regression.json (its two
entries were first keyed "default" and "release"; when the release form became the default they
were renamed "previous" and "release", the values checked identical). Parameters
and batch come from numpy's default_rng(0) (not torch's RNG or init, so a torch upgrade that changes
its random streams does not change the inputs); every value is the loss itself and, per parameter,
the sum and the L2 norm of the loss's gradient. Regenerate it only for a deliberate change of the
method, and say why in docs/learner.md.
"""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mqe.agents import get_config, make_agent
from mqe.ogbench.presets import MQE_PREVIOUS, MQE_RELEASE

FIXTURE = Path(__file__).parent / "fixtures" / "mqe_loss_regression.json"
B, OBS_DIM, ACTION_DIM = 5, 3, 2
VARIANTS = {"previous": MQE_PREVIOUS, "release": MQE_RELEASE}  # "release" = today's defaults


def fixed_agent(overrides: dict):
    config = get_config("mqe")
    config.update(
        trunk="mlp", state_trunk_dims=(), latent_dim=8, mrn_components=2, value_hidden_dims=(6,),
        actor_hidden_dims=(6,), clip_actor_actions=True, alpha=0.03, loss_linear_threshold=2.5,
    )
    config["goal_sampling"]["gamma"] = 0.9  # -log(0.9) = 0.105: offsets comparable to these distances
    config.update(overrides)
    agent = make_agent("mqe", config, ("state", OBS_DIM), ACTION_DIM).double()
    rng = np.random.default_rng(0)
    with torch.no_grad():
        for _, parameter in sorted(agent.named_parameters()):
            parameter.copy_(torch.from_numpy(rng.normal(0.0, 0.7, parameter.shape)))
    return agent


def fixed_batch() -> dict[str, torch.Tensor]:
    rng = np.random.default_rng(1)
    states = {key: torch.from_numpy(rng.normal(0.0, 1.0, (B, OBS_DIM)))
              for key in ("observations", "next_observations", "waypoints", "value_goals", "actor_goals")}
    return dict(
        **states,
        actions=torch.from_numpy(rng.uniform(-1.0, 1.0, (B, ACTION_DIM))),
        waypoint_steps=torch.tensor([1.0, 2.0, 3.0, 1.0, 4.0], dtype=torch.float64),
        value_goal_steps=torch.tensor([3.0, 5.0, 4.0, 2.0, 6.0], dtype=torch.float64),
    )


def loss_terms(agent, batch) -> dict[str, torch.Tensor]:
    features = agent.critic.trunk(torch.cat([batch[k] for k in ("observations", "waypoints", "value_goals", "actor_goals")]))
    s, w, g, actor_goal = torch.split(features, B)
    critic, _ = agent.critic_loss(s, w, g, batch["actions"], batch["waypoint_steps"])
    invariance, _ = agent.invariance_loss(s, batch["actions"])
    actor, _ = agent.actor_loss(s, actor_goal, batch["observations"], batch["actor_goals"], batch["actions"])
    return {"critic": critic, "invariance": invariance, "actor": actor}


def compute() -> dict:
    result = {}
    for variant, overrides in VARIANTS.items():
        agent, batch = fixed_agent(overrides), fixed_batch()
        entry = {}
        for name in ("critic", "invariance", "actor"):
            agent.zero_grad()
            loss = loss_terms(agent, batch)[name]
            loss.backward()
            gradients = {
                parameter_name: [parameter.grad.sum().item(), parameter.grad.norm().item()]
                for parameter_name, parameter in sorted(agent.named_parameters()) if parameter.grad is not None
            }
            entry[name] = {"loss": loss.item(), "gradients": gradients}
        result[variant] = entry
    return result


@pytest.fixture(scope="module")
def stored():
    return json.loads(FIXTURE.read_text())


@pytest.fixture(scope="module")
def measured():
    return compute()


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("term", ["critic", "invariance", "actor"])
def test_loss_and_gradients_match_the_fixture(stored, measured, variant, term):
    want, got = stored[variant][term], measured[variant][term]
    assert got["loss"] == pytest.approx(want["loss"], rel=1e-9, abs=1e-12)
    assert sorted(got["gradients"]) == sorted(want["gradients"]), "the parameters this loss trains changed"
    for name, values in want["gradients"].items():
        assert got["gradients"][name] == pytest.approx(values, rel=1e-9, abs=1e-12), name


def test_the_variants_differ_where_the_release_differs(measured):
    """The fixture would not catch a switch that does nothing: the two forms give other values."""
    for term in ("critic", "invariance", "actor"):
        assert measured["previous"][term]["loss"] != pytest.approx(measured["release"][term]["loss"], rel=1e-6)


def test_the_defaults_are_the_release_form():
    config = get_config("mqe")
    assert {key: config[key] for key in MQE_RELEASE} == MQE_RELEASE


def test_the_critic_loss_exercises_both_branches():
    """With these tensors some pairs lie above the linear-continuation threshold in both forms, so
    the fixture pins the continuation as well as the exponential."""
    for overrides in VARIANTS.values():
        agent, batch = fixed_agent(overrides), fixed_batch()
        features = agent.critic.trunk(torch.cat([batch[k] for k in ("observations", "waypoints", "value_goals")]))
        s, w, g = torch.split(features, B)
        with torch.no_grad():
            d = agent.pairwise_distance(agent.critic.phi(torch.cat([s, batch["actions"]], -1)), agent.critic.psi(g))
            d_next = agent.pairwise_distance(agent.critic.psi(w), agent.critic.psi(g))
            shift = -batch["waypoint_steps"][:, None] * np.log(agent.gamma)
        delta = d - d_next if agent.config["loss_linear_form"] == "release" else d - d_next - shift
        above = delta > agent.config["loss_linear_threshold"]
        assert above.any() and (~above).any()


if __name__ == "__main__":
    FIXTURE.parent.mkdir(exist_ok=True)
    FIXTURE.write_text(json.dumps(compute(), indent=1, sort_keys=True) + "\n")
    print(f"wrote {FIXTURE}", file=sys.stderr)
