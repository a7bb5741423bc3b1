"""ACDC (Conmy et al. 2023): recursive pruning of edges, from the output back.

The algorithm (``acdc_sequential`` is it, plainly, one forward pass per edge test): visit the receivers in
reverse forward order (stages, then slots, then receivers, each from last to first); a receiver whose node no
longer reaches the output (no kept outgoing edge) loses all its incoming edges untested; otherwise each
incoming edge in turn (latest sender group first, senders from last to first) is cut, the circuit's loss
measured on the clean inputs, and the cut kept when the loss rose by less than tau over the current loss
(which then becomes the current loss). Loss = the task's metric between the circuit's and the model's outputs
(or ``metric``), negated when higher is better; cut edges carry the intervention's values (``--ablation``:
mean, zero, or the pair's corrupted value as Conmy et al.).

This implementation makes exactly those decisions, faster:

* one receiver at a time, every test only changes that receiver's input: a test is one *row*, the forward
  pass resumes at the receiver's stage with the rest of the circuit as it stands, and the next stage is
  updated by the receiver's term alone (``edges.edge_forward``'s override);
* rows are evaluated in batches along a *predicted* decision path (edge k tested in the state the predicted
  decisions before it leave), then checked in order against tau: every row up to the first wrong
  prediction is exactly the sequential test, the rest is recomputed in the next batch, predicted from this
  batch's measurements. Batches grow while predictions hold and shrink when they fail;
* an edge whose term is exactly zero on every pair (its sender's value equals its replacement there) leaves
  the loss unchanged: cut without a forward pass (the sequential algorithm spends one and cuts it for any
  tau > 0).

Reported per run: ``edge_tests`` (edges the sequential algorithm tests, one forward pass each: it depends on the
weights, since unreachable receivers are skipped) and ``forward_passes`` (batched passes run here).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from torch import Tensor

from modbench.discovery.base import CandidateScores
from modbench.discovery.edges import EdgeState, Keep, Override, _leading, edge_forward
from modbench.discovery.interventions import Replacement
from modbench.metrics import METRICS
from modbench.models.base import ModelAdapter
from modbench.models.edges import OUTPUT, EdgeGraph, EdgeSite, Slot
from modbench.tasks.base import ContrastivePairs, Task

Loss = Callable[[Tensor], Tensor]  # model output (G, m, *out) -> per-row loss (G,)


def circuit_loss(task: Task, metric: str, clean_output: Tensor, clean_labels: Tensor) -> Loss:
    """Mean over pairs of the metric between a circuit's read-out and the model's, lower = more faithful."""
    spec = METRICS.get(metric or task.config.metric)
    fn, sign = spec.function(), -1.0 if spec.higher_is_better else 1.0
    reference, labels = task.readout(clean_output), task.targets(clean_labels)

    def loss(output: Tensor) -> Tensor:
        rows = output.shape[0]
        logits = task.readout(output.flatten(0, 1)).view(rows, len(reference), -1)
        return sign * fn(logits, reference[None], labels[None]).mean(1)

    return loss


def full_keep(graph: EdgeGraph, device: torch.device) -> Keep:
    return {site.name: torch.ones(1, site.n_receivers, site.n_senders, dtype=torch.bool, device=device)
            for site in graph.sites}


def receivers(graph: EdgeGraph) -> Iterator[tuple[Slot, int]]:
    """Every receiver, in reverse forward order (the order ACDC visits them)."""
    for stage in reversed(graph.stages):
        for slot in reversed(stage.slots):
            for r in reversed(range(slot.n_receivers)):
                yield slot, r


def incoming(slot: Slot) -> Iterator[tuple[int, EdgeSite, int]]:
    """(site index, site, sender) of every edge into a receiver of ``slot``, in the order ACDC tests them."""
    for index in reversed(range(len(slot.sites))):
        for s in reversed(range(slot.sites[index].n_senders)):
            yield index, slot.sites[index], s


def reaches_output(graph: EdgeGraph, keep: Keep, node: str, r: int) -> bool:
    """Does node ``r`` of group ``node`` still send along a kept edge (or is it the output)?"""
    return node == OUTPUT or any(bool(keep[site.name][0, :, r].any()) for site in graph.sites if site.sender == node)


def cut_all(slot: Slot, keep: Keep, r: int) -> None:
    for site in slot.sites:
        keep[site.name][0, r] = False


def decisions(graph: EdgeGraph, keep: Keep) -> dict[str, Tensor]:
    """ACDC's scores: 1 for a kept edge, 0 for a cut one, flat (1, n_receivers * n_senders) per edge site."""
    return {site.name: keep[site.name].reshape(1, -1).float() for site in graph.sites}


class ACDC:
    candidates = "edges"

    def __init__(self, config) -> None:  # noqa: ANN001 (ACDCConfig; catalog imports no torch)
        self.config = config

    @torch.no_grad()
    def score(self, model: ModelAdapter, task: Task, pairs: ContrastivePairs,
              replacement: Replacement | None = None) -> CandidateScores:
        if replacement is None:
            raise ValueError("acdc needs the intervention's values for cut edges")
        graph = model.edge_graph()
        keep, costs = acdc_fast(model, graph, task, pairs, replacement.values, self.config.threshold,
                                self.config.metric, self.config.max_rows)
        return CandidateScores(decisions(graph, keep), lower_is_better=False, costs=costs)


@torch.no_grad()
def acdc_sequential(model: ModelAdapter, graph: EdgeGraph, task: Task, pairs: ContrastivePairs,
                    replacement: dict[str, Tensor], threshold: float, metric: str = "") -> tuple[Keep, int]:
    """The plain algorithm, the reference :func:`acdc_fast` is tested against: one whole forward pass of the
    circuit per edge test. Returns the circuit and the number of edge tests (= forward passes after the first)."""
    keep = full_keep(graph, pairs.clean.device)
    loss = circuit_loss(task, metric, model(pairs.clean), pairs.clean_labels)

    def measure() -> float:
        return float(loss(edge_forward(model, graph, pairs.clean[None], keep, replacement)[0])[0])

    current, tests = measure(), 0
    for slot, r in receivers(graph):
        if not reaches_output(graph, keep, slot.node, r):
            cut_all(slot, keep, r)
            continue
        for _, site, s in incoming(slot):
            current = try_cut(keep, site.name, r, s, measure, current, threshold)
            tests += 1
    return keep, tests


def try_cut(keep: Keep, site: str, r: int, s: int, measure: Callable[[], float], current: float,
            threshold: float) -> float:
    """ACDC's one edge test: cut edge (r, s) of ``site`` and keep the cut when the loss (``measure()``) rose by
    less than tau over ``current``; returns the loss of the circuit as it is left."""
    keep[site][0, r, s] = False
    candidate = measure()
    if candidate - current < threshold:
        return candidate
    keep[site][0, r, s] = True
    return current


class _Receiver:
    """One receiver's tests: its current input, the terms of its untested edges and the running loss."""

    def __init__(self, value: Tensor, edges: list[tuple[EdgeSite, int, Tensor]], loss: float) -> None:
        self.value, self.edges, self.loss = value, edges, loss
        self.cut: list[bool] = []
        self.predicted = [True] * len(edges)  # most edges are cut: predict that until measured otherwise


@torch.no_grad()
def acdc_fast(model: ModelAdapter, graph: EdgeGraph, task: Task, pairs: ContrastivePairs,
              replacement: dict[str, Tensor], threshold: float, metric: str, max_rows: int
              ) -> tuple[Keep, dict[str, float]]:
    """ACDC's circuit (``keep``) and its costs: the decisions of :func:`acdc_sequential`, batched."""
    device = pairs.clean.device
    keep = full_keep(graph, device)
    output, state = edge_forward(model, graph, pairs.clean[None], keep, replacement, record=True)
    assert state is not None
    loss = circuit_loss(task, metric, model(pairs.clean), pairs.clean_labels)
    current = float(loss(output)[0])
    passes, tests = 1, 0
    cap = max(1, max_rows // len(pairs))
    for slot, r in receivers(graph):
        if not reaches_output(graph, keep, slot.node, r):
            cut_all(slot, keep, r)
            continue
        stage = graph.stage_of(slot.name)
        edges, terms, live = [], {}, {}
        for index, site, s in incoming(slot):
            tests += 1
            if index not in terms:  # every sender's term into receiver r: (n_senders, 1, m, *shape)
                value = state.values[site.sender]
                terms[index] = slot.combiner.receiver_terms(
                    index, value - _leading(replacement[site.sender], value.dim() - 2), r)
                live[index] = terms[index].flatten(1).ne(0).any(1).tolist()
            if live[index][s]:
                edges.append((site, s, terms[index][s]))
            else:
                keep[site.name][0, r, s] = False  # no effect on any pair: the loss cannot move
        if not edges:
            continue
        receiver = _Receiver(state.inputs[slot.name][:, :, r], edges, current)

        def evaluate(rows: Tensor) -> Tensor:
            out, _ = edge_forward(model, graph, None, keep, replacement, start=stage, state=state,
                                  override=Override(slot.name, r, rows))
            return loss(out)

        passes += _test_edges(receiver, evaluate, threshold, cap)
        for (site, s, _), cut in zip(edges, receiver.cut, strict=True):
            keep[site.name][0, r, s] = not cut
        current = receiver.loss
        if any(receiver.cut):  # the circuit changed: refresh what later tests resume from
            _, fresh = edge_forward(model, graph, None, keep, replacement, start=stage, state=state, record=True)
            assert fresh is not None
            state = EdgeState(fresh.values, {**state.inputs, **fresh.inputs})
            passes += 1
    return keep, {"forward_passes": float(passes), "edge_tests": float(tests)}


def _test_edges(receiver: _Receiver, evaluate: Callable[[Tensor], Tensor], threshold: float, cap: int) -> int:
    """Decide every edge of ``receiver`` as the sequential algorithm does; returns the batched passes run."""
    passes, window, done, n = 0, min(16, cap), 0, len(receiver.edges)
    while done < n:
        width = min(window, n - done)
        terms = torch.cat([edge[2] for edge in receiver.edges[done : done + width]])  # (w, m, *shape)
        predicted = receiver.predicted[done : done + width]
        weights = torch.tensor(predicted, dtype=terms.dtype, device=terms.device).view(-1, *[1] * (terms.dim() - 1))
        before = torch.cumsum(terms * weights, 0) - terms * weights  # predicted cuts before each edge
        rows = receiver.value - (before + terms)  # row k: edge k cut in the state those predictions leave
        losses = evaluate(rows).tolist()
        passes += 1
        chain, base = [], receiver.loss  # each row's rise over its predicted state: next round's predictions
        for k in range(width):
            chain.append(losses[k] - base)
            base = losses[k] if predicted[k] else base
        wrong = None
        for k in range(width):  # the sequential decisions, exact until the first wrong prediction
            cut = losses[k] - receiver.loss < threshold
            receiver.cut.append(cut)
            if cut:
                receiver.value, receiver.loss = rows[k : k + 1], losses[k]
            if cut != predicted[k]:
                wrong = k
                break
        if wrong is None:
            done += width
            window = min(cap, 2 * window)
            continue
        for j in range(wrong + 1, width):
            receiver.predicted[done + j] = chain[j] < threshold
        done += wrong + 1
        window = max(1, min(cap, 2 * (wrong + 1)))
    return passes
