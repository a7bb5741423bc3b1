"""Figures of the weights themselves: |W| heatmaps of the clustered matrices with the k contiguous cluster
blocks marked (Golechha et al. Figure 3), and the token embedding's norms in the Fourier basis for modular
addition (Golechha et al. Figure 13, after Nanda et al.: a grokked model uses a few key frequencies)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from modbench.clustering import contiguous_labels
from modbench.methods.cluster import clustered_wires
from modbench.models.base import ModelAdapter
from modbench.viz.figures import _save, plt


def weight_heatmaps(model: ModelAdapter, path: Path, title: str, k: int = 4,
                    wires: tuple[str, ...] = ()) -> Path:
    """One panel per clustered wire (default: every hidden wire): |W| as (written, read) with the
    boundaries of k contiguous clusters of each side drawn."""
    wiring = model.wiring()
    chosen = clustered_wires(wiring, wires)
    cols = min(len(chosen), 4)
    rows = math.ceil(len(chosen) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.2 * rows), squeeze=False)
    for ax in axes.flat[len(chosen):]:
        ax.axis("off")
    for ax, wire in zip(axes.flat, chosen, strict=False):
        matrix = wire.matrix().float().cpu().numpy()
        ax.imshow(matrix, cmap="viridis", aspect="auto", interpolation="nearest")
        for labels, line in ((contiguous_labels(matrix.shape[0], min(k, matrix.shape[0])), ax.axhline),
                             (contiguous_labels(matrix.shape[1], min(k, matrix.shape[1])), ax.axvline)):
            for edge in torch.nonzero(labels[1:] != labels[:-1]).flatten().tolist():
                line(edge + 0.5, color="white", linewidth=0.6)
        ax.set_title(wire.name, fontsize=8)
        ax.set_xlabel(wire.reads, fontsize=7)
        ax.set_ylabel(wire.writes, fontsize=7)
        ax.tick_params(labelsize=6)
    fig.suptitle(f"{title}: |W| with {k} contiguous clusters", fontsize=9)
    fig.tight_layout()
    _save(fig, path)
    return path


def fourier_basis(p: int) -> Float[Tensor, "p p"]:
    """Rows: the constant, then cos(2 pi f x / p) and sin(2 pi f x / p) for f = 1 .. (p - 1) / 2, each of
    unit norm over x = 0 .. p - 1 (an orthonormal basis for odd p)."""
    x = torch.arange(p, dtype=torch.float64)
    rows = [torch.ones(p, dtype=torch.float64)]
    for f in range(1, (p - 1) // 2 + 1):
        rows += [torch.cos(2 * math.pi * f * x / p), torch.sin(2 * math.pi * f * x / p)]
    basis = torch.stack(rows[:p])
    return basis / basis.norm(dim=1, keepdim=True)


def fourier_norms(embedding: Float[Tensor, "p d"]) -> Float[Tensor, " p"]:
    """Norm of the embedding's component along each Fourier basis vector (the rows of ``fourier_basis``)."""
    basis = fourier_basis(embedding.shape[0]).to(embedding.device)
    return (basis @ embedding.detach().double()).norm(dim=1)


def fourier_embedding_figure(embedding: Float[Tensor, "p d"], path: Path, title: str) -> Path:
    """Bars of the embedding's norm per Fourier component (constant, then cos/sin of each frequency)."""
    norms = fourier_norms(embedding).cpu().numpy()
    p = len(norms)
    labels = ["const"] + [f"{kind} {f}" for f in range(1, (p - 1) // 2 + 1) for kind in ("cos", "sin")]
    fig, ax = plt.subplots(figsize=(12, 3))
    ax.bar(np.arange(p), norms, color=["tab:gray"] + ["tab:blue", "tab:orange"] * ((p - 1) // 2))
    ax.set_xticks(np.arange(0, p, 10), [labels[i] for i in range(0, p, 10)], rotation=60, fontsize=7)
    ax.set_ylabel("norm of W_E along the component")
    ax.set_title(f"{title}: token embedding in the Fourier basis", fontsize=9)
    fig.tight_layout()
    _save(fig, path)
    return path
