"""BIMT-style connectivity graph with the circuit highlighted, and Nainani's sparsity-vs-logit-difference
scatter (seed 003, Figure 3)."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.collections import LineCollection  # noqa: E402

from modbench.discovery.base import Circuits  # noqa: E402
from modbench.files import atomic_write  # noqa: E402
from modbench.models.base import ModelAdapter  # noqa: E402

MAX_EDGES_PER_LAYER = 3_000  # the strongest weights only; 78k input edges would be unreadable


def _node_masks(model: ModelAdapter, circuit: Circuits) -> dict[str, np.ndarray]:
    """Per wiring group, which neurons are in the circuit (groups that are no candidate site: all)."""
    wiring = model.wiring()
    kept = {name: np.ones(group.size, bool) for name, group in wiring.groups.items()}
    for site in model.sites():
        if site.group is not None and site.name in circuit.keep:
            mask = circuit.keep[site.name][0].cpu().numpy()
            kept[site.group] = np.repeat(mask, wiring.groups[site.group].size // site.size)
    return kept


def connectivity_graph(model: ModelAdapter, circuit: Circuits, path: Path, title: str) -> Path:
    """Every wiring group on its own row (x from the neurons' 2-D slots, flattened row-major), the strongest
    connections of every wire drawn between rows; circuit neurons orange, the rest faded."""
    wiring = model.wiring()
    names = list(wiring.groups)
    kept = _node_masks(model, circuit)
    positions = {}
    for row, name in enumerate(names):
        coords = wiring.groups[name].coords.cpu().numpy()
        order = np.lexsort((coords[:, 0], coords[:, 1]))
        x = np.empty(len(coords))
        x[order] = np.linspace(0, 1, len(coords))
        positions[name] = np.stack([x, np.full(len(coords), float(row))], axis=1)
    fig, ax = plt.subplots(figsize=(9, 1.5 + 1.2 * len(names)))
    for wire in wiring.wires:
        weight = wire.matrix().cpu().numpy()
        scale = weight.max() or 1.0
        flat = np.argsort(weight, axis=None)[::-1][:MAX_EDGES_PER_LAYER]
        outs, ins = np.unravel_index(flat, weight.shape)
        segments = np.stack([positions[wire.reads][ins], positions[wire.writes][outs]], axis=1)
        strength = weight[outs, ins] / scale
        inside = kept[wire.reads][ins] & kept[wire.writes][outs]
        colors = np.tile([[0.1, 0.3, 0.9, 1.0]], (len(outs), 1))
        colors[:, 3] = np.where(inside, 0.9, 0.15) * np.clip(strength * 3, 0.05, 1)
        ax.add_collection(LineCollection(segments, linewidths=2.5 * strength, colors=colors))
    for name in names:
        points, mask = positions[name], kept[name]
        size = 2 if len(points) > 200 else 14
        ax.scatter(points[~mask, 0], points[~mask, 1], s=size, c="lightgray", zorder=3)
        ax.scatter(points[mask, 0], points[mask, 1], s=size, c="orange", zorder=4, edgecolors="black",
                   linewidths=0.3)
    ax.set_title(title + "\n(width and opacity ∝ |w|; circuit neurons orange, other edges faded)")
    ax.set_yticks(range(len(names)), names)
    ax.set_xticks([])
    ax.autoscale()
    fig.tight_layout()
    _save(fig, path)
    return path


def _save(fig: plt.Figure, path: Path) -> None:
    """Render to memory, then write atomically (no half-written PNG)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120)
    plt.close(fig)
    atomic_write(path, lambda handle: handle.write(buffer.getvalue()))


def sparsity_scatter(table: pd.DataFrame, path: Path, title: str, metric: str = "logit_difference") -> Path:
    """Nainani Fig. 3: one point per method, bars = 95 % CI of the task's faithfulness ``metric``. Ours and the
    published rows sit in separate panels, since their definitions (K, pairs, sparsity) and so their scales
    differ."""
    from modbench.metrics import METRICS

    spec = METRICS.get(metric)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    for ax, source in zip(axes, ("ours", "published"), strict=True):
        rows = table[table["source"].str.startswith(source) & (table["status"] == "ok")]
        for _, row in rows.iterrows():
            x, y, err = row["sparsity_mean"], row[f"{metric}_mean"], row.get(f"{metric}_ci", 0)
            ax.errorbar(x, y, yerr=err, fmt="o", color="black", capsize=3, ecolor="gray")
            ax.annotate(row["method"], (x, y), textcoords="offset points", xytext=(5, 5), fontsize=8)
        ax.set_xlabel("circuit sparsity (higher is sparser)")
        ax.set_ylabel(f"{spec.label} ({'higher' if spec.higher_is_better else 'lower'} is better)")
        ax.set_title(f"{title}: {source}")
        ax.margins(0.15)
    fig.tight_layout()
    _save(fig, path)
    return path


def on_off_heatmaps(details: dict, path: Path, title: str) -> Path:
    """Golechha et al. Figure 7: class-wise accuracy with only cluster c kept (ON) and with it removed (OFF)."""
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8), gridspec_kw={"width_ratios": [4, 4, 2]})
    classes = details["classes"]
    for ax, key in zip(axes[:2], ("on_accuracy", "off_accuracy"), strict=True):
        table = np.array(details[key])
        image = ax.imshow(table, vmin=0, vmax=1, cmap="viridis", aspect="auto")
        ax.set_xticks(range(len(classes)), classes)
        ax.set_yticks(range(len(table)), [f"cluster {c}" for c in range(len(table))])
        ax.set_xlabel("class")
        ax.set_title(f"{key.split('_')[0].upper()}: class accuracy")
        fig.colorbar(image, ax=ax, fraction=0.04)
    needs = details["needs_clusters"]
    axes[2].bar(range(1, len(needs) + 1), needs, color="gray")
    axes[2].set_xlabel("clusters needed")
    axes[2].set_ylabel("share of correct samples")
    axes[2].set_title("fewest sufficient clusters")
    fig.suptitle(title)
    fig.tight_layout()
    _save(fig, path)
    return path


def ecs_bars(details: dict, path: Path, title: str) -> Path:
    """Effective circuit size per class (share of Linear weights each class needs)."""
    fig, ax = plt.subplots(figsize=(7, 3.5))
    values = details["ecs_per_class"]
    ax.bar(range(len(values)), values, color="steelblue")
    ax.set_xlabel("class")
    ax.set_ylabel("ECS (kept / all weights)")
    ax.set_title(title)
    fig.tight_layout()
    _save(fig, path)
    return path
