"""MQE's losses, each checked against its formula (issue #2)."""

import math

import pytest
import torch

from mqe.agents import get_config, make_agent
from mqe.agents.common import ddpg_bc_loss
from mqe.agents.mqe import backup_pair_loss, diagonal_and_all_pairs_mean, linear_exp, release_backup_pair_loss
from mqe.ogbench.presets import MQE_PREVIOUS
from mqe.quasimetric import mrn_distance

B = 6


def tiny_config(trunk="mlp"):
    config = get_config("mqe")
    config.update(
        trunk=trunk,
        latent_dim=16,
        mrn_components=2,
        value_hidden_dims=(16, 16),
        actor_hidden_dims=(16, 16),
        small_conv_channels=(8, 16),
    )
    # the formulas below are written with the unscaled MRN distance and exp's tangent; the release
    # forms (the defaults) are checked against theirs in the tests at the end of this file
    config.update(MQE_PREVIOUS)
    return config


def make_batch(kind="state", seed=0, obs_dim=3, action_dim=2):
    g = torch.Generator().manual_seed(seed)

    def observations():
        if kind == "image":
            return torch.randint(0, 256, (B, 16, 16, 3), dtype=torch.uint8, generator=g)
        return torch.randn(B, obs_dim, generator=g)

    return dict(
        observations=observations(),
        next_observations=observations(),
        waypoints=observations(),
        value_goals=observations(),
        actor_goals=observations(),
        actions=torch.randn(B, action_dim, generator=g),
        waypoint_steps=torch.randint(1, 5, (B,), generator=g).float(),
        value_goal_steps=torch.randint(5, 9, (B,), generator=g).float(),
    )


def state_agent(**overrides):
    torch.manual_seed(0)
    config = tiny_config()
    config.update(overrides)
    return make_agent("mqe", config, ("state", 3), 2)


def test_pair_loss_minimiser_is_the_target():
    """Gradient descent on a free scalar d converges to d' for exp(d - d') - d."""
    target = torch.tensor([-1.0, 0.3, 4.0, 30.0])
    d = (target + 3.0).requires_grad_(True)  # start 3 above: inside the linear part for threshold 2
    optimizer = torch.optim.SGD([d], lr=0.1)
    for _ in range(1500):
        optimizer.zero_grad()
        backup_pair_loss(d, target, threshold=2.0).sum().backward()
        optimizer.step()
    assert d.detach() == pytest.approx(target, abs=1e-3)


def test_papers_minus_target_variant_has_no_minimum():
    """The paper's Eq. 10, exp(d - d') - d', decreases forever as d -> -inf: no minimiser."""
    target = torch.tensor(1.0, dtype=torch.float64)
    d = torch.linspace(-30, 5, 200, dtype=torch.float64, requires_grad=True)
    papers = torch.exp(d - target) - target
    (grad,) = torch.autograd.grad(papers.sum(), d)
    assert torch.all(grad > 0)  # strictly increasing in d everywhere
    assert torch.all(papers[1:] > papers[:-1])
    ours = backup_pair_loss(d, target, threshold=5.0)
    assert d[ours.argmin()].item() == pytest.approx(1.0, abs=0.3)
    # gradient descent on it runs away instead of settling
    d = torch.tensor(1.0, requires_grad=True)
    optimizer = torch.optim.SGD([d], lr=0.5)
    for _ in range(200):
        optimizer.zero_grad()
        (torch.exp(d - 1.0) - 1.0).backward()
        optimizer.step()
    assert d.item() < -3.0


def test_pair_loss_never_overflows():
    d = torch.tensor([1e4, 1e6, 80.0, -1e4], requires_grad=True)
    loss = backup_pair_loss(d, torch.zeros(4), threshold=5.0)
    (grad,) = torch.autograd.grad(loss.sum(), d)
    assert torch.isfinite(loss).all() and torch.isfinite(grad).all()
    # above the threshold the exp is continued by its tangent: slope exp(5) - 1
    assert grad[:3] == pytest.approx([math.exp(5) - 1] * 3, rel=1e-5)
    assert grad[3].item() == pytest.approx(-1.0)
    # continuous and smooth at the threshold
    x = torch.tensor([5.0 - 1e-4, 5.0, 5.0 + 1e-4])
    assert linear_exp(x, 5.0) == pytest.approx(torch.exp(x), rel=1e-6)


def test_pair_weighting_is_half_diagonal_half_all_pairs():
    loss = torch.arange(16.0).reshape(4, 4)
    expected = 0.5 * torch.tensor([0.0, 5, 10, 15]).mean() + 0.5 * loss.mean()
    assert diagonal_and_all_pairs_mean(loss) == pytest.approx(expected.item())
    stacked = torch.stack([loss, 2 * loss])  # ensemble members are averaged
    assert diagonal_and_all_pairs_mean(stacked) == pytest.approx(1.5 * expected.item())


def test_critic_loss_matches_per_pair_formula():
    agent = state_agent()
    batch = make_batch()
    critic, gamma = agent.critic, agent.gamma
    loss, metrics = agent.critic_loss(
        batch["observations"], batch["waypoints"], batch["value_goals"], batch["actions"], batch["waypoint_steps"]
    )
    total = 0.0
    with torch.no_grad():
        phi = critic.phi(torch.cat([batch["observations"], batch["actions"]], -1))
        psi_g, psi_w = critic.psi(batch["value_goals"]), critic.psi(batch["waypoints"])
        for e in range(2):
            diagonal, all_pairs = 0.0, 0.0
            for i in range(B):
                for j in range(B):
                    d = mrn_distance(phi[e, i], psi_g[e, j], 2)
                    target = mrn_distance(psi_w[e, i], psi_g[e, j], 2) - batch["waypoint_steps"][i] * math.log(gamma)
                    pair = torch.exp(torch.clamp(d - target, max=5.0)) * (1 + torch.relu(d - target - 5.0)) - d
                    all_pairs += pair / B**2
                    diagonal += pair / B if i == j else 0.0
            total += (0.5 * diagonal + 0.5 * all_pairs) / 2
    assert loss.item() == pytest.approx(total.item(), rel=1e-5)
    assert metrics["critic/loss"] == loss


def test_critic_target_is_not_differentiated():
    agent = state_agent()
    batch = make_batch()
    waypoints = batch["waypoints"].clone().requires_grad_(True)
    loss, _ = agent.critic_loss(
        batch["observations"], waypoints, batch["value_goals"], batch["actions"], batch["waypoint_steps"]
    )
    loss.backward()
    assert waypoints.grad is None  # stopgrad(d(psi(w), psi(g)))


def copy_psi_into_phi(agent):
    """Make phi(s, a) == psi(s) for every action: same weights, zero weights on the action inputs."""
    with torch.no_grad():
        for phi_layer, psi_layer in zip(agent.critic.phi.net, agent.critic.psi.net):
            for name, psi_param in psi_layer.named_parameters():
                phi_param = getattr(phi_layer, name)
                phi_param.zero_()
                phi_param[(slice(None),) * 1 + (slice(0, psi_param.shape[1]),)].copy_(psi_param)


@pytest.mark.parametrize("invariance", ["diagonal", "all_pairs"])
def test_invariance_zero_iff_phi_equals_psi(invariance):
    agent = state_agent(invariance=invariance)
    batch = make_batch()
    loss, _ = agent.invariance_loss(batch["observations"], batch["actions"])
    assert loss.item() > 1e-3
    copy_psi_into_phi(agent)
    phi = agent.critic.phi(torch.cat([batch["observations"], batch["actions"]], -1))
    assert torch.allclose(phi, agent.critic.psi(batch["observations"]), atol=1e-6)
    loss, _ = agent.invariance_loss(batch["observations"], batch["actions"])
    assert loss.item() < 1e-10


def test_invariance_all_pairs_formula():
    agent = state_agent(invariance="all_pairs")
    batch = make_batch()
    s, a = batch["observations"], batch["actions"]
    loss, _ = agent.invariance_loss(s, a)
    with torch.no_grad():
        psi = agent.critic.psi(s)
        expected = torch.stack([
            mrn_distance(psi[:, i], agent.critic.phi(torch.cat([s[i], a[j]])[None])[:, 0], 2).square()
            for i in range(B) for j in range(B)
        ]).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def trunk_grads(agent, batch):
    agent.zero_grad()
    loss, _ = agent(batch)
    loss.backward()
    return {n: p.grad.clone() for n, p in agent.critic.named_parameters()}


def test_invariance_does_not_train_the_image_trunk(monkeypatch):
    torch.manual_seed(0)
    agent = make_agent("mqe", tiny_config("small_conv"), ("image", 16), 2)
    batch = make_batch("image")
    with_invariance = trunk_grads(agent, batch)
    original = agent.invariance_loss
    monkeypatch.setattr(agent, "invariance_loss", lambda f, a: (0.0 * original(f, a)[0], {}))
    without_invariance = trunk_grads(agent, batch)
    for name in with_invariance:
        if name.startswith("trunk."):
            assert torch.allclose(with_invariance[name], without_invariance[name], atol=1e-7), name
    assert not torch.allclose(with_invariance["psi.net.0.weight"], without_invariance["psi.net.0.weight"])


def test_actor_loss_leaves_critic_untouched():
    agent = state_agent()
    batch = make_batch()
    features = agent.critic.trunk(batch["observations"])
    goal_features = agent.critic.trunk(batch["actor_goals"])
    loss, metrics = agent.actor_loss(features, goal_features, batch["observations"], batch["actor_goals"], batch["actions"])
    loss.backward()
    for name, param in agent.critic.named_parameters():
        assert param.grad is None or torch.all(param.grad == 0), name
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in agent.actor.parameters())
    # q is the worst (largest-distance) ensemble member at the policy's mean action
    with torch.no_grad():
        mean = agent.actor.mean(batch["observations"], batch["actor_goals"])
        phi = agent.critic.phi(torch.cat([batch["observations"], mean], -1))
        d = mrn_distance(phi, agent.critic.psi(batch["actor_goals"]), 2)
    assert metrics["actor/q_mean"].item() == pytest.approx(-d.max(0).values.mean().item(), rel=1e-5)


def test_ddpg_bc_normalises_by_stopgrad_mean_abs_q():
    q = torch.tensor([-2.0, -4.0, 1.0], requires_grad=True)
    log_prob = torch.tensor([-1.0, -3.0, -2.0], requires_grad=True)
    loss, metrics = ddpg_bc_loss(q, log_prob, alpha=0.5)
    assert metrics["actor/q_loss"].item() == pytest.approx(5.0 / 3 / (7.0 / 3), rel=1e-5)
    assert loss.item() == pytest.approx(5 / 7 + 0.5 * 2.0, rel=1e-5)
    loss.backward()
    # the scale is a constant: d loss / d q_i = -1 / (B * mean|q|), not the derivative of a ratio
    assert q.grad == pytest.approx(torch.full((3,), -1 / (3 * 7 / 3)), rel=1e-5)
    assert log_prob.grad == pytest.approx(torch.full((3,), -0.5 / 3), rel=1e-5)
    # scaling q does not change the q loss
    assert ddpg_bc_loss(10 * q.detach(), log_prob, 0.5)[1]["actor/q_loss"] == pytest.approx(metrics["actor/q_loss"].item())


def test_forward_total_is_sum_of_the_three_losses():
    agent = state_agent()
    total, metrics = agent(make_batch())
    parts = metrics["critic/loss"] + metrics["critic/invariance_loss"] + metrics["actor/loss"]
    assert total.item() == pytest.approx(parts.item(), rel=1e-6)
    assert all(not v.requires_grad for v in metrics.values())
    assert all(k.split("/")[0] in ("critic", "actor", "total_loss") for k in metrics)


def test_exported_distance_is_worst_member_of_psi_distance():
    agent = state_agent().eval()
    batch = make_batch()
    embedding = agent.encode_critic_goal(batch["value_goals"])
    assert embedding.shape == (B, 2 * 16)
    distance = agent.distance_to_goal_embedding(batch["observations"], embedding)
    psi_s, psi_g = agent.critic.psi(batch["observations"]), agent.critic.psi(batch["value_goals"])
    assert torch.allclose(distance, mrn_distance(psi_s, psi_g, 2).max(0).values)
    assert agent.distance_to_goal_embedding(batch["value_goals"], embedding).abs().max() == 0  # d(g, g) = 0


def test_config_validation():
    config = tiny_config()
    config["latent_dim"] = 18
    with pytest.raises(ValueError, match="latent_dim"):
        make_agent("mqe", config, ("state", 3), 2)
    config = tiny_config()
    config["alpah"] = 1.0
    with pytest.raises(ValueError, match="alpah"):
        make_agent("mqe", config, ("state", 3), 2)
    config = tiny_config()
    config["goal_sampling"]["value_p_randomgoal"] = 0.3
    with pytest.raises(ValueError, match="value_p_randomgoal"):
        make_agent("mqe", config, ("state", 3), 2)
    with pytest.raises(ValueError, match="unknown agent"):
        get_config("sac")


def test_release_distance_is_the_mrn_mean_over_sqrt_latent_with_epsilon():
    torch.manual_seed(0)
    config = get_config("mqe")
    config.update(trunk="mlp", latent_dim=16, mrn_components=2, value_hidden_dims=(16,), actor_hidden_dims=(16,))
    agent = make_agent("mqe", config, ("state", 3), 2)
    x, y = torch.randn(4, 16), torch.randn(4, 16)
    expected = mrn_distance(x, y, 2, l2_epsilon=1e-8) / 4.0  # sqrt(16)
    assert torch.allclose(agent.distance(x, y), expected)
    assert torch.allclose(agent.pairwise_distance(x, y).diagonal(), expected, atol=1e-6)
    # the L2 half's epsilon: d(x, x) = eps * sqrt(M / 2) per component, here 1e-8 * 2 / 4
    assert agent.distance(x, x).max().item() == pytest.approx(1e-8 * 2 / 4, rel=1e-3)


def test_release_pair_loss_by_hand():
    """exp(d - d_next - shift) - d below the threshold on d - d_next, d - d_next (slope 1) above it."""
    d = torch.tensor([1.0, 4.0, 9.0], requires_grad=True)
    d_next = torch.tensor([0.5, 0.5, 1.0])
    shift = torch.tensor([0.1, 0.2, 0.3])
    loss = release_backup_pair_loss(d, d_next, shift, threshold=5.0)
    expected = torch.tensor([math.exp(0.5 - 0.1) - 1.0, math.exp(3.5 - 0.2) - 4.0, 8.0])
    assert torch.allclose(loss, expected)
    loss.sum().backward()
    assert torch.allclose(d.grad, torch.tensor([math.exp(0.4) - 1.0, math.exp(3.3) - 1.0, 1.0]))
