"""Model-level modularity measures recorded with every result, whatever the discoverer."""

from __future__ import annotations

import torch

from modbench.clustering import bsgc, clusterability_from_squares, contiguous_labels, squared_matrix
from modbench.methods.cluster import clustered_wires
from modbench.models.base import ModelAdapter

DEFAULT_K = 4  # Golechha et al. train and report with k = 4


@torch.no_grad()
def bsgc_clusterability(model: ModelAdapter, k: int = DEFAULT_K, seed: int = 0) -> dict[str, float]:
    """Per hidden-to-hidden wire: C of W^2 under BSGC clusters of |W| (rows and columns matched), as in
    Golechha et al. Figure 2 / Table 2 (random baseline 1/k)."""
    out = {}
    for wire in clustered_wires(model.wiring(), ()):
        try:
            rows, cols = bsgc(wire.matrix(), k, seed=seed)
        except ValueError:  # fewer live neurons than clusters (a tiny or collapsed layer): no value
            continue
        out[wire.name] = float(clusterability_from_squares(squared_matrix(wire).detach(), rows, cols))
    return out


@torch.no_grad()
def contiguous_clusterability(model: ModelAdapter, k: int = DEFAULT_K) -> dict[str, float]:
    """Per hidden wire: C of W^2 under the k contiguous clusters the ``cluster`` regime trains (aligned
    across the groups, as in training), for any model: 1 means block-diagonal in those blocks."""
    wiring = model.wiring()
    out = {}
    for wire in clustered_wires(wiring, ()):
        rows, cols = (wiring.groups[g].size for g in (wire.writes, wire.reads))
        if k <= min(rows, cols):
            labels = contiguous_labels(rows, k), contiguous_labels(cols, k)
            out[wire.name] = float(clusterability_from_squares(squared_matrix(wire).detach(), *labels))
    return out


def clusterability_table(model: ModelAdapter, task, data, train_cfg, ks: list[int],  # noqa: ANN001
                         gradient_batches: int) -> list[dict]:
    """Per hidden wire and k: C under BSGC clusters of |W| and of accumulated normalised gradients."""
    from modbench.clustering import gradient_similarity
    from modbench.tasks.base import task_loss
    from modbench.training.trainer import batches

    wires = clustered_wires(model.wiring(), ())
    device = next(model.parameters()).device
    grads: dict[str, list[torch.Tensor]] = {w.name: [] for w in wires}
    index = batches(len(data.x_train), train_cfg.batch_size, torch.Generator().manual_seed(train_cfg.seed))
    for _ in range(gradient_batches):
        rows = next(index)
        x, y = data.x_train[rows].to(device), data.y_train[rows].to(device)
        model.zero_grad(set_to_none=True)
        task_loss(task.readout(model(x)), task.targets(y), train_cfg.loss).backward()
        for wire in wires:
            grads[wire.name].append(wire.param.grad.detach().clone())
    model.zero_grad(set_to_none=True)
    out = []
    for wire in wires:
        squares = squared_matrix(wire).detach()
        similarity = gradient_similarity(grads[wire.name], wire)
        for k in ks:
            by_weight = bsgc(wire.matrix(), k)
            by_gradient = bsgc(similarity, k)
            out.append({"wire": wire.name, "k": k,
                        "weights": float(clusterability_from_squares(squares, *by_weight)),
                        "gradients": float(clusterability_from_squares(squares, *by_gradient))})
    return out
