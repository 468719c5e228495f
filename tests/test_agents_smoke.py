"""Every agent trains (forward, backward, Adam step) on image and state batches, gives every
parameter a gradient (DistributedDataParallel without find_unused_parameters needs that), and its
export methods have the right shapes with a batch axis that stays dynamic for ONNX."""

import pytest
import torch

from mqe.agents import AGENTS, get_config, make_agent

B = 8
IMAGE_SIZE = 32
STATE_DIM = 4
ACTION_DIM = 7
SPECS = {"image": (("image", IMAGE_SIZE), "small_conv"), "state": (("state", STATE_DIM), "mlp")}


def tiny(name: str, trunk: str) -> dict:
    config = get_config(name)
    config["trunk"] = trunk
    sizes = dict(latent_dim=32, value_hidden_dims=(32, 32), actor_hidden_dims=(32, 32), small_conv_channels=(8, 16))
    config.update({k: v for k, v in sizes.items() if k in config})
    return config


def make_batch(kind: str, generator: torch.Generator) -> dict[str, torch.Tensor]:
    def observations():
        if kind == "image":
            return torch.randint(0, 256, (B, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=torch.uint8, generator=generator)
        return torch.randn(B, STATE_DIM, generator=generator)

    batch = {key: observations() for key in ("observations", "next_observations", "waypoints", "value_goals", "actor_goals")}
    batch["actions"] = torch.randn(B, ACTION_DIM, generator=generator).clamp(-1, 1)
    batch["waypoint_steps"] = torch.randint(1, 4, (B,), generator=generator).float()
    # trajectory goals, and (for the baselines) current-state (0) and random (-1) goals
    batch["value_goal_steps"] = torch.tensor([0, -1, 3, 4, 5, 0, 1, 2], dtype=torch.float32)
    return batch


@pytest.mark.parametrize("kind", ["image", "state"])
@pytest.mark.parametrize("name", sorted(AGENTS))
def test_agent_trains_and_exports(name, kind):
    torch.manual_seed(0)
    spec, trunk = SPECS[kind]
    agent = make_agent(name, tiny(name, trunk), spec, ACTION_DIM)
    generator = torch.Generator().manual_seed(1)
    batch = make_batch(kind, generator)
    trainable = [p for p in agent.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(trainable, lr=agent.config["lr"])
    before = [p.detach().clone() for p in trainable]

    loss, metrics = agent(batch)
    assert loss.dim() == 0 and torch.isfinite(loss)
    assert metrics and all(torch.isfinite(v).all() for v in metrics.values())
    assert all(key.split("/")[0] in ("critic", "actor", "value", "dynamics", "total_loss") for key in metrics)
    loss.backward()
    no_grad = [n for n, p in agent.named_parameters() if p.requires_grad and (p.grad is None or not torch.isfinite(p.grad).all())]
    assert not no_grad, f"parameters without a finite gradient: {no_grad}"
    optimizer.step()
    agent.after_optimizer_step()
    assert all(not torch.equal(b, p) for b, p in zip(before, trainable) if p.grad.abs().sum() > 0)
    loss_after, _ = agent(batch)
    assert torch.isfinite(loss_after)

    agent.eval()
    with torch.no_grad():
        goals, observations = batch["actor_goals"], batch["observations"]
        goal_features = agent.encode_actor_goal(goals)
        assert goal_features.dim() == 2 and goal_features.shape[0] == B
        actions = agent.act_from_goal_features(observations, goal_features)
        assert actions.shape == (B, ACTION_DIM)
        assert torch.allclose(actions, agent.act(observations, goals))
        # the goal side is separable: actions for one observation do not depend on the others in the batch
        assert torch.allclose(agent.act_from_goal_features(observations[:1], goal_features[:1]), actions[:1], atol=1e-5)
        if agent.has_distance:
            embedding = agent.encode_critic_goal(goals)
            assert embedding.dim() == 2 and embedding.shape[0] == B
            distance = agent.distance_to_goal_embedding(observations, embedding)
            assert distance.shape == (B,) and torch.all(distance >= 0)
            assert torch.allclose(agent.distance_to_goal_embedding(goals, embedding), torch.zeros(B), atol=1e-5)


class ExportMethod(torch.nn.Module):
    def __init__(self, agent, method):
        super().__init__()
        self.agent, self.method = agent, method

    def forward(self, *inputs):
        return getattr(self.agent, self.method)(*inputs)


@pytest.mark.parametrize("name", ["mqe", "qrl"])
def test_export_methods_keep_batch_axis_dynamic(name):
    """torch.export (what the ONNX exporter traces) must not specialise the batch size."""
    torch.manual_seed(0)
    agent = make_agent(name, tiny(name, "small_conv"), ("image", IMAGE_SIZE), ACTION_DIM).eval()
    images = torch.randint(0, 256, (2, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=torch.uint8)
    with torch.no_grad():
        features, embedding = agent.encode_actor_goal(images), agent.encode_critic_goal(images)
    batch = torch.export.Dim("batch")
    for method, inputs in [
        ("encode_actor_goal", (images,)),
        ("encode_critic_goal", (images,)),
        ("act_from_goal_features", (images, features)),
        ("distance_to_goal_embedding", (images, embedding)),
    ]:
        program = torch.export.export(ExportMethod(agent, method), inputs, dynamic_shapes=(tuple({0: batch} for _ in inputs),))
        bigger = tuple(torch.cat([x, x[:1]]) for x in inputs)
        assert program.module()(*bigger).shape[0] == 3, method


def test_registry_accepts_numpy_sizes_and_refuses_bad_specs():
    import numpy as np

    agent = make_agent("gcbc", tiny("gcbc", "mlp"), ("state", np.int64(STATE_DIM)), np.int64(ACTION_DIM))
    assert agent.observation_spec == ("state", STATE_DIM) and agent.action_dim == ACTION_DIM
    with pytest.raises(ValueError, match="observation spec"):
        make_agent("gcbc", tiny("gcbc", "mlp"), ("state", 0), ACTION_DIM)
    with pytest.raises(ValueError, match="action_dim"):
        make_agent("gcbc", tiny("gcbc", "mlp"), ("state", STATE_DIM), 2.5)


def test_registry_gives_fresh_configs_with_bridge_defaults():
    config = get_config("mqe")
    assert config["goal_sampling"]["gamma"] == 0.98
    assert config["goal_sampling"]["waypoint_lambda"] == 0.95
    assert config["goal_sampling"]["p_next_waypoint"] == 0.2
    assert (config["latent_dim"], config["mrn_components"], config["ensemble_size"]) == (256, 8, 2)
    assert config["value_hidden_dims"] == config["actor_hidden_dims"] == (256, 256, 256)
    assert config["lr"] == 3e-4 and config["trunk"] == "resnet34" and config["layer_norm"]
    config["goal_sampling"]["gamma"] = 0.5
    assert get_config("mqe")["goal_sampling"]["gamma"] == 0.98
    assert get_config("gciql")["goal_sampling"]["value_p_curgoal"] == 0.2
    assert get_config("gciql")["goal_sampling"]["value_p_randomgoal"] == 0.3
    assert get_config("qrl")["goal_sampling"]["value_p_randomgoal"] == 1.0
    for name in AGENTS:
        assert get_config(name)["agent_name"] == name
