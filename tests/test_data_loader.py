"""BridgeLoader: action processing, cached statistics, batch layout, goal sampling, sharding, resume."""

import json

import numpy as np
import pytest

from mqe.contract import GRIPPER_INDEX
from mqe.data import action_stats as action_stats_module
from mqe.data.batch import BATCH_KEYS, OBSERVATION_KEYS
from mqe.data.bridge import BadEpisodeError, BridgeSource, EpisodeRef, RawEpisode, make_episode, write_bridge_dataset
from mqe.data.loader import BridgeLoader, binarize_gripper, get_config, process_episode, relabel_actions
from mqe.data.synthetic import make_synthetic_dataset

SIZE = 32
LENGTH = 20


def _identity_frames(episode_id: int, length: int) -> np.ndarray:
    """Flat-colour frames that survive JPEG + resize: red encodes the step, green the episode."""
    frames = np.zeros((length, SIZE, SIZE, 3), np.uint8)
    frames[..., 0] = (np.arange(length) * 10)[:, None, None]
    frames[..., 1] = 20 + 30 * episode_id
    frames[..., 2] = 128
    return frames


def _identity_of(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    colour = images.reshape(len(images), -1, 3).mean(axis=1)
    return np.round((colour[:, 1] - 20) / 30).astype(int), np.round(colour[:, 0] / 10).astype(int)


@pytest.fixture(scope="session")
def tagged(tmp_path_factory):
    """6 train + 2 val episodes of 20 steps whose frames name their (episode, step)."""
    rng = np.random.default_rng(5)

    def episodes(ids):
        for episode_id in ids:
            states = np.cumsum(rng.normal(0, 0.01, (LENGTH, 7)), axis=0).astype(np.float32)
            states[:, 6] = 1.0
            actions = rng.normal(0, 0.01, (LENGTH, 7)).astype(np.float32)
            actions[:, 6] = 1.0
            yield make_episode(states, actions, {"image_0": _identity_frames(episode_id, LENGTH)}, episode_id=episode_id)

    return write_bridge_dataset(tmp_path_factory.mktemp("tagged"), {"train": episodes(range(6)), "val": episodes([6, 7])},
                                image_size=SIZE, num_shards=2)


@pytest.fixture(scope="session")
def synthetic(tmp_path_factory):
    return make_synthetic_dataset(tmp_path_factory.mktemp("synthetic"), episodes=12, steps=16, seed=2,
                                  image_size=64, val_episodes=2, num_shards=2)


def _config(path, **overrides):
    config = get_config()
    config.update({"data_dir": str(path), "image_size": SIZE, "decode_threads": 1, **overrides})
    return config


# --- action processing ------------------------------------------------------------------------
def test_relabel_uses_state_deltas_wraps_angles_and_keeps_the_commanded_gripper():
    states = np.zeros((3, 7), np.float32)
    states[:, 0] = [0.30, 0.32, 0.31]
    states[:, 5] = [3.10, -3.10, -3.00]  # yaw crosses +pi
    states[:, 6] = [1.0, 0.6, 0.2]
    commanded = np.full((3, 7), 0.5, np.float32)
    commanded[:, 6] = [1.0, 0.0, 0.0]
    relabelled = relabel_actions(states, commanded)
    np.testing.assert_allclose(relabelled[:2, 0], [0.02, -0.01], atol=1e-6)
    np.testing.assert_allclose(relabelled[:2, 5], [2 * np.pi - 6.20, 0.10], atol=1e-5)
    np.testing.assert_array_equal(relabelled[:, 6], [1.0, 0.0, 0.0])  # commanded, not the measured state
    np.testing.assert_array_equal(relabelled[2, :6], 0.0)  # no successor: never a transition
    np.testing.assert_array_equal(commanded[:, 0], 0.5)  # input untouched


def test_binarize_gripper_settled_values_and_the_next_settled_value_in_between():
    values = np.array([1.0, 0.96, 0.5, 0.3, 0.02, 0.0, 0.7, 0.99, 0.4], np.float32)
    np.testing.assert_array_equal(binarize_gripper(values), [1, 1, 0, 0, 0, 0, 1, 1, 0])
    np.testing.assert_array_equal(binarize_gripper(np.array([0.6, 0.7], np.float32)), [1, 1])  # nothing settles: nearest


def _raw(actions, states=None):
    length = len(actions)
    states = np.zeros((length, 7), np.float32) if states is None else states
    return RawEpisode(EpisodeRef("shard-0", 0, 3), [b"jpeg%d" % t for t in range(length)], states,
                      np.asarray(actions, np.float32), True)


def test_first_all_zero_action_is_dropped_only_when_asked():
    actions = np.full((4, 7), 0.1, np.float32)
    actions[0] = 0.0
    actions[0, GRIPPER_INDEX] = 1.0  # the release's null action may still carry a gripper command
    config = dict(drop_first_zero_action=True, relabel_actions=False, binarize_gripper=False)
    episode = process_episode(_raw(actions), config)
    assert len(episode) == 3 and episode.images[0] == b"jpeg1" and episode.first_step == 1
    np.testing.assert_array_equal(episode.actions, actions[1:])
    kept = process_episode(_raw(actions), dict(config, drop_first_zero_action=False))
    assert len(kept) == 4 and kept.first_step == 0
    moving = actions.copy()
    moving[0, 0] = 0.01
    assert len(process_episode(_raw(moving), config)) == 4
    with pytest.raises(BadEpisodeError, match="shard-0 episode 3: 1 usable steps"):
        process_episode(_raw(actions[:2]), config)


# --- statistics -------------------------------------------------------------------------------
def _expected_stats(path, config):
    source = BridgeSource(path)
    rows = []
    for shard in source.shards("train"):
        for ref, _ in source.iter_shard(shard):
            rows.append(process_episode(source.read(ref), config).actions[:-1])
    rows = np.concatenate(rows).astype(np.float64)
    return rows.mean(axis=0), rows.std(axis=0)


def test_action_stats_are_computed_once_cached_and_invalidated(synthetic, monkeypatch, tmp_path):
    config = _config(synthetic, stats_cache_dir=str(tmp_path / "fallback"))
    loader = BridgeLoader(config, batch_size=8)
    mean, std = _expected_stats(synthetic, config)
    np.testing.assert_allclose(loader.action_stats.mean[:6], mean[:6], rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(loader.action_stats.std[:6], std[:6], rtol=1e-6)
    assert loader.action_stats.mean[GRIPPER_INDEX] == 0.0 and loader.action_stats.std[GRIPPER_INDEX] == 1.0
    cache = loader.action_stats_path
    assert cache.parent == synthetic and json.loads(cache.read_text())["fingerprint"] == loader.fingerprint

    def must_not_compute(self):
        raise AssertionError("statistics recomputed although cached")

    monkeypatch.setattr(BridgeLoader, "_compute_action_stats", must_not_compute)
    again = BridgeLoader(config, split="val", batch_size=8)  # val uses the train split's cached stats
    assert again.action_stats == loader.action_stats and again.fingerprint == loader.fingerprint
    monkeypatch.undo()

    raw = BridgeLoader(dict(config, relabel_actions=False), batch_size=8)  # another option: another entry
    assert raw.fingerprint != loader.fingerprint and raw.action_stats_path != cache
    assert raw.action_stats != loader.action_stats


def test_changed_data_gets_new_stats_and_read_only_data_falls_back(tmp_path, monkeypatch, caplog):
    first = make_synthetic_dataset(tmp_path / "a", episodes=4, steps=6, seed=0, image_size=32, val_episodes=1)
    second = make_synthetic_dataset(tmp_path / "b", episodes=4, steps=6, seed=1, image_size=32, val_episodes=1)
    fallback = tmp_path / "cache"
    original_write = action_stats_module._write_atomic

    def read_only_data(path, text):
        if path.parent in (first, second):
            raise PermissionError(13, "Read-only file system", str(path))
        original_write(path, text)

    monkeypatch.setattr(action_stats_module, "_write_atomic", read_only_data)
    loaders = [BridgeLoader(_config(p, stats_cache_dir=str(fallback)), batch_size=4) for p in (first, second)]
    assert loaders[0].fingerprint != loaders[1].fingerprint
    assert all(loader.action_stats_path.parent == fallback for loader in loaders)
    assert "not writable" in caplog.text
    assert len(list(fallback.glob("mqe_action_stats_*.json"))) == 2


# --- batches ----------------------------------------------------------------------------------
def test_batch_layout_dtypes_and_normalised_actions(synthetic):
    with BridgeLoader(_config(synthetic, image_size=48), batch_size=16, seed=3) as loader:
        batch = loader.next_batch()
        assert loader.camera == "image_0" and loader.image_size == 48
    assert set(batch) == set(BATCH_KEYS)
    for key in OBSERVATION_KEYS:
        assert batch[key].dtype == np.uint8 and batch[key].shape == (16, 48, 48, 3)
    assert batch["actions"].dtype == np.float32 and batch["actions"].shape == (16, 7)
    assert set(np.unique(batch["actions"][:, GRIPPER_INDEX])) <= {0.0, 1.0}  # binarised, not rescaled
    assert np.abs(batch["actions"][:, :6]).max() < 10  # normalised units
    for key in ("waypoint_steps", "value_goal_steps"):
        assert batch[key].dtype == np.float32 and batch[key].shape == (16,)
    assert np.all(batch["waypoint_steps"] >= 1) and np.all(batch["waypoint_steps"] <= batch["value_goal_steps"])


def test_goal_sampling_statistics_through_the_loader(tagged):
    config = _config(tagged, drop_first_zero_action=False)
    config["goals"].update(gamma=0.99, waypoint_lambda=0.99, p_next_waypoint=0.2)
    episodes, steps, next_, waypoint, goal, actor, k_wp, k_goal = ([] for _ in range(8))
    with BridgeLoader(config, batch_size=256, seed=0) as loader:
        for _ in range(8):
            batch = loader.next_batch()
            e, t = _identity_of(batch["observations"])
            episodes.append(e), steps.append(t)
            for store, key in ((next_, "next_observations"), (waypoint, "waypoints"), (goal, "value_goals"),
                               (actor, "actor_goals")):
                store.append(_identity_of(batch[key]))
            k_wp.append(batch["waypoint_steps"]), k_goal.append(batch["value_goal_steps"])
    e, t = np.concatenate(episodes), np.concatenate(steps)
    k_wp, k_goal = np.concatenate(k_wp), np.concatenate(k_goal)
    assert set(np.unique(e)) == set(range(6)) and t.max() == LENGTH - 2  # every episode, never the last state
    for (ge, gt), k in ((np.concatenate([a[0] for a in next_]), np.concatenate([a[1] for a in next_])), 1), \
                       ((np.concatenate([a[0] for a in waypoint]), np.concatenate([a[1] for a in waypoint])), k_wp), \
                       ((np.concatenate([a[0] for a in goal]), np.concatenate([a[1] for a in goal])), k_goal):
        assert np.array_equal(ge, e)  # same trajectory
        assert np.array_equal(gt - t, np.broadcast_to(k, t.shape).astype(int))  # exactly k steps ahead
    assert np.all(t + k_goal <= LENGTH - 1)  # value goals clipped to the trajectory's end
    assert np.all((k_wp >= 1) & (k_wp <= k_goal))  # 1 <= k' <= K
    actor_e = np.concatenate([a[0] for a in actor])
    actor_t = np.concatenate([a[1] for a in actor])
    assert np.array_equal(actor_e, e) and np.all(actor_t > t) and np.all(actor_t <= LENGTH - 1)
    # k' = 1 with probability p, plus the rare Geom(0.01) = 1, K = 1 or last-transition cases
    assert 0.2 <= np.mean(k_wp == 1) <= 0.32
    # K ~ Geom(0.01) is mostly clipped at the trajectory's end here
    assert np.mean(t + k_goal == LENGTH - 1) > 0.7


def test_ranks_read_disjoint_episodes(tagged):
    seen = []
    for rank in range(2):
        with BridgeLoader(_config(tagged), batch_size=64, seed=0, rank=rank, world_size=2) as loader:
            seen.append(set(_identity_of(loader.next_batch()["observations"])[0]))
            assert loader.metrics()["data/buffer_episodes"] == 3
    assert not seen[0] & seen[1] and seen[0] | seen[1] == set(range(6))
    # more ranks than shards: every 3rd episode of the seeded order
    shards = [set() for _ in range(3)]
    for rank in range(3):
        with BridgeLoader(_config(tagged), batch_size=64, seed=0, rank=rank, world_size=3) as loader:
            shards[rank] = {ep.ref for ep in loader._buffer}
    assert all(len(s) == 2 for s in shards) and not (shards[0] & shards[1] or shards[1] & shards[2])


def test_same_seed_same_batches_other_seed_other_batches(tagged):
    def first_batches(seed):
        with BridgeLoader(_config(tagged, buffer_episodes=2, refresh_per_batch=1.0), batch_size=8, seed=seed) as loader:
            return [loader.next_batch() for _ in range(3)]

    a, b, c = first_batches(1), first_batches(1), first_batches(2)
    assert all(np.array_equal(x[k], y[k]) for x, y in zip(a, b) for k in BATCH_KEYS)
    assert not all(np.array_equal(x["observations"], y["observations"]) for x, y in zip(a, c))


def test_decoded_frame_cache_changes_nothing_but_speed(tagged):
    def batches(cache_mb):
        config = _config(tagged, buffer_episodes=3, refresh_per_batch=0.5, decoded_cache_mb=cache_mb)
        with BridgeLoader(config, batch_size=32, seed=6) as loader:
            out = [loader.next_batch() for _ in range(6)]
            return out, loader.metrics()["data/decoded_cache_mb"]

    (cached, used), (uncached, unused) = batches(64), batches(0)
    assert used > 0 and unused == 0
    assert all(np.array_equal(x[k], y[k]) for x, y in zip(cached, uncached) for k in BATCH_KEYS)


@pytest.mark.parametrize("buffer_episodes", [2, 16])  # streaming (epochs wrap, refresh) and whole split held
def test_state_dict_resume_gives_identical_batches(tagged, buffer_episodes):
    config = _config(tagged, buffer_episodes=buffer_episodes, refresh_per_batch=1.5)
    with BridgeLoader(config, batch_size=8, seed=4) as loader:
        for _ in range(3):
            loader.next_batch()
        state = json.loads(json.dumps(loader.state_dict()))  # survives JSON (and torch.save weights_only)
        expected = [loader.next_batch() for _ in range(6)]
        epochs = loader.metrics()["data/epoch"]
    with BridgeLoader(config, batch_size=8, seed=4) as resumed:
        resumed.load_state_dict(state)
        got = [resumed.next_batch() for _ in range(6)]
        assert resumed.metrics()["data/epoch"] == epochs
    if buffer_episodes == 2:
        assert epochs >= 1  # the stream wrapped around during the test
    assert all(np.array_equal(x[k], y[k]) for x, y in zip(expected, got) for k in BATCH_KEYS)
    with BridgeLoader(config, batch_size=4, seed=4) as other:
        with pytest.raises(ValueError, match="batch_size"):
            other.load_state_dict(state)


def test_clear_errors_for_bad_configuration(tagged):
    with pytest.raises(ValueError, match="data_dir is empty"):
        BridgeLoader(get_config())
    with pytest.raises(ValueError, match="no split 'test'"):
        BridgeLoader(_config(tagged), split="test")
    with pytest.raises(ValueError, match="rank 2 is not in 0..1"):
        BridgeLoader(_config(tagged), rank=2, world_size=2)
    # image_1 exists in the features but every episode stores it black: refused by the camera probe
    with pytest.raises(ValueError, match="camera image_1 is missing"):
        BridgeLoader(_config(tagged, camera="image_1"))
