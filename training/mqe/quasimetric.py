"""Metric Residual Network (MRN) quasimetric, paper Eq. (4), in the form stated by the issue:

    d(x, y) = 1/N sum_k [ max_{m in first half of component k} ReLU(x_m - y_m)
                         + || x_m - y_m ||_2 over the second half of component k ]

The embedding of size N*M is split into N components of M dims each. The max-ReLU half is
asymmetric (it makes d a quasimetric, not a metric), the L2 half is symmetric. Both halves
satisfy d(x, x) = 0, d >= 0 and the triangle inequality, so their sum and mean do too.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def mrn_distance(x: torch.Tensor, y: torch.Tensor, components: int) -> torch.Tensor:
    """Quasimetric distance between broadcastable embeddings x, y of shape [..., N*M] -> [...]."""
    diff = x - y
    if diff.shape[-1] % (2 * components):
        raise ValueError(
            f"MRN: embedding size {diff.shape[-1]} must split into {components} components of even size"
        )
    diff = diff.reshape(*diff.shape[:-1], components, diff.shape[-1] // components)
    half = diff.shape[-1] // 2
    asymmetric = F.relu(diff[..., :half]).amax(dim=-1)
    symmetric = torch.linalg.vector_norm(diff[..., half:], dim=-1)
    return (asymmetric + symmetric).mean(dim=-1)


def pairwise_mrn_distance(x: torch.Tensor, y: torch.Tensor, components: int) -> torch.Tensor:
    """All pairs: x [..., B, D], y [..., C, D] -> [..., B, C] with entry (i, j) = d(x_i, y_j)."""
    return mrn_distance(x.unsqueeze(-2), y.unsqueeze(-3), components)
