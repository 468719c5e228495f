"""MRN (and IQE) distances: quasimetric axioms on random embeddings, and the defining formula."""

import pytest
import torch

from mqe.quasimetric import mrn_distance, pairwise_mrn_distance

COMPONENTS = 4
DIM = 32  # 4 components of 8 dims: 4 max-ReLU dims and 4 L2 dims each


def mrn_by_loops(x: torch.Tensor, y: torch.Tensor, components: int) -> float:
    """The issue's definition, one component at a time."""
    size = len(x) // components
    total = 0.0
    for k in range(components):
        xk, yk = x[k * size : (k + 1) * size], y[k * size : (k + 1) * size]
        half = size // 2
        total += max(max(float(a - b), 0.0) for a, b in zip(xk[:half], yk[:half]))
        total += sum(float(a - b) ** 2 for a, b in zip(xk[half:], yk[half:])) ** 0.5
    return total / components


@pytest.fixture
def embeddings():
    torch.manual_seed(0)
    return torch.randn(200, DIM, dtype=torch.float64) * torch.rand(200, 1, dtype=torch.float64) * 3


def test_mrn_matches_per_component_loop(embeddings):
    x, y = embeddings[:20], embeddings[20:40]
    fast = mrn_distance(x, y, COMPONENTS)
    for i in range(20):
        assert fast[i].item() == pytest.approx(mrn_by_loops(x[i], y[i], COMPONENTS), abs=1e-12)


def test_mrn_identity_and_nonnegativity(embeddings):
    assert torch.all(mrn_distance(embeddings, embeddings, COMPONENTS) == 0)
    pairwise = pairwise_mrn_distance(embeddings, embeddings, COMPONENTS)
    assert torch.all(pairwise >= 0)
    assert torch.all(pairwise.diagonal() == 0)


def test_mrn_triangle_inequality_on_random_triples(embeddings):
    d = pairwise_mrn_distance(embeddings, embeddings, COMPONENTS)  # [N, N]
    # d(x, z) <= d(x, y) + d(y, z) for all 200^3 triples
    slack = d[:, :, None] + d[None, :, :] - d[:, None, :]  # [x, y, z]
    assert slack.min().item() >= -1e-9


def test_mrn_is_asymmetric(embeddings):
    d = pairwise_mrn_distance(embeddings, embeddings, COMPONENTS)
    assert (d - d.T).abs().max() > 0.1
    # the asymmetric half alone: y dominates x in every max-ReLU dim -> d(x, y) = L2 part only
    x = torch.zeros(1, 8)
    y = torch.zeros(1, 8)
    y[0, :4] = 1.0
    assert mrn_distance(x, y, 1).item() == 0.0 and mrn_distance(y, x, 1).item() == 1.0


def test_pairwise_equals_broadcast(embeddings):
    x, y = embeddings[:7], embeddings[7:12]
    pairwise = pairwise_mrn_distance(x, y, COMPONENTS)
    assert pairwise.shape == (7, 5)
    for i in range(7):
        for j in range(5):
            assert pairwise[i, j] == mrn_distance(x[i], y[j], COMPONENTS)
    # leading (ensemble) dims broadcast too
    stacked = pairwise_mrn_distance(torch.stack([x, 2 * x]), torch.stack([y, 2 * y]), COMPONENTS)
    assert torch.allclose(stacked[0], pairwise) and torch.allclose(stacked[1], pairwise_mrn_distance(2 * x, 2 * y, COMPONENTS))


def test_mrn_rejects_sizes_that_do_not_split():
    with pytest.raises(ValueError, match="components"):
        mrn_distance(torch.zeros(2, 12), torch.zeros(2, 12), 4)
