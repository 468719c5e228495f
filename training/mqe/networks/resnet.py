"""ResNet34 (BasicBlock, [3, 4, 6, 3]) with exactly torchvision's module names, so a user's
ImageNet checkpoint (torchvision `resnet34-*.pth`) loads by path without conversion.

torchvision itself does not work in this environment, hence the re-implementation. The state-dict
layout (conv1, bn1, layer{1..4}.{i}.conv1/bn1/conv2/bn2, layer{2,3,4}.0.downsample.0/1, fc) is
the fact the tests pin down; the classifier `fc` exists only when `num_classes` is given, and the
policy trunks build the network without it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Mapping

import torch
from torch import nn

logger = logging.getLogger(__name__)

RESNET34_BLOCKS = (3, 4, 6, 3)
RESNET34_WIDTHS = (64, 128, 256, 512)
RESNET34_FEATURES = 512


class TrunkWeightsError(ValueError):
    """A trunk weights file is missing, unreadable or does not fit the network."""


class BasicBlock(nn.Module):
    def __init__(self, in_channels: int, channels: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or in_channels != channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, channels, 1, stride=stride, bias=False), nn.BatchNorm2d(channels)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNet34(nn.Module):
    """Takes normalised float NCHW images; `forward` returns the 512-D global-average-pooled
    features, or class logits when built with `num_classes` (only used to mirror torchvision)."""

    def __init__(self, num_classes: int | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        in_channels = 64
        for stage, (blocks, width) in enumerate(zip(RESNET34_BLOCKS, RESNET34_WIDTHS), start=1):
            stride = 1 if stage == 1 else 2
            layers = []
            for i in range(blocks):
                layers.append(BasicBlock(in_channels, width, stride if i == 0 else 1))
                in_channels = width
            setattr(self, f"layer{stage}", nn.Sequential(*layers))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(RESNET34_FEATURES, num_classes) if num_classes else None
        # torchvision's initialisation, so a random-init trunk behaves like theirs
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = torch.flatten(self.avgpool(x), 1)
        return x if self.fc is None else self.fc(x)


def read_state_dict(path: str | Path) -> Mapping[str, torch.Tensor]:
    """Read a plain state dict saved with torch.save, tensors only (weights_only=True)."""
    path = Path(path)
    if not path.is_file():
        raise TrunkWeightsError(f"trunk weights {path}: no such file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for corrupt/unsafe files
        raise TrunkWeightsError(f"trunk weights {path}: cannot read it as a torch state dict ({error})") from error
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise TrunkWeightsError(
            f"trunk weights {path}: expected a state dict of tensors (torchvision resnet34-*.pth), "
            f"got {type(state).__name__}"
        )
    return state


def load_resnet34_weights(model: ResNet34, path: str | Path) -> None:
    """Load a torchvision ResNet34 checkpoint into `model`, strictly on every key except `fc.*`."""
    state = {k: v for k, v in read_state_dict(path).items() if not k.startswith("fc.")}
    expected = {k: v for k, v in model.state_dict().items() if not k.startswith("fc.")}
    # Checkpoints saved before PyTorch 0.4.1 (e.g. torchvision's resnet34-333f7ec4.pth) have no
    # BatchNorm step counters; the counter only matters for momentum=None, so start it at 0.
    for key, value in expected.items():
        if key.endswith(".num_batches_tracked") and key not in state:
            state[key] = torch.zeros_like(value)
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise TrunkWeightsError(
            f"trunk weights {path}: not a torchvision ResNet34 state dict; "
            f"missing {len(missing)} keys {missing[:5]}, unexpected {len(unexpected)} keys {unexpected[:5]}"
        )
    wrong_shapes = [
        f"{k} {tuple(state[k].shape)} (expected {tuple(v.shape)})" for k, v in expected.items() if state[k].shape != v.shape
    ]
    if wrong_shapes:
        raise TrunkWeightsError(f"trunk weights {path}: shape mismatch in {len(wrong_shapes)} tensors: {wrong_shapes[:5]}")
    model.load_state_dict(state, strict=model.fc is None)
    logger.info("loaded ResNet34 trunk weights from %s", path)
