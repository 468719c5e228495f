"""Image augmentation: same parameters across one sample's roles, deterministic, uint8 in and out."""

import numpy as np
import pytest
import torch

from mqe.data.augment import augment_batch, augment_images, get_config
from mqe.data.batch import OBSERVATION_KEYS


def _images(count=6, size=32, seed=0):
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, size=(count, 4, 4, 3)).astype(np.uint8)
    return torch.from_numpy(np.stack([np.kron(c, np.ones((size // 4, size // 4, 1), np.uint8)) for c in coarse]))


def _batch(images):
    batch = {key: images.clone() for key in OBSERVATION_KEYS}
    batch["actions"] = torch.zeros(len(images), 7)
    return batch


def _generator(seed):
    return torch.Generator().manual_seed(seed)


def test_same_parameters_for_every_role_of_a_sample_by_default():
    batch = _batch(_images())
    out = augment_batch(batch, get_config(), _generator(0))
    for key in OBSERVATION_KEYS:
        assert out[key].dtype == torch.uint8 and out[key].shape == batch[key].shape
        assert torch.equal(out[key], out["observations"])  # identical inputs -> identical outputs
    assert not torch.equal(out["observations"], batch["observations"])  # it did augment
    assert out["actions"] is batch["actions"]
    # different samples get different parameters: the same image in two rows comes out differently
    same = _images(1).repeat(2, 1, 1, 1)
    twice = augment_batch(_batch(same), get_config(), _generator(0))["observations"]
    assert not torch.equal(twice[0], twice[1])


def test_independent_option_gives_each_role_its_own_parameters():
    config = dict(get_config(), same_for_all_roles=False)
    out = augment_batch(_batch(_images()), config, _generator(0))
    assert not torch.equal(out["observations"], out["value_goals"])


def test_deterministic_given_the_generator():
    images = _images()
    a = augment_batch(_batch(images), get_config(), _generator(7))
    b = augment_batch(_batch(images), get_config(), _generator(7))
    c = augment_batch(_batch(images), get_config(), _generator(8))
    assert all(torch.equal(a[key], b[key]) for key in OBSERVATION_KEYS)
    assert not torch.equal(a["observations"], c["observations"])


def test_neutral_parameters_leave_images_unchanged_and_crop_zooms():
    images = _images()
    neutral = dict(get_config(), crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), brightness=0.0, contrast=0.0,
                   saturation=0.0, hue=0.0)
    assert torch.equal(augment_images(images, neutral, _generator(0)), images)
    # a crop of half the width and height is a 2x zoom: a horizontal ramp of slope 4 gets slope 2
    ramp = (torch.arange(32) * 4).to(torch.uint8).view(1, 1, 32, 1).expand(3, 32, 32, 3).contiguous()
    zoom = dict(neutral, crop_scale=(0.25, 0.25))
    out = augment_images(ramp, zoom, _generator(0)).float()
    assert out.shape == ramp.shape
    slope = (out[:, :, 1:, :] - out[:, :, :-1, :])[:, :, 2:-2].mean()
    assert abs(slope.item() - 2.0) < 0.1
    assert len({int(image[0, 0, 0]) for image in out}) == 3  # each image got its own crop position


def test_colour_jitter_changes_colour_within_its_range():
    grey = torch.full((64, 8, 8, 3), 100, dtype=torch.uint8)
    only_brightness = dict(get_config(), crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), contrast=0.0, saturation=0.0,
                           hue=0.0, brightness=0.2)
    out = augment_images(grey, only_brightness, _generator(0)).float()
    assert out.min() >= 79 and out.max() <= 121 and out.std() > 3


def test_state_batches_and_disabled_config_pass_through():
    states = {key: torch.zeros(4, 2) for key in OBSERVATION_KEYS}
    assert augment_batch(states, get_config(), _generator(0)) is states
    batch = _batch(_images())
    assert augment_batch(batch, dict(get_config(), enabled=False), _generator(0)) is batch
    with pytest.raises(ValueError, match="uint8"):
        augment_images(torch.zeros(2, 8, 8, 3), get_config(), _generator(0))
