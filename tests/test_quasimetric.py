"""MRN (and IQE) distances: quasimetric axioms on random embeddings, and the defining formula."""

import pytest
import torch

from mqe.quasimetric import iqe_distance, mrn_distance, pairwise_mrn_distance

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
            assert pairwise[i, j].item() == pytest.approx(mrn_distance(x[i], y[j], COMPONENTS).item(), abs=1e-12)
    # leading (ensemble) dims broadcast too
    stacked = pairwise_mrn_distance(torch.stack([x, 2 * x]), torch.stack([y, 2 * y]), COMPONENTS)
    assert torch.allclose(stacked[0], pairwise) and torch.allclose(stacked[1], pairwise_mrn_distance(2 * x, 2 * y, COMPONENTS))


@pytest.mark.parametrize(
    "shape_x, shape_y, components",
    [((2, 7, 16), (2, 5, 16), 2), ((7, 32), (9, 32), 4), ((3, 1, 6, 8), (4, 5, 8), 1)],
)
def test_pairwise_values_and_gradients_equal_the_broadcast_formula(shape_x, shape_y, components, monkeypatch):
    """The memory-lean pairwise path (cdist + arg-max backward) against autograd through the formula,
    also when its row chunks are tiny."""
    from mqe.quasimetric import _PairwiseMaxReLU

    monkeypatch.setattr(_PairwiseMaxReLU, "CHUNK_ELEMENTS", 64)
    torch.manual_seed(1)
    x = torch.randn(*shape_x, dtype=torch.float64, requires_grad=True)
    y = torch.randn(*shape_y, dtype=torch.float64, requires_grad=True)
    fast = pairwise_mrn_distance(x, y, components)
    reference = mrn_distance(x.unsqueeze(-2), y.unsqueeze(-3), components)
    assert fast.shape == reference.shape
    assert torch.allclose(fast, reference, atol=1e-12)
    weights = torch.randn_like(reference)
    fast_grads = torch.autograd.grad((fast * weights).sum(), (x, y))
    reference_grads = torch.autograd.grad((reference * weights).sum(), (x, y))
    for a, b in zip(fast_grads, reference_grads):
        assert torch.allclose(a, b, atol=1e-12)


def test_pairwise_identity_is_exact_with_finite_gradients():
    x = torch.randn(6, 16, requires_grad=True)
    d = pairwise_mrn_distance(x, x, 2)
    assert torch.all(d.diagonal() == 0)
    (grad,) = torch.autograd.grad(d.sum(), x)
    assert torch.isfinite(grad).all()


def test_mrn_rejects_sizes_that_do_not_split():
    with pytest.raises(ValueError, match="components"):
        mrn_distance(torch.zeros(2, 12), torch.zeros(2, 12), 4)
    with pytest.raises(ValueError, match="components"):
        pairwise_mrn_distance(torch.zeros(2, 12), torch.zeros(2, 12), 4)


IQE_COMPONENT_DIM = 8


def iqe_by_interval_merging(x: torch.Tensor, y: torch.Tensor, component_dim: int, mean_weight: float) -> float:
    """IQE by definition: per component, the length of the union of [x_i, y_i] over dims with x_i < y_i."""
    lengths = []
    for k in range(len(x) // component_dim):
        xs, ys = x[k * component_dim : (k + 1) * component_dim], y[k * component_dim : (k + 1) * component_dim]
        intervals = sorted((float(a), float(b)) for a, b in zip(xs, ys) if a < b)
        total, end = 0.0, float("-inf")
        for start, stop in intervals:
            if stop > end:
                total += stop - max(start, end)
                end = stop
        lengths.append(total)
    return mean_weight * sum(lengths) / len(lengths) + (1 - mean_weight) * max(lengths)


@pytest.mark.parametrize("mean_weight", [0.0, 0.3, 1.0])
def test_iqe_matches_interval_union_definition(embeddings, mean_weight):
    x, y = embeddings[:30], embeddings[30:60]
    fast = iqe_distance(x, y, IQE_COMPONENT_DIM, mean_weight)
    for i in range(30):
        assert fast[i].item() == pytest.approx(iqe_by_interval_merging(x[i], y[i], IQE_COMPONENT_DIM, mean_weight), abs=1e-10)
    # overlapping, nested and touching intervals in one component
    x = torch.tensor([[0.0, 0.5, 2.0, 3.0, 9.0, 1.0, 0.0, 0.0]])
    y = torch.tensor([[1.0, 0.7, 3.0, 4.0, 1.0, 1.0, 0.2, 0.0]])
    assert iqe_distance(x, y, 8, 1.0).item() == pytest.approx(1.0 + 2.0)  # [0,1] and [2,3] u [3,4]


def test_iqe_is_a_quasimetric(embeddings):
    e = embeddings[:120]
    d = iqe_distance(e[:, None], e[None, :], IQE_COMPONENT_DIM, 0.5)  # [N, N]
    assert torch.all(d.diagonal() == 0) and torch.all(d >= 0)
    assert (d[:, :, None] + d[None, :, :] - d[:, None, :]).min().item() >= -1e-9
    assert (d - d.T).abs().max() > 0.1


def test_iqe_gradients_are_finite():
    x = torch.randn(16, 32, requires_grad=True)
    y = torch.randn(16, 32, requires_grad=True)
    weight = torch.tensor(0.0, requires_grad=True)
    iqe_distance(x, y, IQE_COMPONENT_DIM, torch.sigmoid(weight)).sum().backward()
    for grad in (x.grad, y.grad, weight.grad):
        assert torch.isfinite(grad).all() and grad.abs().sum() > 0
