"""Image augmentation on the training device: random resized crop + colour jitter on uint8 NHWC
batches, as in bridge_data_v2 / Octo (crop scale 0.8-1, ratio 0.9-1.1, brightness 0.2,
contrast/saturation 0.8-1.2, hue 0.1).

By default one sample's observation, next observation, waypoint and goals share the same random
parameters (issue #2): the quasimetric compares them, so they must stay in one "camera". With
`same_for_all_roles=False` every image gets its own parameters. All randomness comes from the
torch.Generator passed in, so a seeded generator reproduces a batch exactly.

    batch = augment_batch(batch, config["augment"], generator)   # called by the trainer, on device
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from mqe.data.batch import OBSERVATION_KEYS


def get_config() -> dict:
    return dict(
        enabled=True,  # augment training batches (never validation or export)
        crop_scale=(0.8, 1.0),  # area of the random crop as a fraction of the image
        crop_ratio=(0.9, 1.1),  # aspect ratio (width / height) range of the crop
        brightness=0.2,  # brightness factor drawn from [1 - b, 1 + b]
        contrast=0.2,  # contrast factor drawn from [1 - c, 1 + c]
        saturation=0.2,  # saturation factor drawn from [1 - s, 1 + s]
        hue=0.1,  # hue shift drawn from [-h, h] turns of the colour wheel (0.5 = half a turn)
        same_for_all_roles=True,  # one sample's observation, next obs, waypoint and goals share parameters
    )


def _uniform(low: float, high: float, shape, generator: torch.Generator) -> torch.Tensor:
    return low + (high - low) * torch.rand(shape, generator=generator, device=generator.device)


def _grey(images: torch.Tensor) -> torch.Tensor:
    """Luma of NCHW RGB images in [0, 1], keeping the channel dim."""
    weights = images.new_tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    return (images * weights).sum(dim=1, keepdim=True)


def _rotate_hue(images: torch.Tensor, turns: torch.Tensor) -> torch.Tensor:
    """Rotate chroma in YIQ space by `turns` of the colour wheel (a linear, differentiable hue shift)."""
    to_yiq = images.new_tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
    to_rgb = torch.linalg.inv(to_yiq)
    angle = turns * 2 * math.pi
    cos, sin = torch.cos(angle), torch.sin(angle)
    rotation = torch.zeros(len(images), 3, 3, device=images.device, dtype=images.dtype)
    rotation[:, 0, 0] = 1.0
    rotation[:, 1, 1], rotation[:, 1, 2] = cos, -sin
    rotation[:, 2, 1], rotation[:, 2, 2] = sin, cos
    transform = to_rgb @ rotation @ to_yiq  # [N, 3, 3]
    return torch.einsum("nij,njhw->nihw", transform, images)


def augment_images(images: torch.Tensor, config: dict, generator: torch.Generator, groups: int = 1) -> torch.Tensor:
    """Augment uint8 [groups * N, H, W, 3] images; images i, i + N, i + 2N, ... share parameters.

    With groups = 1 every image has its own parameters. Returns uint8 of the same shape.
    """
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"augment: expected uint8 [N, H, W, 3] images, got {images.dtype} {tuple(images.shape)}")
    total, height, width, _ = images.shape
    if total % groups:
        raise ValueError(f"augment: {total} images cannot be split into {groups} groups")
    count = total // groups

    def draw(low: float, high: float) -> torch.Tensor:
        return _uniform(low, high, (count,), generator).to(images.device).repeat(groups)

    x = images.permute(0, 3, 1, 2).float() / 255.0

    # random resized crop: an affine sampling grid over the crop window, output at the input size
    area = draw(*config["crop_scale"])
    log_ratio = draw(math.log(config["crop_ratio"][0]), math.log(config["crop_ratio"][1]))
    crop_w = torch.sqrt(area * torch.exp(log_ratio)).clamp(max=1.0)
    crop_h = torch.sqrt(area / torch.exp(log_ratio)).clamp(max=1.0)
    centre_x = (1 - crop_w) * (draw(0.0, 1.0) * 2 - 1)  # normalised [-1, 1] coordinates
    centre_y = (1 - crop_h) * (draw(0.0, 1.0) * 2 - 1)
    theta = torch.zeros(total, 2, 3, device=images.device)
    theta[:, 0, 0], theta[:, 0, 2] = crop_w, centre_x
    theta[:, 1, 1], theta[:, 1, 2] = crop_h, centre_y
    grid = F.affine_grid(theta, [total, 3, height, width], align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)

    # colour jitter, in a fixed order
    x = x * draw(1 - config["brightness"], 1 + config["brightness"]).view(-1, 1, 1, 1)
    x = x.clamp(0, 1)
    mean = _grey(x).mean(dim=(2, 3), keepdim=True)
    x = ((x - mean) * draw(1 - config["contrast"], 1 + config["contrast"]).view(-1, 1, 1, 1) + mean).clamp(0, 1)
    grey = _grey(x)
    x = ((x - grey) * draw(1 - config["saturation"], 1 + config["saturation"]).view(-1, 1, 1, 1) + grey).clamp(0, 1)
    if config["hue"] > 0:
        x = _rotate_hue(x, draw(-config["hue"], config["hue"])).clamp(0, 1)
    return (x * 255.0).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous()


def augment_batch(batch: dict[str, torch.Tensor], config: dict, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Return a copy of `batch` with every image role augmented (state observations pass through)."""
    if not config["enabled"]:
        return batch
    roles = [key for key in OBSERVATION_KEYS if key in batch]
    if not roles or batch[roles[0]].dtype != torch.uint8:
        return batch  # state observations (OGBench) are not images
    stacked = torch.cat([batch[key] for key in roles])
    augmented = augment_images(stacked, config, generator, groups=len(roles) if config["same_for_all_roles"] else 1)
    out = dict(batch)
    for i, key in enumerate(roles):
        out[key] = augmented[i * len(batch[key]) : (i + 1) * len(batch[key])]
    return out
