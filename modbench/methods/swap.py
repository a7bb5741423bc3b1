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

A group with ``block`` > 0 (a head's query/key or value/output dimensions) only swaps within its blocks.
Tied blocks (whole attention heads) are swapped after the groups: moving block a of every member group
to place b costs Ch[a, b] = sum over members and offsets d of C[a*block + d, b*block + d], so the same
greedy search runs on Ch with the same exact Delta.
"""

from __future__ import annotations

import torch
from jaxtyping import Float, Int
from torch import Tensor

from modbench.models.base import NeuronGroup, OptimizerState, TiedBlocks, Wiring, permute_blocks, permute_group


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


def greedy_swaps(
    costs: Float[Tensor, "n n"], positions: Int[Tensor, " k"], block: int = 0
) -> tuple[Int[Tensor, " n"], list]:
    """Visit ``positions`` in order; swap each with its best partner (in the same block of ``block``
    consecutive slots, if > 0) when that lowers the cost.

    Returns the permutation (new slot s holds old neuron perm[s]) and the applied (j, k, delta) swaps.
    """
    costs = costs.clone()
    n = costs.shape[0]
    perm = torch.arange(n, device=costs.device)
    swaps = []
    for j in positions.tolist():
        diagonal = costs.diagonal()
        delta = costs[j, :] + costs[:, j] - costs[j, j] - diagonal
        if block:
            outside = torch.arange(n, device=costs.device) // block != j // block
            delta = delta.masked_fill(outside, torch.inf)
        k = int(delta.argmin())
        if delta[k] < 0:
            order = torch.tensor([k, j], device=costs.device)
            costs[[j, k]] = costs[order]
            perm[[j, k]] = perm[order]
            swaps.append((j, k, float(delta[k])))
    return perm, swaps


def block_costs(wiring: Wiring, tied: TiedBlocks, slot_cost: list[Tensor]) -> Float[Tensor, "blocks blocks"]:
    """Ch[a, b]: the cost of block a's neurons (every member group) when the block sits at place b."""
    total = 0
    for name in tied.members:
        costs = placement_costs(wiring, wiring.groups[name], slot_cost)
        blocks = costs.shape[0] // tied.block
        total = total + costs.view(blocks, tied.block, blocks, tied.block).diagonal(dim1=1, dim2=3).sum(-1)
    return total


def relocate(
    wiring: Wiring, slot_cost: list[Tensor], top_k: int, optimizer: OptimizerState | None = None
) -> int:
    """One BIMT relocation over every permutable group, then every set of tied blocks; returns the number
    of swaps applied."""
    applied = 0
    for group in wiring.groups.values():
        if not group.permutable:
            continue
        k = min(top_k, group.size)
        positions = importance(wiring, group).argsort(descending=True, stable=True)[:k]
        perm, swaps = greedy_swaps(placement_costs(wiring, group, slot_cost), positions, group.block)
        if swaps:
            permute_group(group, perm, optimizer)
            applied += len(swaps)
    for tied in wiring.tied:
        members = [wiring.groups[name] for name in tied.members]
        score = sum(importance(wiring, group).view(-1, tied.block).sum(1) for group in members)
        positions = score.argsort(descending=True, stable=True)[: min(top_k, len(score))]
        perm, swaps = greedy_swaps(block_costs(wiring, tied, slot_cost), positions)
        if swaps:
            permute_blocks(wiring, tied, perm, optimizer)
            applied += len(swaps)
    return applied
