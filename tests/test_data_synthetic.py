"""mqe-make-dataset: scripted episodes in the bridge_dataset format, and the loader benchmark."""

import numpy as np
import pytest

from mqe.bench.data import format_table, measure_loader
from mqe.data.bridge import BridgeSource, decode_jpeg
from mqe.data.loader import relabel_actions
from mqe.data.synthetic import main, make_synthetic_dataset
from mqe.synthetic_scene import WORKSPACE_HIGH, WORKSPACE_LOW, render_tabletop


@pytest.fixture(scope="session")
def made(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli")
    assert main(["--out", str(out), "--episodes", "6", "--steps", "12", "--image-size", "48", "--seed", "3"]) == 0
    return out / "bridge_dataset" / "1.0.0"


def _episodes(path, split="train"):
    source = BridgeSource(path)
    return [source.read(ref) for shard in source.shards(split) for ref, _ in source.iter_shard(shard)]


def test_cli_writes_train_and_val_splits(made, capsys):
    source = BridgeSource(made)
    assert source.splits == ["train", "val"]
    assert source.num_episodes("train") == 5 and source.num_episodes("val") == 1
    assert source.image_shape == (48, 48, 3)


def test_episodes_look_like_bridge_demonstrations(made):
    episodes = _episodes(made)
    for episode in episodes:
        assert len(episode) == 12
        assert not episode.actions[0].any()  # the null first action of the release
        assert np.array_equal(episode.states[0], episode.states[1])  # ... and the arm did not move
        states, actions = episode.states, episode.actions
        assert np.all(states[:, :3] >= WORKSPACE_LOW - 1e-6) and np.all(states[:, :3] <= WORKSPACE_HIGH + 1e-6)
        assert np.abs(actions[:, :3]).max() <= 0.03 + 1e-6  # clipped steps
        # the commanded deltas explain the state changes up to tracking noise
        relabelled = relabel_actions(states, actions)
        assert np.abs(relabelled[1:-1, :3] - actions[1:-1, :3]).max() < 0.01
        assert actions[:, 6].min() == 0.0 and actions[:, 6].max() == 1.0  # the gripper closes at some point
        assert states[:, 6].min() < 0.5  # and the measured gripper follows
        # the image shows the stored state: the renderer reproduces it up to JPEG error
        rendered = render_tabletop(states[5, :3], states[5, 6], 48)
        assert np.abs(decode_jpeg(episode.images[5], "test").astype(int) - rendered).mean() < 6
    assert len({e.states[0, :3].tobytes() for e in episodes}) == len(episodes)  # different starts


def test_same_seed_same_data(made, tmp_path):
    again = make_synthetic_dataset(tmp_path, episodes=6, steps=12, seed=3, image_size=48)
    for a, b in zip(sorted(_episodes(made), key=lambda e: e.states[0, 0]),
                    sorted(_episodes(again), key=lambda e: e.states[0, 0])):
        assert np.array_equal(a.states, b.states) and np.array_equal(a.actions, b.actions)
        assert a.images == b.images


def test_cli_reports_bad_arguments_and_can_corrupt(tmp_path, capsys):
    assert main(["--out", str(tmp_path), "--episodes", "3", "--steps", "1"]) == 2
    assert "--steps must be >= 2" in capsys.readouterr().err
    assert main(["--out", str(tmp_path), "--episodes", "3", "--steps", "4", "--image-size", "32",
                 "--corrupt", "missing_feature:1"]) == 0
    assert "episode 1: missing_feature" in capsys.readouterr().out
    assert main(["--out", str(tmp_path), "--episodes", "3", "--steps", "4"]) == 2
    assert "already exists" in capsys.readouterr().err


def test_loader_benchmark_row(made):
    row = measure_loader(made, batch_size=8, image_size=32, decode_threads=1, batches=2, warmup=1)
    assert row["samples_per_s"] > 0 and row["batches"] == 2
    table = format_table([row])
    assert "samples/s" in table.splitlines()[0] and len(table.splitlines()) == 3
