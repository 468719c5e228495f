"""GCBC, GCIQL and QRL losses against their formulas (OGBench's implementations)."""

import math

import pytest
import torch
import torch.nn.functional as F

from mqe.agents import get_config, make_agent

B, OBS, ACT = 8, 3, 2


def tiny(name, **overrides):
    config = get_config(name)
    config.update(trunk="mlp", actor_hidden_dims=(16, 16))
    if "value_hidden_dims" in config:
        config.update(value_hidden_dims=(16, 16))
    if "latent_dim" in config:
        config["latent_dim"] = 16
    config.update(overrides)
    torch.manual_seed(0)
    return make_agent(name, config, ("state", OBS), ACT)


def make_batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    batch = {k: torch.randn(B, OBS, generator=g) for k in ("observations", "next_observations", "waypoints", "value_goals", "actor_goals")}
    batch["actions"] = torch.randn(B, ACT, generator=g).clamp(-1, 1)
    batch["waypoint_steps"] = torch.ones(B)
    batch["value_goal_steps"] = torch.tensor([0, -1, 3, 4, 5, 0, 1, 2], dtype=torch.float32)
    return batch


def test_gcbc_loss_is_gaussian_negative_log_likelihood():
    agent = tiny("gcbc")
    batch = make_batch()
    loss, metrics = agent(batch)
    mean = agent.actor.mean(batch["observations"], batch["actor_goals"])
    expected = (0.5 * (batch["actions"] - mean).square().sum(-1) + 0.5 * ACT * math.log(2 * math.pi)).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert set(metrics) >= {"actor/loss", "actor/mse", "actor/bc_log_prob"}


def test_gcbc_learned_std_gets_gradient():
    agent = tiny("gcbc", const_std=False)
    loss, _ = agent(make_batch())
    loss.backward()
    assert agent.actor.log_std.grad is not None and agent.actor.log_std.grad.abs().sum() > 0


def test_gciql_value_loss_is_expectile_regression_on_target_q():
    agent = tiny("gciql")
    batch = make_batch()
    with torch.no_grad():  # make the target differ from the online critic
        for p in agent.target_critic.parameters():
            p.add_(0.1 * torch.randn_like(p))
    s, g = batch["observations"], batch["value_goals"]
    loss, _ = agent.value_loss(batch, s, g)
    q = agent.target_critic.q_values(s, batch["actions"], g).min(0).values
    v = agent.state_value(s, g)
    u = q - v
    expected = (torch.where(u >= 0, 0.9, 0.1) * u.square()).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert torch.any(u > 0) and torch.any(u < 0)  # both sides of the asymmetric weight are exercised


def test_gciql_critic_target_uses_goal_reward_and_mask():
    agent = tiny("gciql")
    batch = make_batch()
    s, s_next, g = batch["observations"], batch["next_observations"], batch["value_goals"]
    loss, metrics = agent.critic_loss(batch, s, s_next, g)
    at_goal = batch["value_goal_steps"] == 0
    reward = torch.where(at_goal, 0.0, -1.0)
    target = reward + agent.gamma * (~at_goal).float() * agent.state_value(s_next, g).detach()
    q = agent.critic.q_values(s, batch["actions"], g)
    assert loss.item() == pytest.approx(((q - target).square().mean(-1).sum()).item(), rel=1e-5)
    assert torch.allclose(target[at_goal], torch.zeros(int(at_goal.sum())))  # no bootstrap at the goal


def test_gciql_target_is_an_exponential_moving_average():
    agent = tiny("gciql")
    online = [p.detach().clone() for p in agent.critic.parameters()]
    target_before = [p.detach().clone() for p in agent.target_critic.parameters()]
    assert all(torch.equal(a, b) for a, b in zip(online, target_before))  # starts as a copy
    assert not any(p.requires_grad for p in agent.target_critic.parameters())
    with torch.no_grad():
        for p in agent.critic.parameters():
            p.add_(1.0)
    agent.after_optimizer_step()
    for before, after in zip(target_before, agent.target_critic.parameters()):
        assert torch.allclose(after, before + 0.005, atol=1e-6)  # tau * (online + 1 - target)


@pytest.mark.parametrize("actor_loss", ["ddpgbc", "awr"])
def test_gciql_actor_never_updates_the_critic(actor_loss):
    agent = tiny("gciql", actor_loss=actor_loss)
    batch = make_batch()
    loss, metrics = agent.actor_loss(batch, batch["observations"], batch["actor_goals"])
    loss.backward()
    for name, p in list(agent.critic.named_parameters()) + list(agent.value.named_parameters()):
        assert p.grad is None or torch.all(p.grad == 0), name
    assert all(p.grad is not None for p in agent.actor.parameters())
    if actor_loss == "awr":
        with torch.no_grad():
            s, g, a = batch["observations"], batch["actor_goals"], batch["actions"]
            advantage = agent.critic.q_values(s, a, g).min(0).values - agent.state_value(s, g)
            weight = torch.exp(0.3 * advantage).clamp(max=100)
            mean = agent.actor.mean(s, g)
            log_prob = -0.5 * (a - mean).square().sum(-1) - 0.5 * ACT * math.log(2 * math.pi)
        assert loss.item() == pytest.approx(-(weight * log_prob).mean().item(), rel=1e-5)


def test_qrl_value_loss_formula_and_dual_ascent():
    agent = tiny("qrl")
    batch = make_batch()
    z = agent.value.psi(torch.cat([batch["observations"], batch["next_observations"], batch["value_goals"]]))
    z_s, z_next, z_g = z.split(B)
    with torch.no_grad():
        agent.log_lambda.fill_(math.log(2.0))
    loss, metrics = agent.value_loss(z_s, z_next, z_g)
    d_neg, d_pos = agent.value.distance(z_s, z_g), agent.value.distance(z_s, z_next)
    constraint = F.relu(d_pos - 1).square().mean()
    expected = (100 * F.softplus(5 - d_neg / 100)).mean() + 2.0 * constraint + 2.0 * (0.05 - constraint)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    loss.backward()
    # d loss / d log_lambda = lambda * (eps - constraint): descent raises lambda while the constraint is violated
    assert agent.log_lambda.grad.item() == pytest.approx((2.0 * (0.05 - constraint)).item(), rel=1e-5)
    assert metrics["value/lambda"].item() == pytest.approx(2.0)


def test_qrl_dynamics_and_actor():
    agent = tiny("qrl")
    batch = make_batch()
    z_s, z_next = agent.value.psi(batch["observations"]), agent.value.psi(batch["next_observations"])
    loss, _ = agent.dynamics_loss(z_s, z_next, batch["actions"])
    predicted = z_s + agent.dynamics(torch.cat([z_s, batch["actions"]], -1))
    expected = 0.5 * (agent.value.distance(z_next, predicted) + agent.value.distance(predicted, z_next)).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)

    agent.zero_grad()
    z_g = agent.value.psi(batch["actor_goals"])
    actor_loss, metrics = agent.actor_loss(batch, z_s, z_next, z_g)
    actor_loss.backward()
    frozen = list(agent.value.parameters()) + list(agent.dynamics.parameters()) + [agent.log_lambda]
    assert all(p.grad is None or torch.all(p.grad == 0) for p in frozen)
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in agent.actor.parameters())
    with torch.no_grad():
        action = agent.actor.mean(batch["observations"], batch["actor_goals"]).clamp(-1, 1)
        q = -agent.value.distance(z_s + agent.dynamics(torch.cat([z_s, action], -1)), z_g)
    assert metrics["actor/q_mean"].item() == pytest.approx(q.mean().item(), rel=1e-5)


def test_qrl_options_and_exported_units():
    mrn = tiny("qrl", quasimetric="mrn", mrn_components=2, actor_loss="awr")
    assert mrn.dynamics is None and mrn.value.mean_weight_logit is None
    loss, metrics = mrn(make_batch())
    assert torch.isfinite(loss) and "dynamics/loss" not in metrics
    agent = tiny("qrl").eval()
    batch = make_batch()
    embedding = agent.encode_critic_goal(batch["value_goals"])
    steps = agent.value.distance(agent.value.psi(batch["observations"]), agent.value.psi(batch["value_goals"]))
    exported = agent.distance_to_goal_embedding(batch["observations"], embedding)
    assert torch.allclose(exported / -math.log(agent.gamma), steps, rtol=1e-5)  # contract: steps = d / -log(gamma)
    with pytest.raises(ValueError, match="quasimetric"):
        tiny("qrl", quasimetric="l2")
    with pytest.raises(ValueError, match="multiple of 8"):
        tiny("qrl", latent_dim=12)
