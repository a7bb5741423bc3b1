from __future__ import annotations

import pytest
import torch

from modbench.clustering import (
    bsgc,
    clusterability,
    clusterability_from_squares,
    contiguous_labels,
    gradient_similarity,
    random_baseline,
    squared_matrix,
    wire_clusterability,
)
from modbench.models.base import Wire


def block_diagonal(row_labels: torch.Tensor, col_labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    weight = torch.randn(len(row_labels), len(col_labels), generator=generator, dtype=torch.float64)
    return weight * (row_labels[:, None] == col_labels[None, :])


def same_partition(found: torch.Tensor, planted: torch.Tensor) -> bool:
    """Equal up to relabeling: the pairs (found, planted) define a bijection."""
    pairs = set(zip(found.tolist(), planted.tolist(), strict=True))
    return len(pairs) == len(set(found.tolist())) == len(set(planted.tolist()))


@pytest.mark.parametrize(("n", "k"), [(12, 4), (784, 4), (10, 3), (7, 4), (6, 4), (5, 5), (9, 1)])
def test_contiguous_labels_cover_every_neuron_in_near_equal_blocks(n, k):
    labels = contiguous_labels(n, k)
    assert labels.shape == (n,) and labels.dtype == torch.long
    assert bool((labels[1:] >= labels[:-1]).all())  # contiguous, in order
    sizes = torch.bincount(labels, minlength=k)
    assert len(sizes) == k and int(sizes.sum()) == n and int(sizes.min()) >= 1
    assert int(sizes.max() - sizes.min()) <= 1
    assert sizes.tolist() == sorted(sizes.tolist(), reverse=True)  # leftovers go to the first clusters
    if n % k == 0:  # the authors' blocks: neuron i in cluster i // (n // k)
        assert labels.tolist() == [i // (n // k) for i in range(n)]


def test_contiguous_labels_refuse_empty_clusters():
    with pytest.raises(ValueError):
        contiguous_labels(3, 4)
    with pytest.raises(ValueError):
        contiguous_labels(3, 0)


def test_clusterability_of_block_diagonal_and_random_matrices():
    generator = torch.Generator().manual_seed(0)
    rows, cols = contiguous_labels(12, 3), contiguous_labels(9, 3)
    assert float(clusterability(block_diagonal(rows, cols, generator), rows, cols)) == pytest.approx(1.0)
    for k in (2, 4, 8):
        weight = torch.randn(256, 256, generator=generator)
        value = float(clusterability(weight, contiguous_labels(256, k), contiguous_labels(256, k)))
        assert abs(value - random_baseline(k)) < 0.02
    assert random_baseline(4) == 0.25
    zero = clusterability(torch.zeros(4, 4), contiguous_labels(4, 2), contiguous_labels(4, 2))
    assert float(zero) == 0.0  # not NaN


def test_clusterability_gradient_flows_and_is_orthogonal_to_the_weights():
    generator = torch.Generator().manual_seed(1)
    weight = torch.randn(20, 30, generator=generator, dtype=torch.float64, requires_grad=True)
    value = clusterability(weight, contiguous_labels(20, 4), contiguous_labels(30, 4))
    assert value.requires_grad and value.shape == ()
    (grad,) = torch.autograd.grad(value, weight)
    assert float(grad.norm()) > 1e-3
    assert float((weight.detach() * grad).sum()) == pytest.approx(0.0, abs=1e-12)  # C is scale invariant


def test_squared_matrix_folds_a_conv_weight_like_a_manual_sum():
    generator = torch.Generator().manual_seed(2)
    param = torch.randn(5, 3, 2, 2, generator=generator, dtype=torch.float64, requires_grad=True)
    wire = Wire("conv", param, reads="in", writes="out", out_dims=(0,), in_dims=(1,))
    folded = squared_matrix(wire)
    assert torch.allclose(folded, (param**2).sum(dim=(2, 3)))
    assert torch.allclose(folded.detach(), wire.matrix(param.detach() ** 2))  # same folding as Wire.matrix
    rows, cols = contiguous_labels(5, 2), contiguous_labels(3, 2)
    value = wire_clusterability(wire, rows, cols)
    value.backward()
    assert param.grad is not None and float(param.grad.abs().sum()) > 0
    assert float(value.detach()) == pytest.approx(float(clusterability_from_squares(folded.detach(), rows, cols)))

    # in dims flattened row-major, out dims last in the tensor: (in_a, k, out, in_b) viewed from a flat param
    flat = torch.randn(2 * 3 * 4 * 5, generator=generator, dtype=torch.float64)
    wire = Wire("odd", flat, reads="in", writes="out", out_dims=(2,), in_dims=(0, 3), view=(2, 3, 4, 5))
    manual = (flat.view(2, 3, 4, 5) ** 2).sum(1).permute(1, 0, 2).reshape(4, 10)
    assert torch.allclose(squared_matrix(wire), manual)


def planted_problem(seed: int = 0):
    """A 3-cluster block structure (noisy) with dead rows/cols, rows and columns randomly permuted."""
    generator = torch.Generator().manual_seed(seed)
    k, n_out, n_in = 3, 30, 24
    rows, cols = contiguous_labels(n_out, k), contiguous_labels(n_in, k)
    strong = block_diagonal(rows, cols, generator).abs() + 0.5 * (rows[:, None] == cols[None, :])
    weight = strong + 0.01 * torch.randn(n_out, n_in, generator=generator, dtype=torch.float64)
    weight[[3, 17]] = 0.0  # dead output neurons
    weight[:, [5, 20]] = 0.0  # dead input neurons
    row_perm = torch.randperm(n_out, generator=generator)
    col_perm = torch.randperm(n_in, generator=generator)
    alive_rows = weight.abs().sum(1)[row_perm] > 0
    alive_cols = weight.abs().sum(0)[col_perm] > 0
    return k, weight[row_perm][:, col_perm], rows[row_perm], cols[col_perm], alive_rows, alive_cols


def test_bsgc_recovers_a_planted_block_structure_with_matched_labels():
    k, weight, rows, cols, alive_rows, alive_cols = planted_problem()
    found_rows, found_cols = bsgc(weight.abs(), k, seed=0)
    assert found_rows.shape == rows.shape and found_cols.shape == cols.shape
    assert set(found_rows.tolist()) <= set(range(k)) and set(found_cols.tolist()) <= set(range(k))
    found_c = float(clusterability(weight, found_rows, found_cols))
    planted_c = float(clusterability(weight, rows, cols))
    assert found_c > 0.99 and found_c == pytest.approx(planted_c, abs=1e-9)
    # one partition of rows AND columns together (matched labels), up to relabeling; dead ones are free
    found = torch.cat([found_rows[alive_rows], found_cols[alive_cols]])
    planted = torch.cat([rows[alive_rows], cols[alive_cols]])
    assert same_partition(found, planted)
    # unmatched labels would score near 1/k: pair the found row clusters with shifted column clusters
    assert float(clusterability(weight, found_rows, (found_cols + 1) % k)) < 0.05
    # deterministic for a seed
    again = bsgc(weight.abs(), k, seed=0)
    assert torch.equal(again[0], found_rows) and torch.equal(again[1], found_cols)


def test_bsgc_refuses_more_clusters_than_alive_neurons_and_handles_k_1():
    weight = torch.zeros(5, 4, dtype=torch.float64)
    weight[0, 0] = weight[1, 1] = 1.0
    with pytest.raises(ValueError, match="alive"):
        bsgc(weight, 3)
    rows, cols = bsgc(weight, 2)
    assert float(clusterability(weight, rows, cols)) == pytest.approx(1.0)
    rows, cols = bsgc(weight, 1)
    assert rows.tolist() == [0] * 5 and cols.tolist() == [0] * 4
    with pytest.raises(ValueError, match="nonnegative"):
        bsgc(-weight, 1)


def test_gradient_similarity_accumulates_normalised_magnitudes():
    g1 = torch.tensor([[3.0, -4.0], [0.0, 0.0]])
    g2 = torch.tensor([[0.0, 0.0], [0.0, -2.0]])
    similarity = gradient_similarity([g1, g2, torch.zeros(2, 2)])
    assert torch.allclose(similarity, torch.tensor([[0.6, 0.8], [0.0, 1.0]]))
    with pytest.raises(ValueError):
        gradient_similarity([])

    # gradients of a wire's weight (a conv kernel) fold like Wire.matrix, normalised by the whole gradient
    param = torch.zeros(2, 3, 2, 2)
    wire = Wire("conv", param, reads="in", writes="out")
    grad = torch.randn(2, 3, 2, 2)
    expected = grad.abs().sum(dim=(2, 3)) / grad.norm()
    assert torch.allclose(gradient_similarity([grad], wire=wire), expected)

    # block-structured gradients give a similarity that BSGC splits along the blocks
    generator = torch.Generator().manual_seed(3)
    rows, cols = contiguous_labels(8, 2), contiguous_labels(6, 2)
    grads = [block_diagonal(rows, cols, generator) for _ in range(4)]
    found_rows, found_cols = bsgc(gradient_similarity(grads), 2)
    assert same_partition(torch.cat([found_rows, found_cols]), torch.cat([rows, cols]))
