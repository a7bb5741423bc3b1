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


def _edge_masks(model: ModelAdapter, circuit: Circuits) -> dict[str, np.ndarray] | None:
    """A circuit of edges laid on the wiring: per wire, the kept (out, in) edges (None: a circuit of nodes)."""
    sites = {site.name: site for site in model.edge_graph().sites} if hasattr(model, "edge_graph") else {}
    if not circuit.keep or not set(circuit.keep) <= set(sites):
        return None
    return {sites[name].wire: mask[0].view(sites[name].n_receivers, sites[name].n_senders).cpu().numpy()
            for name, mask in circuit.keep.items()}


def connectivity_graph(model: ModelAdapter, circuit: Circuits, path: Path, title: str) -> Path:
    """Every wiring group on its own row (x from the neurons' 2-D slots, flattened row-major), the strongest
    connections of every wire drawn between rows; circuit neurons orange, the rest faded. A circuit of edges:
    its kept edges drawn over the strongest ones, neurons touching one orange (a transformer's residual edge
    graph has no wiring rows: drawn by ``edge_circuit_graph``)."""
    edges = _edge_masks(model, circuit)
    if edges is not None and None in edges:
        return edge_circuit_graph(model, circuit, path, title)
    wiring = model.wiring()
    names = list(wiring.groups)
    kept = _node_masks(model, circuit) if edges is None else _touched(wiring, edges)
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
        if edges is not None:  # every kept edge is drawn, however weak
            flat = np.union1d(flat, np.flatnonzero(edges[wire.name]))
        outs, ins = np.unravel_index(flat, weight.shape)
        segments = np.stack([positions[wire.reads][ins], positions[wire.writes][outs]], axis=1)
        strength = weight[outs, ins] / scale
        inside = (kept[wire.reads][ins] & kept[wire.writes][outs]) if edges is None else edges[wire.name][outs, ins]
        colors = np.tile([[0.1, 0.3, 0.9, 1.0]], (len(outs), 1))
        colors[:, 3] = np.where(inside, 0.9, 0.15) * np.clip(strength * 3, 0.05, 1)
        ax.add_collection(LineCollection(segments, linewidths=2.5 * strength, colors=colors))
    for name in names:
        points, mask = positions[name], kept[name]
        size = 2 if len(points) > 200 else 14
        ax.scatter(points[~mask, 0], points[~mask, 1], s=size, c="lightgray", zorder=3)
        ax.scatter(points[mask, 0], points[mask, 1], s=size, c="orange", zorder=4, edgecolors="black",
                   linewidths=0.3)
    what = "circuit neurons orange" if edges is None else "circuit edges solid, their neurons orange"
    ax.set_title(title + f"\n(width and opacity ∝ |w|; {what}, other edges faded)")
    ax.set_yticks(range(len(names)), names)
    ax.set_xticks([])
    ax.autoscale()
    fig.tight_layout()
    _save(fig, path)
    return path


def _touched(wiring, edges: dict[str, np.ndarray]) -> dict[str, np.ndarray]:  # noqa: ANN001
    """Neurons at either end of a kept edge (groups of no edge site, e.g. the output ring, all of them)."""
    touched = {name: np.zeros(group.size, bool) for name, group in wiring.groups.items()}
    for wire in wiring.wires:
        mask = edges[wire.name]
        touched[wire.writes] |= mask.any(1)
        touched[wire.reads] |= mask.any(0)
    touched[wiring.wires[-1].writes][:] = True
    return touched


def edge_circuit_graph(model: ModelAdapter, circuit: Circuits, path: Path, title: str) -> Path:
    """A circuit of edges on the model's edge graph: one row per group (the input or embedding, each layer's
    heads, MLP blocks), the read-out on top; kept edges drawn, coloured by the slot they enter (q, k, v, ...)."""
    graph = model.edge_graph()
    rows = [*graph.groups, "output"]
    positions = {g: np.stack([np.linspace(0, 1, n + 2)[1:-1], np.full(n, float(i))], 1)
                 for i, (g, n) in enumerate([*graph.groups.items(), ("output", 1)])}
    colours = plt.get_cmap("tab10")
    slots = [slot.name for slot in graph.slots]
    fig, ax = plt.subplots(figsize=(8, 1.2 + 1.0 * len(rows)))
    for site in graph.sites:
        keep = circuit.keep[site.name][0].view(site.n_receivers, site.n_senders).cpu().numpy()
        node = graph.slot(site.slot).node
        for r, s in zip(*np.nonzero(keep), strict=True):
            start = positions[site.sender][s]
            end = positions["output" if node == "output" else node][r]
            offset = 0.04 * ("qkv".find(site.slot[-1]) if site.slot[-2:-1] == "." else 0)
            ax.annotate("", end + [offset, -0.08], start + [0, 0.08], arrowprops={
                "arrowstyle": "->", "color": colours(slots.index(site.slot) % 10), "lw": 1.2})
    for name, points in positions.items():
        ax.scatter(points[:, 0], points[:, 1], s=60, c="orange", edgecolors="black", zorder=3)
    ax.set_yticks(range(len(rows)), rows)
    ax.set_xticks([])
    ax.set_ylim(-0.5, len(rows) - 0.5)
    kept = sum(int(mask.sum()) for mask in circuit.keep.values())
    ax.set_title(f"{title}\n({kept} kept edges; colour = the slot they enter)")
    fig.tight_layout()
    _save(fig, path)
    return path


def _save(fig: plt.Figure, path: Path) -> None:
    """Render to memory, then write atomically (no half-written PNG)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120)
    plt.close(fig)
    png = _palette_png(buffer.getvalue())
    atomic_write(path, lambda handle: handle.write(png))


def _palette_png(png: bytes) -> bytes:
    """The figure with a 256-colour palette (median cut): nothing visible is lost on lines, markers and colour
    maps, and a dense circuit drawing shrinks ~2.5x (1.0 to 0.4 MB), which matters in a committed site."""
    from PIL import Image  # matplotlib's own dependency

    out = io.BytesIO()
    with Image.open(io.BytesIO(png)) as image:
        image.convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT).save(out, format="png", optimize=True)
    return out.getvalue()


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
