"""MLPs (Linear -> LayerNorm -> GELU per hidden layer; or Linear -> GELU -> LayerNorm, the order of
OGBench's and the MQE release's `MLP`) and an ensemble of independent MLP heads evaluated in one
batched matmul per layer."""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class MLP(nn.Module):
    """Hidden layers Linear -> [LayerNorm] -> GELU (or Linear -> GELU -> [LayerNorm] with
    activation_before_norm), then a final Linear (activated if asked)."""

    def __init__(
        self,
        in_dim: int,
        hidden_dims: Sequence[int],
        out_dim: int,
        layer_norm: bool = True,
        activate_final: bool = False,
        final_init_scale: float = 1.0,
        activation_before_norm: bool = False,
    ):
        super().__init__()
        layers: list[nn.Module] = []
        dims = [in_dim, *hidden_dims]
        for d_in, d_out in zip(dims[:-1], dims[1:]):
            layers += [xavier_linear(d_in, d_out)] + norm_and_activation(d_out, layer_norm, activation_before_norm)
        layers.append(xavier_linear(dims[-1], out_dim, scale=final_init_scale))
        if activate_final:
            layers += norm_and_activation(out_dim, layer_norm, activation_before_norm)
        self.net = nn.Sequential(*layers)
        self.out_dim = out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def norm_and_activation(dim: int, layer_norm: bool, activation_before_norm: bool, ensemble_size: int = 0) -> list[nn.Module]:
    """[LayerNorm, GELU] or [GELU, LayerNorm] (LayerNorm left out without layer_norm)."""
    norm = ([EnsembleLayerNorm(ensemble_size, dim) if ensemble_size else nn.LayerNorm(dim)] if layer_norm else [])
    return [nn.GELU(), *norm] if activation_before_norm else [*norm, nn.GELU()]


def xavier_linear(in_dim: int, out_dim: int, scale: float = 1.0) -> nn.Linear:
    """Linear with OGBench's default init (variance scaling, fan_avg, uniform) and zero bias."""
    layer = nn.Linear(in_dim, out_dim)
    nn.init.xavier_uniform_(layer.weight, gain=scale)
    nn.init.zeros_(layer.bias)
    return layer


class EnsembleLinear(nn.Module):
    """`size` independent Linear layers: [E, B, in] (or [B, in], shared input) -> [E, B, out]."""

    def __init__(self, size: int, in_dim: int, out_dim: int):
        super().__init__()
        bound = math.sqrt(6.0 / (in_dim + out_dim))  # xavier uniform, per member
        self.weight = nn.Parameter(torch.empty(size, in_dim, out_dim).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.zeros(size, 1, out_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:
            return torch.einsum("bi,eio->ebo", x, self.weight) + self.bias
        return torch.baddbmm(self.bias, x, self.weight)


class EnsembleLayerNorm(nn.Module):
    """LayerNorm over the last dim with a separate affine transform per ensemble member."""

    def __init__(self, size: int, dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size, 1, dim))
        self.bias = nn.Parameter(torch.zeros(size, 1, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, x.shape[-1:]) * self.weight + self.bias


class EnsembleMLP(nn.Module):
    """An ensemble of `size` MLPs with the same architecture and independent parameters.

    Input [B, in] (the same input for every member) or [E, B, in]; output [E, B, out]."""

    def __init__(
        self,
        size: int,
        in_dim: int,
        hidden_dims: Sequence[int],
        out_dim: int,
        layer_norm: bool = True,
        activation_before_norm: bool = False,
    ):
        super().__init__()
        layers: list[nn.Module] = []
        dims = [in_dim, *hidden_dims]
        for d_in, d_out in zip(dims[:-1], dims[1:]):
            layers += [EnsembleLinear(size, d_in, d_out)]
            layers += norm_and_activation(d_out, layer_norm, activation_before_norm, ensemble_size=size)
        layers.append(EnsembleLinear(size, dims[-1], out_dim))
        self.net = nn.Sequential(*layers)
        self.size = size
        self.out_dim = out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
