"""Forward passes over a model's edge graph (``modbench.models.edges``) with edges cut.

``edge_forward`` runs the stages in order; each slot's input is composed from its senders' values with the
edge masks (``keep``: per edge site, (G or 1, n_receivers, n_senders)) and the intervention's values for cut
edges. Two things make discovery cheap, both exact:

* **resuming**: a pass may start at any stage from the group values of an earlier pass (``state``): what lies
  before the stage is not recomputed;
* **one changed receiver**: with ``override`` (slot, r, rows), receiver r's input takes a different value in
  each row; the stage's output then differs from ``state`` at node r only, so the next stage's slots that read
  nothing else that changed are updated by r's term alone (a rank-1 change on a linear layer) instead of being
  recomputed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from modbench.models.base import ModelAdapter
from modbench.models.edges import OUTPUT, EdgeGraph, Slot

Keep = dict[str, Tensor]  # edge site -> (G or 1, n_receivers, n_senders), bool or float


@dataclass
class EdgeState:
    """A pass's values: every group's value and every slot's composed input, (G, m, ...)."""

    values: dict[str, Tensor]
    inputs: dict[str, Tensor]


@dataclass(frozen=True)
class Override:
    """Receiver ``r`` of slot ``slot`` takes ``rows`` (R, m, *receiver_shape) as its input: R alternatives."""

    slot: str
    r: int
    rows: Tensor


def _matched(keep: Tensor, diff: Tensor) -> tuple[Tensor, Tensor]:
    """One mask for every row stays one (combiners broadcast it); a value shared by every circuit is expanded."""
    if diff.shape[0] == 1 and keep.shape[0] > 1:
        diff = diff.expand(keep.shape[0], *diff.shape[1:])
    return keep, diff


def _leading(value: Tensor, group_ndim: int) -> Tensor:
    """An intervention's value, global (n, *shape) or per pair (m, n, *shape), as (G or 1, m or 1, n, *shape)."""
    while value.dim() < group_ndim + 2:
        value = value[None]
    return value


def compose(slot: Slot, values: dict[str, Tensor], keep: Keep | None, replacement: dict[str, Tensor] | None
            ) -> Tensor:
    """A slot's input: every edge kept (``keep`` None), or cut edges fed the replacement values."""
    combiner = slot.combiner
    senders = [values[site.sender] for site in slot.sites]
    if keep is None:
        return combiner.full(senders)
    assert replacement is not None
    fed = [_leading(replacement[site.sender], value.dim() - 2) for site, value in zip(slot.sites, senders,
                                                                                          strict=True)]
    total = combiner.full(fed)
    for index, (site, value, base) in enumerate(zip(slot.sites, senders, fed, strict=True)):
        mask = keep[site.name]
        if value.shape[0] > max(base.shape[0], mask.shape[0]):  # many rows, one replacement: use linearity
            total = total + combiner.delta(index, value, mask) - combiner.delta(index, base, mask)
        else:
            mask, diff = _matched(mask, value - base)
            total = total + combiner.delta(index, diff, mask)
    return total


def edge_forward(model: ModelAdapter, graph: EdgeGraph, inputs: Tensor | None, keep: Keep | None = None,
                 replacement: dict[str, Tensor] | None = None, *, start: int = 0, state: EdgeState | None = None,
                 override: Override | None = None, record: bool = False) -> tuple[Tensor, EdgeState | None]:
    """The model's output (G, m, *out) with the edges of ``keep`` cut (None: none cut), from stage ``start``
    on (earlier groups' values from ``state``). With ``override``, ``start`` must be the override slot's stage
    and ``state`` a recorded pass with the same ``keep``: receiver ``override.r`` takes each row of
    ``override.rows``, everything else is the state's until it changes. With ``record``, also every group
    value, slot input and the output of this pass (for resuming later)."""
    values = dict(state.values) if state is not None else {}
    if inputs is not None:
        values.update(model.edge_inputs(inputs))
    inputs_seen: dict[str, Tensor] = {}
    changes: list[Changed] | None = None  # all that differs from ``state`` (after an override), while known
    if override is not None:
        assert state is not None and override.slot in {slot.name for slot in graph.stages[start].slots}
        changes = [Changed.of_override(state, override)]
    output = None
    for index in range(start, len(graph.stages)):
        stage = graph.stages[index]
        if changes is not None:
            assert state is not None and override is not None
            outputs, change = _changed_stage(model, graph, index, state, changes, keep, len(override.rows))
            changes = None if change is None else [*changes, change]
        else:
            composed = {slot.name: compose(slot, values, keep, replacement) for slot in stage.slots}
            if record:
                inputs_seen.update(composed)
            outputs = model.edge_stage(index, composed)
        output = outputs.pop(OUTPUT, output)
        values.update(outputs)
    assert output is not None, "the last stage must produce the model's output"
    return output, EdgeState(values | {OUTPUT: output}, inputs_seen) if record else None


@dataclass(frozen=True)
class Changed:
    """After an override, ``nodes`` of ``group`` differ from the state by ``delta`` (R, m, |nodes|, *shape).
    The override itself is a change of its slot's receiver input (``slot`` set)."""

    group: str
    nodes: Tensor
    delta: Tensor
    slot: str = ""

    @property
    def silent(self) -> bool:
        return len(self.nodes) == 0

    @staticmethod
    def of_override(state: EdgeState, override: Override) -> Changed:
        nodes = torch.tensor([override.r], device=override.rows.device)
        delta = override.rows - state.inputs[override.slot][:, :, override.r]
        return Changed(override.slot, nodes, delta[:, :, None], slot=override.slot)


def _moved(slot: Slot, state: EdgeState, changes: list[Changed], keep: Keep | None) -> tuple[Tensor, Tensor] | None:
    """(receivers of ``slot`` whose input moved, their new inputs (R, m, |receivers|, *shape)), or None: every
    change reaches them through kept edges only (a receiver keeping no edge from a changed node does not move)."""
    parts: list[tuple[Tensor, Tensor]] = []
    for change in changes:
        if change.silent:
            continue
        if change.slot:
            if change.slot == slot.name:
                parts.append((change.nodes, change.delta))
            continue
        for index, site in enumerate(slot.sites):
            if site.sender != change.group:
                continue
            columns = None if keep is None else keep[site.name][0][:, change.nodes]
            receivers = (torch.arange(slot.n_receivers, device=change.delta.device) if columns is None
                         else torch.nonzero(columns.any(1)).flatten())
            if len(receivers):
                parts.append((receivers, slot.combiner.sender_terms(index, change.delta, change.nodes, receivers,
                                                                    None if columns is None else columns[receivers])))
    if not parts:
        return None
    receivers = torch.unique(torch.cat([r for r, _ in parts]))
    total = state.inputs[slot.name][:, :, receivers]
    for part, term in parts:
        index = torch.searchsorted(receivers, part)
        total = total + (term if len(part) == len(receivers) else
                         torch.zeros_like(total.expand(len(term), *total.shape[1:])).index_add(2, index, term))
    return receivers, total


def _changed_stage(model: ModelAdapter, graph: EdgeGraph, index: int, state: EdgeState, changes: list[Changed],
                   keep: Keep | None, count: int) -> tuple[dict[str, Tensor], Changed | None]:
    """A stage whose inputs differ from the state's only through ``changes``. A ``per_node`` stage computes
    only the nodes whose inputs moved (their group materialised only if a stage after the next reads it);
    another stage computes every node, and the changes are then no longer tracked (None), except the override's
    own stage: its other nodes' inputs did not move."""
    stage = graph.stages[index]
    moved = {slot.name: found for slot in stage.slots if (found := _moved(slot, state, changes, keep)) is not None}
    group = stage.outputs[0] if len(stage.outputs) == 1 else ""
    if not moved:  # no input of this stage moved (later stages may still read earlier changes directly)
        if not stage.outputs:  # the read-out: the state's output, for every row
            return {OUTPUT: state.values[OUTPUT].expand(count, *state.values[OUTPUT].shape[1:])}, None
        return {}, Changed(group, torch.zeros(0, dtype=torch.long), state.inputs[stage.slots[0].name][:, :, :0])
    if stage.per_node and group:
        nodes = torch.unique(torch.cat([receivers for receivers, _ in moved.values()]))
        composed = {}
        for slot in stage.slots:
            base = state.inputs[slot.name][:, :, nodes]
            composed[slot.name] = base.expand(count, *base.shape[1:])
            if slot.name in moved:
                receivers, value = moved[slot.name]
                composed[slot.name] = composed[slot.name].clone()
                composed[slot.name][:, :, torch.searchsorted(nodes, receivers)] = value
        [(_, value)] = model.edge_stage(index, composed).items()
        later = {site.sender for after in graph.stages[index + 2 :] for slot in after.slots for site in slot.sites}
        outputs = {}
        if group in later:  # a later stage reads the whole group: materialise it
            full = state.values[group].expand(count, *state.values[group].shape[1:]).clone()
            full[:, :, nodes] = value
            outputs[group] = full
        return outputs, Changed(group, nodes, value - state.values[group][:, :, nodes])
    composed = {}
    for slot in stage.slots:
        composed[slot.name] = state.inputs[slot.name].expand(count, *state.inputs[slot.name].shape[1:])
        if slot.name in moved:
            receivers, value = moved[slot.name]
            composed[slot.name] = composed[slot.name].clone()
            composed[slot.name][:, :, receivers] = value
    outputs = model.edge_stage(index, composed)
    own = [change for change in changes if change.slot and change.slot in moved]
    if group and own:  # the override's stage (a layer's heads): only the overridden node's inputs moved
        nodes = own[0].nodes
        return outputs, Changed(group, nodes, outputs[group][:, :, nodes] - state.values[group][:, :, nodes])
    return outputs, None


def flat_keep(graph: EdgeGraph, keep: dict[str, Bool[Tensor, "circuits candidates"]]) -> Keep:
    """Circuits' flat edge masks (candidate = r * n_senders + s) as (circuits, n_receivers, n_senders)."""
    sites = {site.name: site for site in graph.sites}
    return {name: mask.view(mask.shape[0], sites[name].n_receivers, sites[name].n_senders)
            for name, mask in keep.items()}


@torch.no_grad()
def sender_values(model: ModelAdapter, inputs: Tensor) -> dict[str, Float[Tensor, "n senders ..."]]:
    """Every group's value on ``inputs`` (n, *input) in the full model: what interventions average."""
    graph = model.edge_graph()
    _, state = edge_forward(model, graph, inputs[None], record=True)
    assert state is not None
    return {group: value[0] for group, value in state.values.items()}
