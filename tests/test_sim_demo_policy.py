"""The two pieces of the sim demo policy's recipe (`python -m mqe.sim.demo_policy`): final-frame actor
goals and the keypoint conv trunk."""

import numpy as np
import torch

from mqe.data.goal_sampling import get_config as get_goal_config
from mqe.data.goal_sampling import sample_goal_indices
from mqe.networks import make_trunk, get_trunk_config


def test_final_actor_goal_is_the_last_state_of_each_trajectory():
    config = get_goal_config() | {"actor_goal": "final"}
    final_index = np.array([4, 4, 4, 4, 9, 9, 9, 9, 9])
    index = np.array([0, 1, 2, 3, 5, 6, 7, 8, 5])
    goals = sample_goal_indices(np.random.default_rng(0), index, final_index, 10, config)
    np.testing.assert_array_equal(goals.actor_goal, final_index)


def test_spatial_trunk_features_follow_where_a_bright_spot_is():
    torch.manual_seed(0)
    config = get_trunk_config() | {"trunk": "small_conv_spatial", "small_conv_channels": (8, 8)}
    trunk = make_trunk(config, ("image", 32))
    images = torch.zeros(2, 32, 32, 3, dtype=torch.uint8)
    images[0, 2:8, 2:8] = 255  # top left
    images[1, 24:30, 24:30] = 255  # bottom right
    features = trunk(images)
    assert features.shape == (2, trunk.out_dim) == (2, 24)
    keypoints = features[:, :16].view(2, 8, 2)
    # soft-argmax coordinates lie in [-1, 1]; the same spot elsewhere moves them (an average pool would not)
    assert keypoints.abs().max() <= 1.0
    assert (keypoints[0] - keypoints[1]).abs().max() > 0.05
