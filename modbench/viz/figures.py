"""BIMT-style connectivity graph with the circuit highlighted, and Nainani's sparsity-vs-logit-difference
scatter (seed 003, Figure 3)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.collections import LineCollection  # noqa: E402
from torch import nn  # noqa: E402

from modbench.discovery.circuit import Circuits  # noqa: E402

MAX_EDGES_PER_LAYER = 3_000  # the strongest weights only; 78k input edges would be unreadable


def _positions(model: nn.Module) -> list[np.ndarray]:
    """x from the slot's 2-D coordinates (row-major, flattened to a line), y = layer index."""
    positions = []
    for index, width in enumerate(model.cfg.widths):
        coords = model.coords(index).cpu().numpy()
        order = np.lexsort((coords[:, 0], coords[:, 1]))
        x = np.empty(width)
        x[order] = np.linspace(0, 1, width)
        positions.append(np.stack([x, np.full(width, float(index))], axis=1))
    return positions


def connectivity_graph(model: nn.Module, circuit: Circuits, path: Path, title: str) -> Path:
    positions = _positions(model)
    hidden = [circuit.keep[name][0].cpu().numpy() for name in model.hidden_hook_names("post")]
    kept = [np.ones(model.cfg.widths[0], bool), *hidden, np.ones(model.cfg.widths[-1], bool)]
    fig, ax = plt.subplots(figsize=(9, 6))
    for layer, wired in enumerate(model.wiring()):
        weight = wired.weight.detach().cpu().numpy()
        scale = np.abs(weight).max() or 1.0
        flat = np.argsort(np.abs(weight), axis=None)[::-1][:MAX_EDGES_PER_LAYER]
        outs, ins = np.unravel_index(flat, weight.shape)
        segments = np.stack([positions[layer][ins], positions[layer + 1][outs]], axis=1)
        strength = np.abs(weight[outs, ins]) / scale
        in_circuit = kept[layer][ins] & kept[layer + 1][outs]
        colors = np.where(weight[outs, ins][:, None] > 0, [[0.1, 0.3, 0.9, 1.0]], [[0.9, 0.1, 0.1, 1.0]])
        colors[:, 3] = np.where(in_circuit, 0.9, 0.15) * np.clip(strength * 3, 0.05, 1)
        ax.add_collection(LineCollection(segments, linewidths=2.5 * strength, colors=colors))
    for layer, points in enumerate(positions):
        size = 2 if layer == 0 else 14
        ax.scatter(points[~kept[layer], 0], points[~kept[layer], 1], s=size, c="lightgray", zorder=3)
        ax.scatter(points[kept[layer], 0], points[kept[layer], 1], s=size, c="orange" if 0 < layer else "gray",
                   zorder=4, edgecolors="black" if 0 < layer < len(positions) - 1 else "none", linewidths=0.5)
    ax.set_title(title + "\n(blue +, red -, width ∝ |w|; circuit neurons orange, other edges faded)")
    ax.set_yticks(range(len(positions)), ["input", *[f"hidden {i}" for i in range(len(hidden))], "output"])
    ax.set_xticks([])
    ax.autoscale()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def sparsity_scatter(table: pd.DataFrame, path: Path, title: str) -> Path:
    """Nainani Fig. 3: one point per method, bars = 95 % CI of the logit difference. Ours and the published
    rows sit in separate panels, since their definitions (K, pairs, sparsity) and so their scales differ."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    for ax, source in zip(axes, ("ours", "published"), strict=True):
        rows = table[table["source"].str.startswith(source)]
        for _, row in rows.iterrows():
            x, y, err = row["sparsity_mean"], row["logit_difference_mean"], row.get("logit_difference_ci", 0)
            ax.errorbar(x, y, yerr=err, fmt="o", color="black", capsize=3, ecolor="gray")
            ax.annotate(row["method"], (x, y), textcoords="offset points", xytext=(5, 5), fontsize=8)
        ax.set_xlabel("circuit sparsity (higher is sparser)")
        ax.set_ylabel("logit difference (lower is better)")
        ax.set_title(f"{title}: {source}")
        ax.margins(0.15)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
