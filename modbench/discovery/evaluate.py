"""Score circuits: run the model with only the circuit's candidates kept and the others replaced by an
intervention, on many resamples at once.

*Faithfulness* (the task's metric, e.g. Nainani's logit difference ||L_circuit(x_clean) - L_model(x_clean)||_2)
is measured on the clean input of each pair; *circuit accuracy* on the clean and the corrupted input of each
pair (Nainani's "3/8 set"). Every resample's circuit is scored in the same batched forward passes. A circuit of
edges cuts each left-out edge alone (its sender's value replaced on that edge only; ``discovery.edges``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from jaxtyping import Float, Int
from torch import Tensor

from modbench.discovery.base import Circuits, keep_or_replace
from modbench.discovery.edges import edge_forward, flat_keep
from modbench.discovery.interventions import Replacement
from modbench.discovery.metric_fns import correct
from modbench.models.base import ModelAdapter
from modbench.tasks.base import ContrastivePairs, Task


@torch.no_grad()
def run_circuits(model: ModelAdapter, inputs: Tensor, keep: dict[str, Tensor], values: dict[str, Tensor]) -> Tensor:
    """Forward ``inputs`` with row r restricted to the circuit ``keep[site][r]`` (others take ``values``)."""
    sites = {site.name: site for site in model.sites()}
    hooks = [(name, keep_or_replace(mask, values[name], sites[name])) for name, mask in keep.items()]
    with model.hooks(fwd_hooks=hooks):
        return model(inputs)


@torch.no_grad()
def run_edge_circuits(model: ModelAdapter, inputs: Tensor, keep: dict[str, Tensor], values: dict[str, Tensor]
                      ) -> Tensor:
    """Forward ``inputs`` (circuits, rows, *input) with circuit c's edges ``keep[site][c]`` (flat) kept and the
    others cut (fed ``values``: global, or (circuits, rows, ...) per pair)."""
    graph = model.edge_graph()
    output, _ = edge_forward(model, graph, inputs, flat_keep(graph, keep), values)
    return output


@torch.no_grad()
def evaluate_circuits(
    model: ModelAdapter,
    task: Task,
    pairs: ContrastivePairs,
    index: Int[Tensor, "boots m"],
    circuits: Circuits,
    replacement: Replacement,
    metric: Callable[..., Tensor],
    max_rows: int = 1 << 16,
    edges: bool = False,
) -> dict[str, Float[Tensor, " boots"]]:
    """Per resample b: mean faithfulness and circuit accuracy over the pairs ``index[b]``, circuit ``b`` (of
    candidate nodes, or of edges with ``edges``: each edge cut alone, ``run_edge_circuits``)."""
    boots, m = index.shape
    full = model(pairs.clean)
    # An edge pass holds every group's value per row: fewer resamples per pass.
    per_chunk = max(1, max_rows // (2 * m) // (8 if edges else 1))
    faithfulness, accuracies = [], []
    for start in range(0, boots, per_chunk):
        rows = index[start : start + per_chunk]
        chunk = rows.reshape(-1)
        b = len(rows)
        masks = {name: mask[start : start + per_chunk] for name, mask in circuits.keep.items()}
        if edges:  # (b, 2m): circuit c's clean then corrupted inputs, one circuit per leading row
            both, keep = torch.cat([rows, rows], 1), masks
            inputs = torch.cat([pairs.clean[rows], pairs.corrupted[rows]], 1)
        else:  # (2bm): a circuit per row
            both = torch.cat([chunk, chunk])
            keep = {name: mask.repeat_interleave(m, 0).repeat(2, 1) for name, mask in masks.items()}
            inputs = torch.cat([pairs.clean[chunk], pairs.corrupted[chunk]])
        values = {name: value[both] if replacement.per_pair else value for name, value in replacement.values.items()}
        out = (run_edge_circuits if edges else run_circuits)(model, inputs, keep, values)
        if edges:  # as the node path lays them out: every clean row, then every corrupted row
            out = out.view(b, 2, m, *out.shape[2:]).transpose(0, 1).reshape(2 * b * m, *out.shape[2:])
        logits = task.readout(out)
        clean_rows = logits[: len(logits) // 2]
        labels = task.targets(torch.cat([pairs.clean_labels[chunk], pairs.corrupted_labels[chunk]]))
        faithfulness.append(metric(clean_rows, task.readout(full[chunk]), labels[: len(labels) // 2])
                            .view(b, -1).mean(1))
        accuracies.append(correct(logits, None, labels).view(2, b, -1).mean((0, 2)))
    return {"faithfulness": torch.cat(faithfulness), "circuit_accuracy": torch.cat(accuracies)}
