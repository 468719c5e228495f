"""The generic training loop (mqe.train.fit) on in-memory state data: metrics, validation,
checkpoints, in-process resume and corrupt-checkpoint fallback."""

import json
import warnings

import numpy as np
import pytest
import torch

from mqe import checkpoint as ckpt
from mqe.agents import get_config as get_agent_config
from mqe.agents import make_agent
from mqe.ogbench.dataset import OGBenchDataset
from mqe.train import fit, get_fit_config, seed_everything


def _tiny_agent_config():
    config = get_agent_config("mqe")
    config.update(trunk="mlp", latent_dim=8, value_hidden_dims=(16,), actor_hidden_dims=(16,), mrn_components=2)
    return config


@pytest.fixture(scope="module")
def npz_path(tmp_path_factory):
    """Random-walk trajectories in the plane, in OGBench's npz layout."""
    rng = np.random.default_rng(0)
    episodes, length = 8, 30
    actions = rng.uniform(-1, 1, (episodes, length, 2)).astype(np.float32)
    observations = np.cumsum(0.1 * actions, axis=1).reshape(-1, 2)
    terminals = np.zeros((episodes, length), bool)
    terminals[:, -1] = True
    path = tmp_path_factory.mktemp("data") / "walk.npz"
    np.savez(path, observations=observations, actions=actions.reshape(-1, 2), terminals=terminals.reshape(-1))
    return path


def _run(npz_path, workdir, steps, **overrides):
    config = {**get_fit_config(), "agent": _tiny_agent_config(), "progress": False}
    config.update(steps=steps, log_every=4, val_every=6, val_batches=2, checkpoint_every=5, keep_checkpoints=2)
    config.update(overrides)
    seed_everything(config["seed"])
    agent = make_agent("mqe", config["agent"], ("state", 2), 2)
    goal_config = config["agent"]["goal_sampling"]
    train = OGBenchDataset(npz_path, 16, goal_config, seed=1)
    val = OGBenchDataset(npz_path, 16, goal_config, seed=2)
    result = fit(agent, train, config, workdir, val_source=val, meta={"note": "test"})
    return agent, result


def test_fit_logs_namespaced_metrics_and_keeps_newest_checkpoints(npz_path, tmp_path):
    agent, result = _run(npz_path, tmp_path, steps=12)
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    train_lines = [line for line in lines if "train/loss" in line]
    assert [line["step"] for line in train_lines] == [4, 8, 12]
    for key in ("critic/loss", "actor/loss", "perf/steps_per_s", "perf/samples_per_s", "perf/data_fraction"):
        assert all(np.isfinite(line[key]) for line in train_lines), key
    assert train_lines[-1]["perf/steps_per_s"] > 0
    val_lines = [line for line in lines if "val/loss" in line]
    assert [line["step"] for line in val_lines] == [6, 12]
    assert any(key.startswith("val/critic/") for key in val_lines[0])
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == ["step_000000010.pt", "step_000000012.pt"]
    state = ckpt.load_checkpoint(ckpt.checkpoint_path(tmp_path, 12))  # weights_only=True inside
    assert state["step"] == 12 and state["meta"] == {"note": "test"}
    for key, value in agent.state_dict().items():
        assert torch.equal(state["agent"][key], value), key
    assert result["train/loss"] == train_lines[-1]["train/loss"]


def test_fit_resume_continues_bit_for_bit(npz_path, tmp_path):
    straight, _ = _run(npz_path, tmp_path / "straight", steps=12)
    _run(npz_path, tmp_path / "resumed", steps=7)  # checkpoints at 5 and 7
    resumed, _ = _run(npz_path, tmp_path / "resumed", steps=12, seed=123)  # seed is ignored: state comes from the checkpoint
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name
    lines = [json.loads(line) for line in (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines if "train/loss" in line] == [4, 7, 8, 12]


def test_fit_evaluate_hook_runs_on_schedule(npz_path, tmp_path):
    calls = []

    def evaluate(agent, step):
        calls.append(step)
        return {"eval/score": float(step)}

    config = {**get_fit_config(), "agent": _tiny_agent_config(), "progress": False, "steps": 6, "eval_every": 3}
    agent = make_agent("mqe", config["agent"], ("state", 2), 2)
    train = OGBenchDataset(npz_path, 8, config["agent"]["goal_sampling"], seed=1)
    result = fit(agent, train, config, None, evaluate=evaluate)
    assert calls == [3, 6] and result["eval/score"] == 6.0


def test_corrupt_newest_checkpoint_falls_back_to_previous(npz_path, tmp_path):
    _run(npz_path, tmp_path, steps=12)
    newest = ckpt.checkpoint_path(tmp_path, 12)
    newest.write_bytes(newest.read_bytes()[:1000])  # truncated, as after a full disk
    with pytest.raises(ckpt.CheckpointError, match="step_000000012.pt"):
        ckpt.load_checkpoint(newest)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        path, state = ckpt.load_latest_checkpoint(tmp_path)
    assert path.name == "step_000000010.pt" and state["step"] == 10
    assert any("step_000000012.pt" in str(w.message) for w in caught)
    ckpt.checkpoint_path(tmp_path, 10).write_bytes(b"not a checkpoint")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ckpt.CheckpointError, match="no readable checkpoint"):
            ckpt.load_latest_checkpoint(tmp_path)


def test_checkpoint_rejects_non_checkpoint_and_pickled_code(tmp_path):
    path = tmp_path / "step_000000001.pt"
    torch.save({"something": 1}, path)
    with pytest.raises(ckpt.CheckpointError, match="not a training checkpoint"):
        ckpt.load_checkpoint(path)
    torch.save({"step": 1, "agent": {}, "evil": np.random.default_rng(0)}, path)  # arbitrary object
    with pytest.raises(ckpt.CheckpointError, match="cannot read checkpoint"):
        ckpt.load_checkpoint(path)


def test_rng_state_round_trip():
    seed_everything(3)
    state = ckpt.capture_rng_state()
    first = (np.random.rand(), torch.rand(2), __import__("random").random())
    ckpt.restore_rng_state(state)
    second = (np.random.rand(), torch.rand(2), __import__("random").random())
    assert first[0] == second[0] and torch.equal(first[1], second[1]) and first[2] == second[2]
