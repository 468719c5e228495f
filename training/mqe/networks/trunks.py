"""Observation trunks: observation -> flat feature vector, the first stage of every actor and critic.

Image trunks take uint8 NHWC RGB tensors (exactly what the dataset and the robot provide) and do
the /255 and ImageNet mean/std normalisation themselves, so the exported ONNX graph contains it.
"""

from __future__ import annotations

import logging
import numbers
import warnings
from typing import NamedTuple, Sequence

import torch
from torch import nn

from mqe.networks.mlp import MLP
from mqe.networks.resnet import RESNET34_FEATURES, ResNet34, load_resnet34_weights

logger = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
TRUNKS = ("resnet34", "small_conv", "small_conv_spatial", "mlp")


class ObservationSpec(NamedTuple):
    """("image", size) for uint8 [B, size, size, 3] images or ("state", dim) for float32 [B, dim]."""

    kind: str
    size: int


def as_observation_spec(spec: ObservationSpec | tuple) -> ObservationSpec:
    if not isinstance(spec, tuple) or len(spec) != 2:
        raise ValueError(f"observation spec must be ('image', size) or ('state', dim), got {spec!r}")
    kind, size = spec
    if kind not in ("image", "state") or not isinstance(size, numbers.Integral) or size <= 0:
        raise ValueError(f"observation spec must be ('image', size) or ('state', dim) with a positive int, got {spec!r}")
    return ObservationSpec(kind, int(size))


class ImageTrunk(nn.Module):
    """uint8 NHWC RGB -> ImageNet-normalised float NCHW -> backbone -> [B, out_dim]."""

    def __init__(self, backbone: nn.Module, out_dim: int, image_size: int):
        super().__init__()
        self.backbone = backbone
        self.out_dim = out_dim
        self.image_size = image_size
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[-1] != 3:
            raise ValueError(
                f"image trunk: expected uint8 [B, {self.image_size}, {self.image_size}, 3] RGB images, "
                f"got {images.dtype} {tuple(images.shape)}"
            )
        x = images.permute(0, 3, 1, 2).float() / 255.0
        return self.backbone((x - self.mean) / self.std)


def stride2_convs(channels: Sequence[int]) -> list[nn.Module]:
    """3x3 stride-2 convs + ReLU from RGB through `channels`."""
    layers: list[nn.Module] = []
    in_channels = 3
    for out_channels in channels:
        layers += [nn.Conv2d(in_channels, out_channels, 3, stride=2, padding=1), nn.ReLU()]
        in_channels = out_channels
    return layers


class SmallConv(nn.Module):
    """A few stride-2 3x3 convs + ReLU and a global average pool: fast on CPU, for tests and demos."""

    def __init__(self, channels: Sequence[int]):
        super().__init__()
        self.net = nn.Sequential(*stride2_convs(channels), nn.AdaptiveAvgPool2d(1), nn.Flatten())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class SpatialSmallConv(nn.Module):
    """SmallConv's convs, then per channel the soft-argmax (x, y) of its map (spatial softmax,
    Levine et al. 2016) beside its average: 3 * C features. The global average pool alone keeps
    almost no "where", and a pick-and-place policy has to know where the object and the gripper are."""

    def __init__(self, channels: Sequence[int]):
        super().__init__()
        self.convs = nn.Sequential(*stride2_convs(channels))
        self.out_dim = 3 * channels[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        maps = self.convs(x)
        height, width = maps.shape[-2:]
        weights = torch.softmax(maps.flatten(2), dim=-1)  # [B, C, H*W]
        ys = torch.linspace(-1.0, 1.0, height, device=x.device, dtype=x.dtype)
        xs = torch.linspace(-1.0, 1.0, width, device=x.device, dtype=x.dtype)
        grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
        keypoints = weights @ torch.stack([grid_x.flatten(), grid_y.flatten()], dim=-1)  # [B, C, 2]
        return torch.cat([keypoints.flatten(1), maps.mean(dim=(-2, -1))], dim=-1)


class StateTrunk(nn.Module):
    """float32 [B, obs_dim] states -> features: an MLP, or the state itself when hidden_dims is
    empty (OGBench state tasks feed the raw state to the actor and critic MLPs)."""

    def __init__(self, obs_dim: int, hidden_dims: Sequence[int], layer_norm: bool):
        super().__init__()
        self.mlp = (
            MLP(obs_dim, hidden_dims[:-1], hidden_dims[-1], layer_norm=layer_norm, activate_final=True)
            if hidden_dims
            else None
        )
        self.out_dim = hidden_dims[-1] if hidden_dims else obs_dim
        self.obs_dim = obs_dim

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        if not states.is_floating_point() or states.dim() != 2 or states.shape[-1] != self.obs_dim:
            raise ValueError(
                f"state trunk: expected float [B, {self.obs_dim}] states, got {states.dtype} {tuple(states.shape)}"
            )
        return states if self.mlp is None else self.mlp(states)


def get_trunk_config() -> dict:
    """The trunk's hyperparameters; every agent's get_config() includes them (flat, as make_trunk reads them)."""
    return dict(
        trunk="resnet34",  # observation trunk: "resnet34" | "small_conv" | "small_conv_spatial" (images) | "mlp" (states)
        trunk_weights=None,  # torchvision resnet34-*.pth for every ResNet34 trunk; None = random init (warns)
        small_conv_channels=(32, 64, 128, 256),  # small_conv(_spatial) trunks: channels of their stride-2 convs
        state_trunk_dims=(),  # mlp trunk: hidden dims before the heads; () feeds the raw state (OGBench)
    )


def make_trunk(config: dict, observation_spec: ObservationSpec | tuple) -> nn.Module:
    """Build the trunk named by config["trunk"]; every trunk has `out_dim`.

    Uses config keys: trunk, trunk_weights (resnet34), small_conv_channels (small_conv),
    state_trunk_dims and layer_norm (mlp)."""
    spec = as_observation_spec(observation_spec)
    name = config["trunk"]
    if name not in TRUNKS:
        raise ValueError(f"config trunk: expected one of {TRUNKS}, got {name!r}")
    if (spec.kind == "state") != (name == "mlp"):
        raise ValueError(f"config trunk {name!r} does not fit {spec.kind} observations (use 'mlp' for states)")
    if name == "mlp":
        return StateTrunk(spec.size, tuple(config["state_trunk_dims"]), config["layer_norm"])
    if name == "small_conv":
        channels = tuple(config["small_conv_channels"])
        return ImageTrunk(SmallConv(channels), channels[-1], spec.size)
    if name == "small_conv_spatial":
        backbone = SpatialSmallConv(tuple(config["small_conv_channels"]))
        return ImageTrunk(backbone, backbone.out_dim, spec.size)
    backbone = ResNet34()
    if config["trunk_weights"]:
        load_resnet34_weights(backbone, config["trunk_weights"])
    else:
        message = (
            "ResNet34 trunk is RANDOMLY INITIALISED: no trunk_weights given. The paper uses an ImageNet-"
            "pretrained ResNet34; pass --trunk-weights PATH/resnet34-*.pth (torchvision's file)."
        )
        warnings.warn(message, stacklevel=2)
        logger.warning(message)
    return ImageTrunk(backbone, RESNET34_FEATURES, spec.size)
