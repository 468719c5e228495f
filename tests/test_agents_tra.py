"""TRA-g (mqe.agents.tra): the symmetric InfoNCE alignment and the FiLM actor on hand-computed tensors,
and the whole loss as the sum the module docstring states."""

import math

import pytest
import torch

from mqe.agents import get_config, make_agent
from mqe.agents.tra import FiLMActor, symmetric_info_nce


def test_symmetric_info_nce_on_hand_computed_tensors():
    # logits = phi psi^T / sqrt(2) = [[a, a], [0, a]] with a = 1/sqrt(2)
    phi = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    psi = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    a = 1 / math.sqrt(2)
    # rows: log 2 (row 0: equal logits), log(1 + e^-a) (row 1: [0, a], label 1);
    # columns: log(1 + e^-a) (column 0: [a, 0], label 0), log 2 (column 1: [a, a])
    expected = 0.5 * (0.5 * (math.log(2) + math.log(1 + math.exp(-a))) + 0.5 * (math.log(1 + math.exp(-a)) + math.log(2)))
    loss, logits = symmetric_info_nce(phi, psi)
    assert torch.allclose(logits, torch.tensor([[a, a], [0.0, a]]))
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_info_nce_is_not_symmetric_in_its_rows_only():
    """A batch where rows and columns disagree: the loss is the mean of both cross-entropies."""
    phi = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    psi = torch.tensor([[1.0, 0.0, 1.0], [0.0, 3.0, 0.0], [0.0, 0.0, 1.0]])
    logits = (phi @ psi.T) / math.sqrt(3)
    rows = -torch.log_softmax(logits, dim=1).diagonal().mean()
    columns = -torch.log_softmax(logits, dim=0).diagonal().mean()
    assert rows.item() != pytest.approx(columns.item(), rel=1e-3)
    loss, _ = symmetric_info_nce(phi, psi)
    assert loss.item() == pytest.approx(0.5 * (rows + columns).item(), rel=1e-6)


def test_film_actor_on_hand_computed_weights():
    """One hidden unit, no LayerNorm: mu = w_out * gelu((w x + b) (1 + gamma(z)) + beta(z)) + b_out."""
    actor = FiLMActor(in_dim=2, condition_dim=1, hidden_dims=(1,), action_dim=1, layer_norm=False, const_std=True)
    with torch.no_grad():
        actor.linears[0].weight.copy_(torch.tensor([[0.5, -1.0]]))
        actor.linears[0].bias.fill_(0.25)
        actor.films[0].weight.copy_(torch.tensor([[2.0], [-1.0]]))  # gamma = 2 z, beta = -z
        actor.films[0].bias.zero_()
        actor.head.weight.fill_(3.0)
        actor.head.bias.fill_(0.1)
    x, z = torch.tensor([[1.0, 0.5]]), torch.tensor([[0.5]])
    pre = 0.5 * 1.0 - 1.0 * 0.5 + 0.25  # 0.25
    modulated = pre * (1 + 2 * 0.5) + (-0.5)  # 0.0
    gelu = 0.5 * modulated * (1 + math.erf(modulated / math.sqrt(2)))
    assert actor(x, z).item() == pytest.approx(3.0 * gelu + 0.1, abs=1e-7)
    z2 = torch.tensor([[-1.0]])  # gamma -2, beta 1: 0.25 * -1 + 1 = 0.75
    gelu2 = 0.5 * 0.75 * (1 + math.erf(0.75 / math.sqrt(2)))
    assert actor(x, z2).item() == pytest.approx(3.0 * gelu2 + 0.1, rel=1e-6)


def tiny_state_agent():
    config = get_config("tra")
    config.update(trunk="mlp", value_hidden_dims=(8,), latent_dim=4, actor_hidden_dims=(8,), alignment=0.5, repr_reg=0.1)
    torch.manual_seed(0)
    return make_agent("tra", config, ("state", 3), 2)


def state_batch(seed=0, batch=6):
    g = torch.Generator().manual_seed(seed)
    keys = ("observations", "next_observations", "waypoints", "value_goals", "actor_goals")
    out = {k: torch.randn(batch, 3, generator=g) for k in keys}
    out["actions"] = torch.rand(batch, 2, generator=g) * 2 - 1
    out["waypoint_steps"] = torch.ones(batch)
    out["value_goal_steps"] = torch.full((batch,), 3.0)
    return out


def test_total_loss_is_alignment_weighted_nce_plus_behaviour_cloning():
    agent, batch = tiny_state_agent(), state_batch()
    total, metrics = agent(batch)
    phi, psi_value, psi_actor = (agent.encode_state(batch["observations"]), agent.encode_goal(batch["value_goals"]),
                                 agent.encode_goal(batch["actor_goals"]))
    nce, _ = symmetric_info_nce(phi, psi_value)
    alignment = nce + 0.1 * (phi.square().mean() + psi_value.square().mean())
    mean = agent.actor(phi, psi_actor)
    # const std 1: log N(a; mu, I) = -0.5 |a - mu|^2 - (A / 2) log(2 pi)
    bc = (0.5 * (batch["actions"] - mean).square().sum(-1) + math.log(2 * math.pi)).mean()
    assert total.item() == pytest.approx((0.5 * alignment + bc).item(), rel=1e-6)
    assert metrics["value/info_nce"].item() == pytest.approx(nce.item(), rel=1e-6)


def test_behaviour_cloning_trains_both_encoders_and_alignment_learns():
    """The actor loss alone reaches phi and psi (the actor is conditioned on the learned
    representations); the alignment loss falls on a fixed batch."""
    agent, batch = tiny_state_agent(), state_batch(batch=16)
    for film in agent.actor.films:  # non-zero FiLM so psi's gradient through the modulation is not zero
        torch.nn.init.normal_(film.weight, std=0.1)
    mean = agent.actor(agent.encode_state(batch["observations"]), agent.encode_goal(batch["actor_goals"]))
    (mean - batch["actions"]).square().sum().backward()
    assert agent.phi.net[0].weight.grad.abs().sum() > 0 and agent.psi.net[0].weight.grad.abs().sum() > 0
    agent.zero_grad()
    optimizer = torch.optim.Adam(agent.parameters(), lr=1e-2)
    first = agent(batch)[1]["value/info_nce"].item()
    for _ in range(200):
        optimizer.zero_grad()
        agent(batch)[0].backward()
        optimizer.step()
    assert agent(batch)[1]["value/info_nce"].item() < 0.5 * first


def test_image_tra_exports_to_onnx_with_parity(tmp_path):
    """TRA-g goes through the same exporter as the other agents (small conv trunk, image mode):
    the goal graph gives psi(g), the policy graph acts from it; onnxruntime matches torch."""
    from mqe import contract
    from mqe.export import check_parity, export_agent

    size = 32
    stats = contract.ActionStats(mean=(0.0,) * contract.ACTION_DIM, std=(0.1,) * contract.ACTION_DIM)
    config = get_config("tra")
    config.update(trunk="small_conv", small_conv_channels=(8, 16), latent_dim=16, value_hidden_dims=(16,), actor_hidden_dims=(16,))
    torch.manual_seed(0)
    agent = make_agent("tra", config, ("image", size), contract.ACTION_DIM)
    for film in agent.actor.films:  # a trained-like FiLM, so the goal features matter to the action
        torch.nn.init.normal_(film.weight, std=0.3)
    out_dir = export_agent(agent, tmp_path / "policy", image_size=size, camera="image_0", action_stats=stats, gamma=0.98,
                           control_rate_hz=5.0, training_config={"agent": {"name": "tra"}}, dataset_fingerprint="tra",
                           train_step=1)
    errors = check_parity(agent, out_dir, action_stats=stats, gamma=0.98)
    assert set(errors) == {contract.ACTOR_GOAL_FEATURES, contract.ACTION}
    assert max(errors.values()) <= 1e-4, errors
