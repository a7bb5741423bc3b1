"""Bipartite clusters of a weight matrix and how much weight stays inside them (clusterability).

Facts from Golechha et al., "Modular Training of Neural Networks aids Interpretability": a layer's
(n_out, n_in) weight matrix W is split into k *bipartite* clusters (each output neuron and each input
neuron gets a label in 0..k-1; entry (o, i) is in-cluster when both labels agree), and

    C(W) = sum of W[o, i]^2 over in-cluster entries / sum of all W[o, i]^2,

which is 1 for a block-diagonal W and about 1/k (:func:`random_baseline`) for an unstructured one.
Clusters are either fixed contiguous blocks (:func:`contiguous_labels`, used during modular training) or
found from a similarity matrix by bipartite spectral graph clustering (:func:`bsgc`), on |W| or on
accumulated gradients (:func:`gradient_similarity`).

Deviations from the authors' code (github.com/7vik/nn-modularity), on purpose:

* contiguous blocks: the authors take blocks of n // k rows and leave the n % k leftover rows in no
  cluster at all; here the leftovers go one each to the first clusters (see :func:`contiguous_labels`);
* BSGC: the authors fit two independent k-means, one on the row embedding and one on the column
  embedding, and pair row cluster c with column cluster c, an arbitrary pairing; here one joint k-means
  runs on the stacked row and column embeddings (Dhillon 2001, co-clustering), so a row cluster and a
  column cluster with the same label are the same cluster;
* gradient-based BSGC: the authors' similarity sum_t G_t^T G_t is an (n_in, n_in) Gram matrix (it only
  gives bipartite clusters when the layer is square); here the similarity is the bipartite
  (n_out, n_in) matrix sum_t |G_t| / ||G_t||_F, clustered exactly like |W|.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import scipy.linalg
import torch
from jaxtyping import Float, Int
from sklearn.cluster import KMeans
from threadpoolctl import threadpool_limits
from torch import Tensor

from modbench.models.base import Wire

KMEANS_N_INIT = 10
# BLAS/OpenMP threads for BSGC's SVD and k-means. The matrices are small (a layer); on a loaded machine
# several threads made them 10-100x slower (OpenMP spin-waiting; measured: k-means on 1,296 points took
# 11 s with 2 threads, 0.08 s with 1), so BSGC runs single-threaded.
BSGC_THREADS = 1


def contiguous_labels(n: int, k: int) -> Int[Tensor, " n"]:
    """Labels of ``n`` neurons split into ``k`` contiguous clusters of (almost) equal size.

    Cluster c holds ``n // k`` consecutive neurons, plus one more for each of the first ``n % k`` clusters:
    no neuron is left out, sizes differ by at most 1, and when k divides n the blocks are exactly the
    authors' (size n // k; their code drops the ``n % k`` leftover neurons into no cluster instead).
    """
    if not 1 <= k <= n:
        raise ValueError(f"cannot split {n} neurons into {k} non-empty clusters (need 1 <= k <= n)")
    sizes = torch.full((k,), n // k, dtype=torch.long)
    sizes[: n % k] += 1
    return torch.repeat_interleave(torch.arange(k), sizes)


def random_baseline(k: int) -> float:
    """Expected clusterability of a matrix without structure (equal-size clusters): 1 / k."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    return 1.0 / k


def in_cluster_mask(row_labels: Int[Tensor, " n_out"], col_labels: Int[Tensor, " n_in"]) -> Tensor:
    """Boolean (n_out, n_in): entry (o, i) is in-cluster when ``row_labels[o] == col_labels[i]``."""
    return row_labels[:, None] == col_labels.to(row_labels.device)[None, :]


def clusterability_from_squares(
    squares: Float[Tensor, "n_out n_in"], row_labels: Int[Tensor, " n_out"], col_labels: Int[Tensor, " n_in"]
) -> Float[Tensor, ""]:
    """Clusterability of a matrix given its entries already squared (e.g. :func:`squared_matrix`).

    Differentiable; an all-zero matrix gives 0 (not NaN).
    """
    mask = in_cluster_mask(row_labels.to(squares.device), col_labels.to(squares.device))
    inside = (squares * mask).sum()
    return inside / squares.sum().clamp_min(torch.finfo(squares.dtype).tiny)


def clusterability(
    weight_matrix: Float[Tensor, "n_out n_in"], row_labels: Int[Tensor, " n_out"], col_labels: Int[Tensor, " n_in"]
) -> Float[Tensor, ""]:
    """C(W) = in-cluster sum of W^2 / total sum of W^2, for signed weights W (differentiable: a loss term).

    C is invariant to the scale of W, so its gradient is orthogonal to W (sum(W * dC/dW) = 0).
    """
    return clusterability_from_squares(weight_matrix.square(), row_labels, col_labels)


def squared_matrix(wire: Wire, tensor: Tensor | None = None) -> Float[Tensor, "n_out n_in"]:
    """W^2 of a wire folded to (n_out, n_in), differentiably (unlike ``Wire.matrix``, which detaches and
    takes |W|): dims are moved to (out dims, in dims, extra dims), flattened row-major like
    ``Wire.matrix``, and extra dims (a conv kernel) are summed. ``tensor`` replaces ``wire.weight``
    (same shape as the possibly viewed weight)."""
    weight = wire.weight if tensor is None else tensor
    order, extra = wire._order()
    moved = weight.square().permute(order)
    n_out = math.prod(int(weight.shape[d]) for d in wire.out_dims)
    n_in = math.prod(int(weight.shape[d]) for d in wire.in_dims)
    return moved.reshape(n_out, n_in, -1).sum(-1) if extra else moved.reshape(n_out, n_in)


def wire_clusterability(
    wire: Wire, row_labels: Int[Tensor, " n_out"], col_labels: Int[Tensor, " n_in"], tensor: Tensor | None = None
) -> Float[Tensor, ""]:
    """Clusterability of a wire's weight (extra dims' squares summed per (out, in) pair); differentiable."""
    return clusterability_from_squares(squared_matrix(wire, tensor), row_labels, col_labels)


def gradient_similarity(grads: Iterable[Tensor], wire: Wire | None = None) -> Float[Tensor, "n_out n_in"]:
    """Bipartite gradient similarity sum_t |G_t| / ||G_t||_F, to cluster with :func:`bsgc`.

    Each gradient is normalised by its Frobenius norm (so every step counts alike, whatever the loss
    scale); all-zero gradients are skipped. Without ``wire`` each G_t is an (n_out, n_in) matrix; with
    ``wire`` each G_t is shaped like ``wire.weight`` and |G_t| is folded by ``wire.matrix`` (summed over
    extra dims) after normalising by the norm of the whole G_t.

    Deviation from the authors: they accumulate sum_t G_t^T G_t, an (n_in, n_in) Gram matrix that only
    defines bipartite clusters for square layers; this (n_out, n_in) similarity works for any layer.
    """
    total: Tensor | None = None
    for grad in grads:
        grad = grad.detach()
        folded = wire.matrix(grad) if wire is not None else grad.abs()
        if folded.dim() != 2:
            raise ValueError(f"gradient_similarity needs (n_out, n_in) gradients, got shape {tuple(grad.shape)}")
        if total is None:
            total = torch.zeros_like(folded)
        elif folded.shape != total.shape:
            raise ValueError(f"gradient shapes differ: {tuple(folded.shape)} after {tuple(total.shape)}")
        norm = torch.linalg.vector_norm(grad)
        if norm > 0:
            total += folded / norm
    if total is None:
        raise ValueError("gradient_similarity needs at least one gradient")
    return total


def bsgc(
    similarity: Float[Tensor, "n_out n_in"], k: int, seed: int = 0
) -> tuple[Int[Tensor, " n_out"], Int[Tensor, " n_in"]]:
    """Bipartite spectral graph clustering of a nonnegative (n_out, n_in) similarity (e.g. |W|) into k
    matched clusters: (row labels, column labels), label c of a row and of a column being one cluster.

    A = similarity, D_U = diag(row sums), D_V = diag(column sums), Ã = D_U^-1/2 A D_V^-1/2; with U, V the
    top-k left/right singular vectors of Ã, rows are embedded as D_U^-1/2 U and columns as D_V^-1/2 V, and
    ONE k-means (scikit-learn, ``n_init`` fixed, ``random_state=seed``) clusters rows and columns together
    (Dhillon 2001), which matches row clusters to column clusters. (For a block-diagonal A, the rows and
    columns of a block land on the same point.)

    Dead rows/columns (zero sum: no weight, and D^-1/2 undefined) are left out of the embedding and then
    each put in the cluster with the fewest rows (columns) so far; they carry no weight, so the
    clusterability does not depend on where they go. Labels are renumbered in order of first appearance
    (rows first, then columns), so equal partitions get equal labels. Raises ValueError when
    k > min(alive rows, alive columns).
    """
    if similarity.dim() != 2:
        raise ValueError(f"bsgc needs an (n_out, n_in) matrix, got shape {tuple(similarity.shape)}")
    a = similarity.detach().to(device="cpu", dtype=torch.float64).numpy()
    if not np.isfinite(a).all() or (a < 0).any():
        raise ValueError("bsgc needs a finite nonnegative similarity (take |W|, not W)")
    row_sums, col_sums = a.sum(1), a.sum(0)
    rows, cols = np.flatnonzero(row_sums > 0), np.flatnonzero(col_sums > 0)
    if k < 1 or k > min(len(rows), len(cols)):
        raise ValueError(
            f"cannot find {k} clusters: need 1 <= k <= min(alive rows, alive columns) = "
            f"min({len(rows)}, {len(cols)}) (rows/columns with zero total similarity are dead)"
        )
    row_labels = np.full(a.shape[0], -1, dtype=np.int64)
    col_labels = np.full(a.shape[1], -1, dtype=np.int64)
    if k == 1:
        row_labels[rows], col_labels[cols] = 0, 0
    else:
        scale_u, scale_v = 1.0 / np.sqrt(row_sums[rows]), 1.0 / np.sqrt(col_sums[cols])
        normalised = scale_u[:, None] * a[np.ix_(rows, cols)] * scale_v[None, :]
        with threadpool_limits(BSGC_THREADS):
            u, _, vt = scipy.linalg.svd(normalised, full_matrices=False)
            embedding = np.concatenate([scale_u[:, None] * u[:, :k], scale_v[:, None] * vt[:k].T])
            kmeans = KMeans(n_clusters=k, n_init=KMEANS_N_INIT, random_state=seed).fit(embedding)
        row_labels[rows], col_labels[cols] = kmeans.labels_[: len(rows)], kmeans.labels_[len(rows) :]
    _place_dead(row_labels, k)
    _place_dead(col_labels, k)
    row_labels, col_labels = _renumber(row_labels, col_labels, k)
    device = similarity.device
    return torch.from_numpy(row_labels).to(device), torch.from_numpy(col_labels).to(device)


def _place_dead(labels: np.ndarray, k: int) -> None:
    """Give each unlabelled (-1) entry, in index order, the currently smallest cluster (lowest label on ties)."""
    counts = np.bincount(labels[labels >= 0], minlength=k)
    for index in np.flatnonzero(labels < 0):
        smallest = int(np.argmin(counts))
        labels[index] = smallest
        counts[smallest] += 1


def _renumber(row_labels: np.ndarray, col_labels: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Relabel clusters in order of first appearance in (rows, then columns); unseen labels come last."""
    seen = list(dict.fromkeys(np.concatenate([row_labels, col_labels]).tolist()))
    seen += [label for label in range(k) if label not in seen]
    new = np.empty(k, dtype=np.int64)
    new[seen] = np.arange(k)
    return new[row_labels], new[col_labels]
