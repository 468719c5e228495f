"""The BridgeData V2 release as it really is, written by the one writer and read by the real reader.

Facts of the release (kpertsch/bridge_rlds_builder, bridge_dataset/bridge_dataset_dataset_builder.py at
f0d16c5, the 256x256 release's builder: line 68 `has_{new_key} = orig_key in example['observations']`
on the list of steps, line 41 zeros_like for a missing camera, lines 29/160 language_embedding
float32[512], zeros without an instruction; and rail-berkeley/bridge_data_v2 issue #40, which prints
`has_image_0: [0] ... has_image_3: [0]` from real shards): has_image_0..3 is False in every episode (the builder tests a key against the list of
per-step dicts); a missing camera is stored as all-black frames; every step carries
language_embedding float32[512]; some episodes have an empty language_instruction; each split has
many shards named bridge_dataset-<split>.tfrecord-00000-of-NNNNN. Before this was reproduced the
reader trusted has_image_* and rejected every release episode as `no_camera`, and said so only
after the action-statistics pass had read every shard.
"""

import json
import re

import numpy as np
import pytest
import tensorflow_datasets as tfds

from mqe import train as train_cli
from mqe.data.bridge import CAMERAS, LANGUAGE_EMBEDDING_DIM, BridgeSource, make_episode, probe_cameras, write_bridge_dataset
from mqe.data.loader import BridgeLoader, get_config
from mqe.data.synthetic import make_synthetic_dataset

SIZE = 64


@pytest.fixture(scope="module")
def release_like(tmp_path_factory):
    return make_synthetic_dataset(tmp_path_factory.mktemp("release"), episodes=12, steps=6, seed=3,
                                  image_size=SIZE, val_episodes=3)


def _config(path, **overrides):
    config = get_config()
    config.update(data_dir=str(path), image_size=32, buffer_episodes=8, decode_threads=1,
                  stats_cache_dir=str(path.parent / "stats"), **overrides)
    return config


def test_the_writer_writes_the_release_quirks(release_like):
    path = release_like
    features = json.loads((path / "features.json").read_text())
    steps = features["featuresDict"]["features"]["steps"]["sequence"]["feature"]["featuresDict"]["features"]
    embedding = steps["language_embedding"]["tensor"]
    assert embedding["shape"]["dimensions"] == [str(LANGUAGE_EMBEDDING_DIM)] and embedding["dtype"] == "float32"
    source = BridgeSource(path)
    for split in ("train", "val"):
        shards = source.shards(split)
        assert len(shards) > 1
        assert all(re.fullmatch(rf"bridge_dataset-{split}\.tfrecord-\d{{5}}-of-{len(shards):05d}", s) for s in shards)
    builder = tfds.builder_from_directory(str(path))
    instructions = []
    for episode in tfds.as_numpy(builder.as_dataset(split="train")):
        meta = episode["episode_metadata"]
        assert not any(meta[f"has_image_{k}"] for k in range(4))  # False everywhere, as released
        steps = list(episode["steps"])
        assert all(step["observation"]["image_1"].max() == 0 for step in steps)  # a missing camera is black
        assert steps[0]["observation"]["image_0"].max() > 0
        assert all(step["language_embedding"].shape == (LANGUAGE_EMBEDDING_DIM,) for step in steps)
        instruction = steps[0]["language_instruction"].decode()
        instructions.append(instruction)
        assert bool(meta["has_language"]) == bool(instruction)
        assert (np.abs(steps[0]["language_embedding"]).sum() > 0) == bool(instruction)
    assert "" in instructions and any(instructions)


def test_the_loader_trains_on_release_episodes_whatever_has_image_says(release_like):
    with BridgeLoader(_config(release_like), batch_size=4, seed=0) as loader:
        batch = loader.next_batch()
        metrics = loader.metrics()
    assert batch["observations"].shape[0] == 4
    assert metrics["data/skipped_no_camera"] == 0


def test_cameras_are_counted_from_their_pixels(tmp_path):
    rng = np.random.default_rng(0)

    def episode(i, with_wrist):
        frames = rng.integers(40, 255, size=(3, SIZE, SIZE, 3), dtype=np.uint8)
        images = {"image_0": frames} | ({"image_3": frames[:, ::-1].copy()} if with_wrist else {})
        return make_episode(np.zeros((3, 7)), np.zeros((3, 7)), images, episode_id=i)

    path = write_bridge_dataset(tmp_path, {"train": [episode(i, i % 3 == 0) for i in range(6)]},
                                image_size=SIZE, num_shards=2)
    present, probed, shards = probe_cameras(BridgeSource(path), "train")
    assert probed == 6 and len(shards) == 2
    assert present == {"image_0": 6, "image_1": 0, "image_2": 0, "image_3": 2}
    # the chosen camera's black episodes are skipped and counted, the others train
    with BridgeLoader(_config(path, camera="image_3", skip_bad=True), batch_size=2, seed=0) as loader:
        loader.next_batch()
        assert loader.metrics()["data/skipped_no_camera"] >= 1


def test_a_camera_absent_everywhere_is_refused_before_the_statistics_pass(release_like, monkeypatch):
    def full_pass(self):
        raise AssertionError("the action-statistics pass ran before the camera was checked")

    monkeypatch.setattr(BridgeLoader, "_compute_action_stats", full_pass)
    for skip_bad in (False, True):
        with pytest.raises(ValueError, match=r"camera image_2 is missing \(all-black frames\) in all 6 episodes of the first shards") as error:
            BridgeLoader(_config(release_like, camera="image_2", skip_bad=skip_bad))
        assert "cameras with pixels there: image_0 in 6" in str(error.value)


def test_skip_bad_is_a_command_line_flag(capsys):
    train_cli.main(["--data-dir", "/nowhere", "--skip-bad", "--print-config"])
    assert json.loads(capsys.readouterr().out)["data"]["skip_bad"] is True
    train_cli.main(["--data-dir", "/nowhere", "--print-config"])
    assert json.loads(capsys.readouterr().out)["data"]["skip_bad"] is False


def test_every_camera_of_the_release_is_in_the_spec():
    assert CAMERAS == ("image_0", "image_1", "image_2", "image_3")


def test_mqe_train_refuses_a_missing_camera_in_one_line_before_the_statistics_pass(release_like, tmp_path, monkeypatch):
    # Before: every release episode was dropped as `no_camera` (has_image_* False) and mqe-train said so
    # with a traceback, after the statistics pass had read every shard.
    def full_pass(self):
        raise AssertionError("the action-statistics pass ran before the camera was checked")

    monkeypatch.setattr(BridgeLoader, "_compute_action_stats", full_pass)
    argv = ["--data-dir", str(release_like), "--workdir", str(tmp_path / "run"), "--steps", "1", "--skip-bad",
            "--set", "data.camera=image_2", f"data.stats_cache_dir={json.dumps(str(tmp_path / 'stats'))}"]
    with pytest.raises(SystemExit) as exit_info:
        train_cli.main(argv)
    message = str(exit_info.value.code)
    assert "\n" not in message and message.startswith("mqe-train: ")
    assert "camera image_2 is missing (all-black frames)" in message and "image_0 in 6" in message
