"""mqe.sim.dataset: scripted pick-and-place episodes written through the one Bridge writer and read
back with the training side's reader, plus the privileged-state sidecar."""

import numpy as np

from mqe.data.bridge import BridgeSource, decode_jpeg, parse_episode
from mqe.sim.dataset import generate


def test_sim_episodes_write_and_read_back_in_the_bridge_format(tmp_path):
    path, stats = generate(tmp_path, episodes=3, image_size=64, log=lambda *a, **k: None,
                           primitives=("pick_place_plate",))
    assert stats["written"] == 3
    source = BridgeSource(path)
    assert source.num_episodes("train") == 2 and source.num_episodes("val") == 1
    shard = source.shards("train")[0]
    ref, payload = next(item for item in source.iter_shard(shard))
    episode = parse_episode(payload, ref, "image_0")
    assert episode.has_camera and len(episode) == len(episode.states) >= 10
    frame = decode_jpeg(episode.images[0], "test")
    assert frame.shape == (64, 64, 3)
    # the action is the commanded delta (clipped to the arm's 5 cm step), gripper absolute 0/1
    assert np.abs(episode.actions[:, :3]).max() <= 0.05 + 1e-6
    assert set(np.unique(episode.actions[:, 6])) <= {0.0, 1.0} and episode.actions[:, 6].min() == 0.0
    # the state's gripper closes during the grasp, and the ee position follows the actions
    assert episode.states[:, 6].min() < 0.8 and episode.states[0, 6] > 0.95
    moved = episode.states[-1, :3] - episode.states[0, :3]
    np.testing.assert_allclose(moved, episode.actions[:-1, :3].sum(axis=0), atol=0.01)
    sidecars = sorted((tmp_path / "sim_privileged" / "train").glob("*.npz"))
    assert len(sidecars) == 2
    privileged = np.load(sidecars[0])
    assert privileged["objects"].shape[1:] == (4, 7) and len(privileged["drawer"]) == privileged["objects"].shape[0]
