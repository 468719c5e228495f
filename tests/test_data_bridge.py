"""The bridge_dataset TFDS format: written by the one writer, read back by TFDS itself and by our
streaming reader; corrupt data is reported with its shard and episode, or skipped and counted."""

import json
import shutil

import numpy as np
import pytest
import tensorflow_datasets as tfds

from mqe.data.bridge import (
    CAMERAS,
    BadEpisodeError,
    BridgeSource,
    decode_jpeg,
    make_episode,
    resolve_dataset_dir,
    write_bridge_dataset,
)
from mqe.data.loader import BridgeLoader, get_config
from mqe.data.synthetic import corrupt_episode, make_synthetic_dataset

SIZE = 64


def _hand_made_episode(rng, length, episode_id):
    states = rng.normal(size=(length, 7)).astype(np.float32)
    actions = rng.normal(size=(length, 7)).astype(np.float32)
    # smooth images so JPEG error stays small and comparable
    base = rng.integers(0, 255, size=(length, 4, 4, 3)).astype(np.uint8)
    frames = np.stack([np.kron(frame, np.ones((SIZE // 4, SIZE // 4, 1), np.uint8)) for frame in base])
    wrist = np.flip(frames, axis=1).copy()
    episode = make_episode(states, actions, {"image_0": frames, "image_3": wrist},
                           language_instruction=f"task {episode_id}", file_path=f"raw/{episode_id}",
                           episode_id=episode_id)
    return episode, states, actions, frames, wrist


@pytest.fixture(scope="session")
def hand_made(tmp_path_factory):
    rng = np.random.default_rng(0)
    train = [_hand_made_episode(rng, length, i) for i, length in enumerate([3, 5, 4])]
    val = [_hand_made_episode(rng, 2, 10), _hand_made_episode(rng, 2, 11)]
    path = write_bridge_dataset(tmp_path_factory.mktemp("hand"), {"train": [e[0] for e in train],
                                                                 "val": [e[0] for e in val]},
                                image_size=SIZE, num_shards=2)
    return path, train


@pytest.fixture(scope="session")
def synthetic(tmp_path_factory):
    return make_synthetic_dataset(tmp_path_factory.mktemp("synthetic"), episodes=8, steps=12, seed=1,
                                  image_size=SIZE, val_episodes=2, num_shards=2)


def test_layout_and_feature_spec_match_the_release(hand_made):
    path, _ = hand_made
    assert path.parts[-2:] == ("bridge_dataset", "1.0.0")
    info = json.loads((path / "dataset_info.json").read_text())
    assert info["name"] == "bridge_dataset" and info["version"] == "1.0.0"
    assert sorted(split["name"] for split in info["splits"]) == ["train", "val"]
    builder = tfds.builder_from_directory(str(path))
    assert builder.info.splits["train"].num_examples == 3 and len(builder.info.splits["train"].filenames) == 2
    features = builder.info.features
    steps = features["steps"]
    for camera in CAMERAS:
        image = steps["observation"][camera]
        assert image.shape == (SIZE, SIZE, 3) and image.encoding_format == "jpeg"
    assert steps["observation"]["state"].shape == (7,) and steps["observation"]["state"].dtype == np.float32
    assert steps["action"].shape == (7,) and steps["action"].dtype == np.float32
    assert set(steps.keys()) == {"observation", "action", "discount", "reward", "is_first", "is_last",
                                 "is_terminal", "language_instruction", "language_embedding"}
    assert set(features["episode_metadata"].keys()) == {
        "file_path", "episode_id", "has_image_0", "has_image_1", "has_image_2", "has_image_3", "has_language"}
    assert resolve_dataset_dir(path.parent.parent) == path  # a TFDS data_dir works too


def test_round_trip_through_tfds(hand_made):
    path, written = hand_made
    builder = tfds.builder_from_directory(str(path))
    by_id = {w[0]["episode_metadata"]["episode_id"]: w for w in written}
    seen = 0
    for episode in tfds.as_numpy(builder.as_dataset(split="train")):
        meta = episode["episode_metadata"]
        _, states, actions, frames, wrist = by_id[int(meta["episode_id"])]
        steps = list(episode["steps"])
        assert len(steps) == len(states)
        assert meta["file_path"].decode() == f"raw/{meta['episode_id']}"
        # the release's has_image_* are False whatever exists (see tests/test_data_release.py)
        assert not any(meta[f"has_image_{k}"] for k in range(4)) and meta["has_language"]
        for t, step in enumerate(steps):
            assert np.array_equal(step["observation"]["state"], states[t])  # bit-exact floats
            assert np.array_equal(step["action"], actions[t])
            assert step["is_first"] == (t == 0) and step["is_last"] == (t == len(steps) - 1)
            assert step["is_terminal"] == step["is_last"] and step["reward"] == float(step["is_last"])
            assert step["discount"] == 1.0
            assert step["language_instruction"].decode() == f"task {meta['episode_id']}"
            for decoded, original in ((step["observation"]["image_0"], frames[t]), (step["observation"]["image_3"], wrist[t])):
                assert decoded.shape == original.shape and decoded.dtype == np.uint8
                assert np.abs(decoded.astype(int) - original.astype(int)).mean() < 6  # JPEG (4:2:0) tolerance
            assert not step["observation"]["image_1"].any()  # a missing camera is black, as in the release
        seen += 1
    assert seen == 3


def test_streaming_reader_matches_tfds(hand_made):
    path, written = hand_made
    source = BridgeSource(path)
    by_id = {w[0]["episode_metadata"]["episode_id"]: w for w in written}
    builder = tfds.builder_from_directory(str(path))
    skip = {"steps": {"observation": {"image_0": tfds.decode.SkipDecoding()}}}
    tfds_jpegs = {int(e["episode_metadata"]["episode_id"]): [s["observation"]["image_0"] for s in e["steps"]]
                  for e in tfds.as_numpy(builder.as_dataset(split="train", decoders=skip))}
    raws = []
    for shard in source.shards("train"):
        raws += [source.read(ref) for ref, _ in source.iter_shard(shard)]
    assert len(raws) == 3
    for raw in raws:
        # episode_id is not read by the loader; match episodes by their (unique) states
        match = next(w for w in by_id.values() if np.array_equal(w[1], raw.states))
        assert np.array_equal(raw.actions, match[2]) and raw.has_camera
        assert raw.images == tfds_jpegs[match[0]["episode_metadata"]["episode_id"]]  # what SkipDecoding gives
        for t, data in enumerate(raw.images):
            assert np.abs(decode_jpeg(data, "test").astype(int) - match[3][t].astype(int)).mean() < 6


def test_source_refuses_bad_camera_and_missing_dir(hand_made, tmp_path):
    path, _ = hand_made
    with pytest.raises(ValueError, match="camera 'image_7' not in the dataset"):
        BridgeSource(path, camera="image_7")
    with pytest.raises(FileNotFoundError, match="no TFDS dataset here"):
        resolve_dataset_dir(tmp_path)
    with pytest.raises(FileExistsError, match="already exists"):
        write_bridge_dataset(path.parent.parent, {"train": []}, image_size=SIZE)


def test_mismatched_feature_spec_is_refused_naming_features_json(synthetic, tmp_path):
    path = tmp_path / "bridge_dataset" / "1.0.0"
    shutil.copytree(synthetic, path)
    spec = json.loads((path / "features.json").read_text())
    observation = spec["featuresDict"]["features"]["steps"]["sequence"]["feature"]["featuresDict"]["features"][
        "observation"]["featuresDict"]["features"]
    observation["state"]["tensor"]["shape"]["dimensions"] = ["8"]
    (path / "features.json").write_text(json.dumps(spec))
    with pytest.raises(ValueError, match=r"features.json: steps/observation/state has shape \(8,\), expected \(7,\)"):
        BridgeSource(path)


def _loader_config(path, skip_bad=False):
    config = get_config()
    config.update(data_dir=str(path), image_size=32, skip_bad=skip_bad, buffer_episodes=16, decode_threads=1)
    return config


CASES = [
    ("missing_feature", "missing feature 'steps/observation/state'"),
    ("wrong_shape", "feature 'steps/action' has 81 values, expected 12 steps x 7"),
    ("bad_jpeg", "is not a JPEG image"),
    ("empty", "zero-length episode"),
    ("corrupt_record", "TFRecord data checksum mismatch"),
]


@pytest.mark.parametrize("kind, message", CASES)
def test_corrupt_episode_is_named_or_skipped_and_counted(synthetic, tmp_path, kind, message):
    path = tmp_path / "bridge_dataset" / "1.0.0"
    shutil.copytree(synthetic, path)
    shard = corrupt_episode(path, kind, split="train", shard=0, episode=1)
    with pytest.raises(BadEpisodeError, match=message) as caught:
        BridgeLoader(_loader_config(path), "train", batch_size=4)
    assert f"{shard} episode 1" in str(caught.value)
    with BridgeLoader(_loader_config(path, skip_bad=True), "train", batch_size=4) as loader:
        batch = loader.next_batch()
        assert batch["observations"].shape == (4, 32, 32, 3)
        assert loader.metrics()[f"data/skipped_{kind}"] >= 1
        # the corrupt record also hides the rest of its shard; the others lose exactly one episode
        held = loader.metrics()["data/buffer_episodes"]
        assert held == (6 - 1 if kind != "corrupt_record" else 6 - len(_episodes_after(synthetic, shard, 1)) - 1)


def _episodes_after(path, shard, index):
    source = BridgeSource(path)
    return [ref for ref, _ in source.iter_shard(shard) if ref.index > index]


def test_undecodable_jpeg_found_at_decode_time(synthetic, tmp_path):
    path = tmp_path / "bridge_dataset" / "1.0.0"
    shutil.copytree(synthetic, path)
    shard = corrupt_episode(path, "undecodable_jpeg", split="train", shard=0, episode=0)
    config = _loader_config(path)
    config["goals"]["actor_goal"] = "uniform"
    with BridgeLoader(config, "train", batch_size=64) as loader:  # step 1 of a 12-step episode is drawn
        with pytest.raises(BadEpisodeError, match=f"{shard} episode 0 step 1: undecodable JPEG"):
            for _ in range(20):
                loader.next_batch()
    with BridgeLoader(_loader_config(path, skip_bad=True), "train", batch_size=64) as loader:
        for _ in range(20):
            loader.next_batch()
        assert loader.metrics()["data/skipped_bad_jpeg"] == 1
        assert loader.metrics()["data/buffer_episodes"] == 5
