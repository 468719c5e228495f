"""mqe-train end to end on a synthetic Bridge-format dataset (real TFRecords and JPEGs): the CLI,
resume after SIGKILL (bit-for-bit), 2-rank DistributedDataParallel over gloo, and mqe-export."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from mqe import checkpoint as ckpt
from mqe import contract
from mqe.export import agent_from_checkpoint, check_parity, read_metadata
from mqe.export import main as export_main
from mqe.train import main as train_main
from mqe.train import parameter_digest

# Small enough for 2 CPU cores: 32 px images, small conv trunk, batch 8.
TINY = [
    "data.image_size=32", "data.buffer_episodes=8", "data.decode_threads=1", "batch_size=8", "progress=false",
    "agent.trunk=small_conv", "agent.small_conv_channels=[8,16]", "agent.latent_dim=16", "agent.mrn_components=2",
    "agent.value_hidden_dims=[32]", "agent.actor_hidden_dims=[32]", "log_every=5", "val_every=10", "val_batches=1",
]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    from mqe.data.synthetic import make_synthetic_dataset

    root = tmp_path_factory.mktemp("bridge")
    make_synthetic_dataset(root, episodes=12, steps=16, image_size=64, val_episodes=2, num_shards=2)
    return root


def _command(data_dir, workdir, steps, *extra):
    return [sys.executable, "-m", "mqe.train", "--data-dir", str(data_dir), "--workdir", str(workdir),
            "--steps", str(steps), "--set", *TINY, *extra]


def _final_state(workdir):
    path, state = ckpt.load_latest_checkpoint(workdir)
    return state


def test_resume_after_sigkill_is_bit_for_bit(data_dir, tmp_path):
    steps = 30
    straight = tmp_path / "straight"
    subprocess.run(_command(data_dir, straight, steps, "checkpoint_every=5"), env=ENV, check=True, timeout=240,
                   capture_output=True)

    killed = tmp_path / "killed"
    process = subprocess.Popen(_command(data_dir, killed, steps, "checkpoint_every=5"), env=ENV,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 180
    while not ckpt.list_checkpoints(killed) and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.02)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    checkpoints = ckpt.list_checkpoints(killed)
    assert checkpoints and int(checkpoints[-1].stem.split("_")[1]) < steps

    resumed = subprocess.run(_command(data_dir, killed, steps, "checkpoint_every=5"), env=ENV, check=True,
                             timeout=240, capture_output=True, text=True)
    assert "resumed from" in resumed.stderr

    a, b = _final_state(straight), _final_state(killed)
    assert a["step"] == b["step"] == steps
    for key, value in a["agent"].items():
        assert torch.equal(value, b["agent"][key]), key
    assert json.dumps(a["ranks"][0]["loader"], sort_keys=True) == json.dumps(b["ranks"][0]["loader"], sort_keys=True)
    moments = [s["exp_avg"] for s in a["optimizer"]["state"].values()]
    assert all(torch.equal(x, s["exp_avg"]) for x, s in zip(moments, b["optimizer"]["state"].values()))

    lines = [json.loads(line) for line in (straight / "metrics.jsonl").read_text().splitlines()]
    keys = set().union(*lines)
    for prefix in ("critic/", "actor/", "data/", "perf/steps_per_s", "val/"):
        assert any(key.startswith(prefix) for key in keys), prefix

    # mqe-export on the workdir: contract files, metadata from the checkpoint, parity with torch.
    export_main(["--workdir", str(straight)])
    out = straight / "export"
    metadata = read_metadata(out / contract.POLICY_FILE)
    assert metadata[contract.META_STEP] == str(steps) and metadata[contract.META_IMAGE_SIZE] == "32"
    assert metadata[contract.META_DATASET_FINGERPRINT] == a["meta"]["dataset_fingerprint"] != "unknown"
    assert json.loads(metadata[contract.META_ACTION_STATS]) == a["meta"]["action_stats"]
    assert json.loads(metadata[contract.META_TRAINING_CONFIG])["batch_size"] == 8
    agent, meta, _, _ = agent_from_checkpoint(straight)
    errors = check_parity(agent, out, action_stats=contract.ActionStats.from_json(meta["action_stats"]), gamma=meta["gamma"])
    assert max(errors.values()) <= 1e-4, errors


def test_ddp_two_cpu_ranks_hold_identical_parameters(data_dir, tmp_path):
    workdir = tmp_path / "ddp"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes=1", "--nproc_per_node=2",
               "-m", "mqe.train", *_command(data_dir, workdir, 10, "device=cpu", "checkpoint_every=5")[3:]]
    result = subprocess.run(command, env=ENV, timeout=240, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    state = _final_state(workdir)
    assert state["step"] == 10 and state["meta"]["world_size"] == 2
    digests = [rank["parameter_digest"] for rank in state["ranks"]]
    assert len(digests) == 2 and digests[0] == digests[1]
    agent, _, _, _ = agent_from_checkpoint(workdir)
    assert parameter_digest(agent) == digests[0]  # the saved weights are the ranks' weights
    # one shard stream per rank: the ranks read different episodes
    buffers = [json.dumps(rank["loader"]["buffer"]) for rank in state["ranks"]]
    assert buffers[0] != buffers[1]
    lines = (workdir / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines if "train/loss" in line] == [5, 10]  # rank 0 only


def test_cli_config_errors_name_the_key(data_dir, tmp_path, capsys):
    with pytest.raises(SystemExit):
        train_main(["--data-dir", str(data_dir), "--workdir", str(tmp_path), "--set", "agent.alpah=1"])
    assert "agent.alpah" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        train_main(["--workdir", str(tmp_path), "--set", "data.goals.gamma=0.9"])  # goals live in agent.goal_sampling
    assert "data.goals" in capsys.readouterr().err
    config_file = tmp_path / "run.yaml"
    config_file.write_text("agent_name: gcbc\nagent:\n  trunk: small_conv\nsteps: 7\n")
    train_main(["--config", str(config_file), "--set", "seed=3", "--print-config"])
    printed = json.loads(capsys.readouterr().out)
    assert printed["agent_name"] == "gcbc" and printed["agent"]["trunk"] == "small_conv"
    assert printed["steps"] == 7 and printed["seed"] == 3 and "alpha" not in printed["agent"]
