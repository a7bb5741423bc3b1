"""BIMT neuron swaps on any wiring, vectorised with the exact cost change (replaces the reference's loops).

For a permutable neuron group g, every wire writing g contributes |W| (n x n_in) with slot costs D, and
every wire reading g contributes |W| (n_out x n) with slot costs D'. Then

    C[u, s] = sum_wires-writing sum_p |W[u, p]| D[s, p] + sum_wires-reading sum_q |W[q, u]| D'[q, s]

is the cost of neuron u's weights when it sits in slot s, and swapping the neurons in slots j and k
changes the total connection cost by exactly  Delta_k = C[j,k] + C[k,j] - C[j,j] - C[k,k].
Bias costs do not depend on position. A residual stream read and written by many matrices is one group.

As in the authors' ``relocate``: groups go input -> output (inputs are never swapped); the top-k neurons
by incoming + outgoing |W| are chosen once per group, as *positions*; each position j, in descending
score order, swaps with argmin_k Delta_k when that lowers the cost (k = j gives 0).
"""

from __future__ import annotations

import torch
from jaxtyping import Float, Int
from torch import Tensor

from modbench.models.base import NeuronGroup, Wiring, permute_group


def placement_costs(wiring: Wiring, group: NeuronGroup, slot_cost: list[Tensor]) -> Float[Tensor, "n n"]:
    costs = torch.zeros(group.size, group.size, dtype=slot_cost[0].dtype, device=slot_cost[0].device)
    for wire, cost in zip(wiring.wires, slot_cost, strict=True):
        if wire.writes == group.name:
            costs += wire.matrix().to(cost.dtype) @ cost.T
        if wire.reads == group.name:
            costs += wire.matrix().to(cost.dtype).T @ cost
    return costs


def importance(wiring: Wiring, group: NeuronGroup) -> Float[Tensor, " n"]:
    writers, readers = wiring.touching(group.name)
    score = sum((w.matrix().sum(1) for w in writers), torch.zeros(group.size, device=group.coords.device))
    return score + sum((w.matrix().sum(0) for w in readers), torch.zeros_like(score))


def greedy_swaps(costs: Float[Tensor, "n n"], positions: Int[Tensor, " k"]) -> tuple[Int[Tensor, " n"], list]:
    """Visit ``positions`` in order; swap each with its best partner when that lowers the cost.

    Returns the permutation (new slot s holds old neuron perm[s]) and the applied (j, k, delta) swaps.
    """
    costs = costs.clone()
    n = costs.shape[0]
    perm = torch.arange(n, device=costs.device)
    swaps = []
    for j in positions.tolist():
        diagonal = costs.diagonal()
        delta = costs[j, :] + costs[:, j] - costs[j, j] - diagonal
        k = int(delta.argmin())
        if delta[k] < 0:
            order = torch.tensor([k, j], device=costs.device)
            costs[[j, k]] = costs[order]
            perm[[j, k]] = perm[order]
            swaps.append((j, k, float(delta[k])))
    return perm, swaps


def relocate(
    wiring: Wiring, slot_cost: list[Tensor], top_k: int, optimizer: torch.optim.Optimizer | None = None
) -> int:
    """One BIMT relocation over every permutable group; returns the number of swaps applied."""
    applied = 0
    for group in wiring.groups.values():
        if not group.permutable:
            continue
        k = min(top_k, group.size)
        positions = importance(wiring, group).argsort(descending=True, stable=True)[:k]
        perm, swaps = greedy_swaps(placement_costs(wiring, group, slot_cost), positions)
        if swaps:
            permute_group(group, perm, optimizer)
            applied += len(swaps)
    return applied
