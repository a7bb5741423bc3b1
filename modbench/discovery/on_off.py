"""ON/OFF cluster interventions (Golechha et al. 2025, section 5 and Appendix E/F; code ``pipeline.ipynb``).

The clusters of one weight matrix split its read group and its write group into k matched parts; cluster c
is those neurons of both groups. ON c keeps only cluster c (every other cluster's neurons zero-ablated at
their hook points), OFF c removes cluster c. With ReLU and no bias, zeroing rows U_c and columns V_c of the
matrix, as the authors do, is the same as zero-ablating those neurons. We run every subset of
clusters (2^k, the empty one included), which gives ON (singletons), OFF (all but one), and per sample the fewest
clusters whose joint ON answers correctly (samples the intact model gets wrong are left out, as the
authors filter them). Reported: class-wise accuracy per cluster (ON and OFF; for at most ``max_classes``
classes, the most frequent, e.g. next tokens), the share of samples needing 1, 2, ..., k clusters, and
the share still right with every cluster removed (those count as needing 1, as in the paper's figure, though
the clustered layers do not decide them).
"""

from __future__ import annotations

import itertools

import torch
from torch import Tensor

from modbench.clustering import bsgc, contiguous_labels
from modbench.data.dataset import TaskData
from modbench.discovery.catalog import OnOffConfig
from modbench.discovery.evaluate import run_circuits
from modbench.errors import UserError
from modbench.methods.cluster import clustered_wires
from modbench.models.base import ModelAdapter
from modbench.tasks.base import Task


def cluster_labels(model: ModelAdapter, config: OnOffConfig) -> tuple[str, dict[str, Tensor]]:
    """The clustered wire(s) and each neuron's cluster in the groups they touch. Contiguous clusters (what
    the ``cluster`` regime trains) label every group of every clustered wire (``config.wire``, or all hidden
    wires), aligned as in training: in a transformer cluster c is head c and MLP block c. BSGC clusters one
    wire (``config.wire``, or the last hidden wire): its read and write groups."""
    wiring = model.wiring()
    candidates = clustered_wires(wiring, (config.wire,) if config.wire else ())
    if not candidates:
        raise UserError("the model has no wire between two hidden groups to cluster")
    groups = wiring.groups
    if config.clusters == "contiguous":
        touched = dict.fromkeys(g for w in candidates for g in (w.writes, w.reads))
        if any(groups[g].size < config.k for g in touched):
            raise UserError(f"k={config.k} is larger than a clustered group")
        name = config.wire or f"{len(candidates)} hidden wires"
        return name, {g: contiguous_labels(groups[g].size, config.k) for g in touched}
    wire = candidates[-1]
    rows, cols = bsgc(wire.matrix(), config.k, seed=config.seed)
    return wire.name, {wire.writes: rows, wire.reads: cols}


class OnOff:
    def __init__(self, config: OnOffConfig) -> None:
        self.config = config

    @torch.no_grad()
    def analyse(self, model: ModelAdapter, task: Task, data: TaskData) -> dict:
        k = self.config.k
        wire, labels = cluster_labels(model, self.config)
        device = next(model.parameters()).device
        x, y = data.x_test[: self.config.max_images].to(device), data.y_test[: self.config.max_images].to(device)
        targets = task.targets(y)
        rows = getattr(task, "eval_batch_size", 10_000)  # inputs per forward: a pretrained model's windows are large

        def predictions(keep_of: dict[str, Tensor] | None) -> Tensor:
            out = []
            for chunk in x.split(rows):
                logits = model(chunk) if keep_of is None else run_circuits(
                    model, chunk, {name: mask.expand(len(chunk), -1) for name, mask in keep_of.items()}, zeros)
                out.append(task.readout(logits).argmax(-1))
            return torch.cat(out)

        # every subset, the empty one first (rows right without any cluster are not decided by these layers)
        subsets = [s for n in range(k + 1) for s in itertools.combinations(range(k), n)]
        member = torch.tensor([[c in s for c in range(k)] for s in subsets], device=device)  # (subsets, k)
        # Each candidate's cluster (a head covers several neurons of its group: the first one's label).
        cluster_of = {s.name: labels[s.group].to(device).view(s.size, -1)[:, 0] for s in model.sites()
                      if s.group in labels}
        zeros = {name: torch.zeros((), device=device) for name in cluster_of}
        full_correct = predictions(None) == targets
        correct = torch.empty(len(subsets), len(targets), dtype=torch.bool, device=device)  # read-out rows
        for index in range(len(subsets)):
            correct[index] = predictions({name: member[index][of] for name, of in cluster_of.items()}) == targets
        without = correct[0]
        size = member.sum(1).clamp(min=1)  # the paper's convention: right with no cluster counts as needing 1
        classes = torch.unique(targets)
        if len(classes) > self.config.max_classes:  # e.g. next tokens: tables for the most frequent classes only
            top = torch.bincount(targets)[classes].argsort(descending=True, stable=True)[: self.config.max_classes]
            classes = classes[top.sort().values]
        on = torch.stack([correct[subsets.index((c,))] for c in range(k)])
        off = torch.stack([correct[subsets.index(tuple(d for d in range(k) if d != c))] for c in range(k)])
        per_class = lambda table: [[float(row[targets == cls].float().mean()) for cls in classes] for row in table]  # noqa: E731
        sufficient = torch.where(correct, size[:, None], k + 1).min(0).values[full_correct]
        needs = [float((sufficient == n).float().mean()) for n in range(1, k + 1)]
        return {
            "wire": wire, "k": k, "classes": [int(c) for c in classes],
            "on_accuracy": per_class(on), "off_accuracy": per_class(off), "needs_clusters": needs,
            "summary": {"on_accuracy": float(on.float().mean()), "off_accuracy": float(off.float().mean()),
                        "needs_1_cluster": needs[0], "needs_all_clusters": needs[-1],
                        "right_without_clusters": float(without[full_correct].float().mean()),
                        "intact_accuracy": float(full_correct.float().mean())},
        }
