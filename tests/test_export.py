"""ONNX export: contract layout, metadata, onnx.checker, and onnxruntime-vs-torch parity."""

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from mqe import contract
from mqe.agents import get_config as get_agent_config
from mqe.agents import make_agent
from mqe.export import check_parity, export_agent, read_metadata

SIZE = 32
STATS = contract.ActionStats(mean=(0.01, -0.02, 0.0, 0.1, 0.0, -0.1, 0.5), std=(0.02, 0.03, 0.01, 0.2, 0.1, 0.3, 0.5))


def _export(agent, out_dir, **overrides):
    kwargs = dict(
        image_size=SIZE,
        camera="image_0",
        action_stats=STATS,
        gamma=0.98,
        control_rate_hz=5.0,
        training_config={"agent": {"name": "tiny"}, "batch_size": 8},
        dataset_fingerprint="abc123",
        train_step=42,
    )
    kwargs.update(overrides)
    return export_agent(agent, out_dir, **kwargs)


def small_mqe_agent():
    config = get_agent_config("mqe")
    config.update(trunk="small_conv", small_conv_channels=(8, 16), latent_dim=32, value_hidden_dims=(32,), actor_hidden_dims=(32,), mrn_components=4)
    return make_agent("mqe", config, ("image", SIZE), contract.ACTION_DIM)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    torch.manual_seed(0)
    agent = small_mqe_agent()
    agent.train()
    out_dir = _export(agent, tmp_path_factory.mktemp("policy"))
    return agent, out_dir


def test_export_writes_contract_files_with_metadata(exported):
    agent, out_dir = exported
    assert agent.training, "export must not switch the live agent to eval mode"
    export_ids = set()
    for role, file_name in [("goal_encoder", contract.GOAL_ENCODER_FILE), ("policy", contract.POLICY_FILE), ("distance", contract.DISTANCE_FILE)]:
        path = out_dir / file_name
        onnx.checker.check_model(onnx.load(str(path)), full_check=True)
        metadata = read_metadata(path)
        parsed = contract.check_policy_metadata(metadata, str(path), role)
        assert parsed["image_size"] == SIZE and parsed["camera"] == "image_0" and parsed["gamma"] == 0.98
        assert parsed["agent"] == "mqe" and parsed["control_rate_hz"] == 5.0
        assert contract.ActionStats.from_json(json.loads(metadata[contract.META_ACTION_STATS])) == STATS
        assert json.loads(metadata[contract.META_TRAINING_CONFIG])["batch_size"] == 8
        assert metadata[contract.META_DATASET_FINGERPRINT] == "abc123"
        assert metadata[contract.META_STEP] == "42"
        assert metadata[contract.META_SOURCE_COMMIT]
        export_ids.add(metadata[contract.META_EXPORT_ID])
        assert metadata[contract.META_PRECISION] == "fp32"
        # every key but the calibration fingerprint, which only int8 graphs carry (tests/test_quantize.py)
        every_key = [v for k, v in vars(contract).items() if k.startswith("META_") and k != "META_CALIBRATION_FINGERPRINT"]
        assert set(every_key) <= metadata.keys()
    assert len(export_ids) == 1
    assert not list(out_dir.glob("*.tmp")), "temporary files left behind"


def test_export_interface_uint8_nhwc_dynamic_batch(exported):
    _, out_dir = exported
    session = ort.InferenceSession(str(out_dir / contract.POLICY_FILE), providers=["CPUExecutionProvider"])
    inputs = {i.name: i for i in session.get_inputs()}
    assert inputs[contract.OBSERVATION_IMAGE].type == "tensor(uint8)"
    assert inputs[contract.OBSERVATION_IMAGE].shape[1:] == [SIZE, SIZE, 3]
    assert isinstance(inputs[contract.OBSERVATION_IMAGE].shape[0], str)
    goal = ort.InferenceSession(str(out_dir / contract.GOAL_ENCODER_FILE), providers=["CPUExecutionProvider"])
    for batch in (1, 5):
        images = np.random.default_rng(batch).integers(0, 256, (batch, SIZE, SIZE, 3), dtype=np.uint8)
        features = goal.run([contract.ACTOR_GOAL_FEATURES], {contract.GOAL_IMAGE: images})[0]
        (action,) = session.run(None, {contract.OBSERVATION_IMAGE: images, contract.ACTOR_GOAL_FEATURES: features})
        assert action.shape == (batch, contract.ACTION_DIM) and action.dtype == np.float32
        assert np.all(np.isfinite(action))


def test_export_parity_with_torch(exported):
    agent, out_dir = exported
    errors = check_parity(agent, out_dir, action_stats=STATS, gamma=0.98)
    assert set(errors) == {
        contract.ACTOR_GOAL_FEATURES, contract.CRITIC_GOAL_EMBEDDING, contract.ACTION, contract.DISTANCE, contract.STEPS_TO_GOAL,
    }
    assert max(errors.values()) <= 1e-4, errors


def test_export_actions_are_in_robot_units_and_steps_follow_gamma(exported):
    agent, out_dir = exported
    rng = np.random.default_rng(7)
    observation = rng.integers(0, 256, (2, SIZE, SIZE, 3), dtype=np.uint8)
    goal_session = ort.InferenceSession(str(out_dir / contract.GOAL_ENCODER_FILE), providers=["CPUExecutionProvider"])
    features, embedding = goal_session.run(None, {contract.GOAL_IMAGE: observation[::-1].copy()})
    (action,) = ort.InferenceSession(str(out_dir / contract.POLICY_FILE), providers=["CPUExecutionProvider"]).run(
        None, {contract.OBSERVATION_IMAGE: observation, contract.ACTOR_GOAL_FEATURES: features}
    )
    model = small_mqe_agent()
    model.load_state_dict(agent.state_dict())
    model.eval()
    with torch.no_grad():
        normalised = model.act_from_goal_features(torch.from_numpy(observation), torch.from_numpy(features)).numpy()
    np.testing.assert_allclose(action, STATS.unnormalize(normalised), atol=1e-5)
    distance, steps = ort.InferenceSession(str(out_dir / contract.DISTANCE_FILE), providers=["CPUExecutionProvider"]).run(
        None, {contract.OBSERVATION_IMAGE: observation, contract.CRITIC_GOAL_EMBEDDING: embedding}
    )
    assert distance.shape == (2,) and np.all(distance >= 0)
    np.testing.assert_allclose(steps, contract.steps_from_distance(distance, 0.98), rtol=1e-5)


def test_export_without_distance_removes_stale_distance_graph(exported, tmp_path):
    _, first = exported
    out_dir = tmp_path / "policy"
    out_dir.mkdir()
    (out_dir / contract.DISTANCE_FILE).write_bytes((first / contract.DISTANCE_FILE).read_bytes())
    config = get_agent_config("gcbc")
    config.update(trunk="small_conv", small_conv_channels=(8,), actor_hidden_dims=(16,))
    _export(make_agent("gcbc", config, ("image", SIZE), contract.ACTION_DIM), out_dir)
    assert sorted(p.name for p in out_dir.iterdir()) == [contract.GOAL_ENCODER_FILE, contract.POLICY_FILE]
    goal = ort.InferenceSession(str(out_dir / contract.GOAL_ENCODER_FILE), providers=["CPUExecutionProvider"])
    assert [o.name for o in goal.get_outputs()] == [contract.ACTOR_GOAL_FEATURES]


def test_export_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="gamma"):
        _export(small_mqe_agent(), tmp_path, gamma=1.0)
    with pytest.raises(TypeError, match="ActionStats"):
        _export(small_mqe_agent(), tmp_path, action_stats={"mean": [0] * 7})
