"""Edge attribution (EAP, EAP-IG) and exact edge patching: a score for every edge of the model's edge graph.

The score of an edge is the rise of the circuit loss (``acdc.circuit_loss``) when that edge is cut from the
full model, its sender's value replaced on that edge by the intervention's (``edge_catalog``):

* ``edge_patching`` measures it exactly: one row per edge, the forward pass resumed at the edge's receiver with
  only that receiver's input changed (``edges.edge_forward``), rows batched; an edge whose term is zero on
  every pair scores exactly 0 without a pass.
* ``eap`` and ``eap_ig`` approximate it from gradients. Every edge gets a mask k in [0, 1] (1 kept, 0 cut; a
  slot's input is linear in k, ``models.edges``), so dL/dk_e for all edges comes from one backward pass. EAP
  (Syed et al. 2023) linearises at the circuit with every edge cut, score_e = -dL/dk_e at k = 0 (at k = 1, the
  full model, distance metrics such as the logit difference or the KL divergence have zero gradient).
  EAP-IG (Hanna et al. 2024) integrates: score_e = -mean over the midpoints a of ``steps`` equal parts of
  [0, 1] of dL/dk_e at k = a (every mask at once). The scores then add up to about L(all cut) - L(full)
  (completeness). Hanna et al. interpolate the model's *inputs* between corrupted and clean; this is the
  edge-mask path (auto-circuit's integrated edge gradients), which works with any intervention.

Where the first-order scores fail: a path that is dead at the linearisation point (a ReLU off when every edge
is cut) has zero gradient there; EAP then misses it (the planted contract circuit is such a path, a strict
xfail in ``tests/test_edges.py``), EAP-IG sees it wherever the path lives along the integration path.
"""

from __future__ import annotations

import torch
from torch import Tensor

from modbench.discovery.acdc import circuit_loss, full_keep
from modbench.discovery.base import CandidateScores
from modbench.discovery.edges import Override, _leading, edge_forward
from modbench.discovery.interventions import Replacement
from modbench.models.base import ModelAdapter
from modbench.tasks.base import ContrastivePairs, Task


class EdgeAttribution:
    candidates = "edges"

    def __init__(self, config) -> None:  # noqa: ANN001 (EAPConfig or EAPIGConfig)
        self.config = config

    def alphas(self) -> list[float]:
        steps = getattr(self.config, "steps", None)
        return [0.0] if steps is None else [(k + 0.5) / steps for k in range(steps)]

    def score(self, model: ModelAdapter, task: Task, pairs: ContrastivePairs,
              replacement: Replacement | None = None) -> CandidateScores:
        if replacement is None:
            raise ValueError("edge attribution needs the intervention's values for cut edges")
        graph = model.edge_graph()
        dtype = next(model.parameters()).dtype
        device = pairs.clean.device
        total = {site.name: torch.zeros(site.n_receivers, site.n_senders, dtype=dtype, device=device)
                 for site in graph.sites}
        passes = 0
        n = len(pairs)
        for start in range(0, n, self.config.max_rows):
            rows = slice(start, start + self.config.max_rows)
            chunk = pairs.select(torch.arange(n, device=device)[rows])
            fed = {k: v[rows] if replacement.per_pair else v for k, v in replacement.values.items()}
            with torch.no_grad():
                loss = circuit_loss(task, self.config.metric, model(chunk.clean), chunk.clean_labels)
            passes += 1
            for alpha in self.alphas():
                keep = {site.name: torch.full((1, site.n_receivers, site.n_senders), alpha, dtype=dtype,
                                              device=device, requires_grad=True) for site in graph.sites}
                with torch.enable_grad():
                    output, _ = edge_forward(model, graph, chunk.clean[None], keep, fed)
                    value = loss(output)[0] * (len(chunk) / n)  # the mean over all pairs, chunk by chunk
                    grads = torch.autograd.grad(value, list(keep.values()), allow_unused=True)
                for site, grad in zip(graph.sites, grads, strict=True):
                    if grad is not None:
                        total[site.name] -= grad[0].detach()
                passes += 1
        steps = len(self.alphas())
        scores = {name: (value / steps).reshape(1, -1) for name, value in total.items()}
        chunks = -(-n // self.config.max_rows)
        return CandidateScores(scores, lower_is_better=False,
                               costs={"forward_passes": float(passes), "backward_passes": float(steps * chunks)})


class EdgePatching:
    candidates = "edges"

    def __init__(self, config) -> None:  # noqa: ANN001 (EdgePatchingConfig)
        self.config = config

    @torch.no_grad()
    def score(self, model: ModelAdapter, task: Task, pairs: ContrastivePairs,
              replacement: Replacement | None = None) -> CandidateScores:
        if replacement is None:
            raise ValueError("edge patching needs the intervention's values for cut edges")
        values = replacement.values
        graph = model.edge_graph()
        keep = full_keep(graph, pairs.clean.device)
        output, state = edge_forward(model, graph, pairs.clean[None], keep, values, record=True)
        assert state is not None
        loss = circuit_loss(task, self.config.metric, model(pairs.clean), pairs.clean_labels)
        base = loss(output)[0]
        cap = max(1, self.config.max_rows // len(pairs))
        scores, passes = {}, 2
        for slot in graph.slots:
            stage = graph.stage_of(slot.name)
            for site in slot.sites:
                scores[site.name] = torch.zeros(site.n_receivers, site.n_senders, dtype=base.dtype,
                                                device=base.device)
            for r in range(slot.n_receivers):
                value = state.inputs[slot.name][:, :, r]
                for index, site in enumerate(slot.sites):
                    sender = state.values[site.sender]
                    terms = slot.combiner.receiver_terms(
                        index, sender - _leading(values[site.sender], sender.dim() - 2), r)[:, 0]
                    live = torch.nonzero(terms.flatten(1).ne(0).any(1)).flatten()  # others: exactly 0
                    for start in range(0, len(live), cap):
                        chosen = live[start : start + cap]
                        out, _ = edge_forward(model, graph, None, keep, values, start=stage, state=state,
                                              override=Override(slot.name, r, value - terms[chosen]))
                        scores[site.name][r, chosen] = loss(out) - base
                        passes += 1
        return CandidateScores({name: value.reshape(1, -1) for name, value in scores.items()}, lower_is_better=False,
                               costs={"forward_passes": float(passes)})
