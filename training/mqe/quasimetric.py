"""Metric Residual Network (MRN) quasimetric, paper Eq. (4), in the form stated by the issue:

    d(x, y) = 1/N sum_k [ max_{m in first half of component k} ReLU(x_m - y_m)
                         + || x_m - y_m ||_2 over the second half of component k ]

`l2_epsilon` > 0 takes the L2 half as || x_m - y_m + eps ||_2 (the MQE release adds 1e-8 inside
the norm: a finite gradient where x = y; then d(x, x) = eps sqrt(M/2) instead of 0).

The embedding of size N*M is split into N components of M dims each. The max-ReLU half is
asymmetric (it makes d a quasimetric, not a metric), the L2 half is symmetric. Both halves
satisfy d(x, x) = 0, d >= 0 and the triangle inequality, so their sum and mean do too.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def mrn_distance(x: torch.Tensor, y: torch.Tensor, components: int, l2_epsilon: float = 0.0) -> torch.Tensor:
    """Quasimetric distance between broadcastable embeddings x, y of shape [..., N*M] -> [...]."""
    diff = x - y
    if diff.shape[-1] % (2 * components):
        raise ValueError(
            f"MRN: embedding size {diff.shape[-1]} must split into {components} components of even size"
        )
    diff = diff.reshape(*diff.shape[:-1], components, diff.shape[-1] // components)
    half = diff.shape[-1] // 2
    asymmetric = F.relu(diff[..., :half]).amax(dim=-1)
    symmetric = torch.linalg.vector_norm(diff[..., half:] + l2_epsilon, dim=-1)
    return (asymmetric + symmetric).mean(dim=-1)


def pairwise_mrn_distance(x: torch.Tensor, y: torch.Tensor, components: int, l2_epsilon: float = 0.0) -> torch.Tensor:
    """All pairs: x [..., B, D], y [..., C, D] -> [..., B, C] with entry (i, j) = d(x_i, y_j).

    Equal to mrn_distance(x[..., :, None, :], y[..., None, :, :]) but never materialises (or saves
    for backward) the [..., B, C, D] differences, which made the critic's all-pairs loss dominate a
    training step: the L2 halves go through torch.cdist, the max-ReLU halves through a chunked max
    whose backward sends the gradient to the arg-max dims only.
    """
    if x.shape[-1] != y.shape[-1] or x.shape[-1] % (2 * components):
        raise ValueError(
            f"MRN: embedding sizes {x.shape[-1]} and {y.shape[-1]} must be equal and split into "
            f"{components} components of even size"
        )
    lead = torch.broadcast_shapes(x.shape[:-2], y.shape[:-2])
    x = x.expand(*lead, *x.shape[-2:]).reshape(*lead, x.shape[-2], components, -1)  # [..., B, N, M]
    y = y.expand(*lead, *y.shape[-2:]).reshape(*lead, y.shape[-2], components, -1)  # [..., C, N, M]
    half = x.shape[-1] // 2
    asymmetric = _PairwiseMaxReLU.apply(x[..., :half], y[..., :half])  # [..., B, C, N]
    symmetric = torch.cdist(
        (x[..., half:] + l2_epsilon).transpose(-3, -2).contiguous(),  # || (x + eps) - y || = || x - y + eps ||
        y[..., half:].transpose(-3, -2).contiguous(),
        compute_mode="donot_use_mm_for_euclid_dist",  # exact: d(x, x) = 0, no cancellation
    )  # [..., N, B, C]
    return (asymmetric.sum(dim=-1) + symmetric.sum(dim=-3)) / components


class _PairwiseMaxReLU(torch.autograd.Function):
    """x [..., B, N, H], y [..., C, N, H] -> max_h ReLU(x_ikh - y_jkh) as [..., B, C, N]."""

    CHUNK_ELEMENTS = 1 << 18  # differences held at once: 1 MiB of float32 stays in cache

    @staticmethod
    def forward(ctx, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        rows = max(1, _PairwiseMaxReLU.CHUNK_ELEMENTS // max(1, y.shape[-3] * y.shape[-2] * y.shape[-1]))
        values, indices = [], []
        for start in range(0, x.shape[-3], rows):
            differences = x[..., start : start + rows, None, :, :] - y[..., None, :, :, :]  # [..., r, C, N, H]
            value, index = differences.max(dim=-1)
            values.append(value)
            indices.append(index)
        value, index = torch.cat(values, dim=-3), torch.cat(indices, dim=-3)
        active = value > 0  # ReLU(max) = max(ReLU): no gradient where every difference is <= 0
        ctx.save_for_backward(index, active)
        ctx.shapes = (x.shape, y.shape)
        return value.clamp(min=0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        index, active = ctx.saved_tensors
        x_shape, y_shape = ctx.shapes
        grad = grad * active  # [..., B, C, N]
        grad_x = grad.new_zeros(x_shape).scatter_add_(-1, index.movedim(-2, -1), grad.movedim(-2, -1))
        grad_y = grad.new_zeros(y_shape).scatter_add_(-1, index.movedim(-3, -1), -grad.movedim(-3, -1))
        return grad_x, grad_y


def iqe_distance(x: torch.Tensor, y: torch.Tensor, component_dim: int, mean_weight: torch.Tensor | float) -> torch.Tensor:
    """Interval Quasimetric Embedding (IQE, Wang & Isola 2022), QRL's default quasimetric.

    The embedding of size D is split into D / component_dim components. In component k, every dim i
    with x_i < y_i contributes the interval [x_i, y_i]; the component's distance is the total length
    of the union of those intervals. Components are combined as
        mean_weight * mean_k + (1 - mean_weight) * max_k
    (QRL learns mean_weight through a sigmoid). x, y broadcastable [..., D] -> [...].
    """
    x, y = torch.broadcast_tensors(x, y)
    if x.shape[-1] % component_dim:
        raise ValueError(f"IQE: embedding size {x.shape[-1]} is not a multiple of component_dim {component_dim}")
    x = x.reshape(*x.shape[:-1], -1, component_dim)
    y = y.reshape(*y.shape[:-1], -1, component_dim)
    valid = x < y
    # Sweep over the sorted interval endpoints: a start adds 1 to the coverage count, an end
    # subtracts 1; a gap between consecutive endpoints lies in the union where the count is > 0.
    endpoints = torch.cat([x, torch.where(valid, y, x)], dim=-1)
    steps = torch.cat([valid, valid], dim=-1).to(x.dtype) * torch.cat(
        [torch.ones_like(x), -torch.ones_like(x)], dim=-1
    )
    sorted_endpoints, order = endpoints.sort(dim=-1)
    coverage = torch.gather(steps, -1, order).cumsum(dim=-1)
    gaps = sorted_endpoints[..., 1:] - sorted_endpoints[..., :-1]
    union = (gaps * (coverage[..., :-1] > 0).to(x.dtype)).sum(dim=-1)  # [..., components]
    return mean_weight * union.mean(dim=-1) + (1 - mean_weight) * union.amax(dim=-1)
