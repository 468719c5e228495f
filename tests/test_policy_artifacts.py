"""Real policy exports for the policy-node tests, and the runtime's agreement with torch.

`exported_policy(kind)` exports a random-init small_conv agent with mqe.export.export_agent once
per test session (other test files import it from here) and returns the export directory.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest

from mqe import contract

IMAGE_SIZE = 32
ACTION_STATS = contract.ActionStats(mean=(0.0, 0.01, -0.01, 0.0, 0.0, 0.0, 0.5), std=(0.01, 0.01, 0.01, 0.05, 0.05, 0.05, 0.5))
_EXPORTS: dict[str, Path] = {}
_ROOT = Path(tempfile.mkdtemp(prefix="mqe-policy-exports-"))


def tiny_agent(name: str = "mqe", seed: int = 0):
    import torch

    from mqe.agents import get_config, make_agent

    torch.manual_seed(seed)
    config = get_config(name)
    small = dict(trunk="small_conv", small_conv_channels=(8, 16), latent_dim=16, mrn_components=2)
    small.update({key: (16,) for key in config if key.endswith("hidden_dims")})
    config.update({key: value for key, value in small.items() if key in config})
    return make_agent(name, config, ("image", IMAGE_SIZE), contract.ACTION_DIM), config


def exported_policy(kind: str = "mqe") -> Path:
    """A read-only export: "mqe" (with distance.onnx) or "nan" (an MQE export whose weights are NaN).
    Copy it before modifying it."""
    if kind not in _EXPORTS:
        import torch

        from mqe.export import export_agent

        agent, config = tiny_agent("mqe")
        if kind == "nan":
            with torch.no_grad():
                for parameter in agent.parameters():
                    parameter.fill_(float("nan"))
        _EXPORTS[kind] = export_agent(
            agent,
            _ROOT / kind,
            image_size=IMAGE_SIZE,
            camera="image_0",
            action_stats=ACTION_STATS,
            gamma=0.98,
            control_rate_hz=5.0,
            training_config=config,
            dataset_fingerprint="test",
            train_step=0,
        )
    return _EXPORTS[kind]


def copy_export(kind: str, destination: Path) -> Path:
    return Path(shutil.copytree(exported_policy(kind), destination))


def random_image(rng: np.random.Generator, height: int = 48, width: int = 64) -> np.ndarray:
    return rng.integers(0, 256, (height, width, 3), dtype=np.uint8)


def test_runtime_matches_torch_agent_in_robot_units():
    """OnnxPolicy (onnxruntime only) gives the torch agent's action, un-normalised, and its steps."""
    import torch

    from mqe.runtime import OnnxPolicy

    agent, _ = tiny_agent("mqe")
    agent.eval()
    policy = OnnxPolicy(exported_policy("mqe"), threads=1)
    rng = np.random.default_rng(0)
    goal, observation = random_image(rng, 480, 640), random_image(rng, 480, 640)
    policy.set_goal(goal)
    action = policy.act(observation)
    steps = policy.steps_to_goal(observation)

    to_tensor = lambda image: torch.from_numpy(contract.resize_for_policy(image, IMAGE_SIZE)[None])  # noqa: E731
    with torch.no_grad():
        expected = agent.act(to_tensor(observation), to_tensor(goal)).numpy()[0]
        distance = agent.distance_to_goal_embedding(to_tensor(observation), agent.encode_critic_goal(to_tensor(goal)))
    assert action.shape == (contract.ACTION_DIM,) and action.dtype == np.float32
    np.testing.assert_allclose(action, ACTION_STATS.unnormalize(expected), atol=1e-4)
    assert steps == pytest.approx(float(contract.steps_from_distance(distance.item(), 0.98)), rel=1e-4, abs=1e-4)
    assert policy.image_size == IMAGE_SIZE and policy.camera == "image_0"
    assert policy.gamma == pytest.approx(0.98) and policy.control_rate_hz == pytest.approx(5.0)
    assert policy.metadata["agent"] == "mqe" and policy.has_distance


def test_goal_is_encoded_once_and_conditions_the_action():
    from mqe.runtime import OnnxPolicy

    policy = OnnxPolicy(exported_policy("mqe"), threads=1)
    rng = np.random.default_rng(1)
    observation = random_image(rng)
    with pytest.raises(RuntimeError, match="set_goal"):
        policy.act(observation)
    policy.set_goal(random_image(rng))
    first = policy.act(observation)
    np.testing.assert_array_equal(first, policy.act(observation))  # deterministic
    policy.set_goal(np.zeros((48, 64, 3), np.uint8))
    assert not np.allclose(first, policy.act(observation))
