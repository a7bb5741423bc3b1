"""BIMT neuron swaps, vectorised with the exact cost change (replaces the reference's Python loops).

For neuron layer i with incoming weights W_in (n x n_prev) and outgoing W_out (n_next x n), let
D_in, D_out be the per-unit slot costs of those matrices (``connection_cost.slot_costs``). Then

    C[u, s] = sum_p |W_in[u, p]| D_in[s, p] + sum_q |W_out[q, u]| D_out[q, s]

is the cost of neuron u's weights when it sits in slot s, and swapping the neurons in slots j and k
changes the total connection cost by exactly  Delta_k = C[j,k] + C[k,j] - C[j,j] - C[k,k].
Bias costs do not depend on position.

As in the authors' ``relocate``: layers go input -> output (inputs are never swapped); the top-k
neurons by incoming + outgoing |W| are chosen once per layer, as *positions*; each position j, in
descending score order, swaps with argmin_k Delta_k when that lowers the cost (k = j gives 0).
"""

from __future__ import annotations

import torch
from jaxtyping import Float, Int
from torch import Tensor

from modbench.models.base import ModularModel, NeuronLayer, permute_sites


def placement_costs(
    model: ModularModel, layer: NeuronLayer, slot_cost: list[Tensor]
) -> Float[Tensor, "n n"]:
    wiring = model.wiring()
    weight_in = wiring[layer.incoming].weight.detach().abs()
    costs = weight_in @ slot_cost[layer.incoming].T
    if layer.outgoing is not None:
        weight_out = wiring[layer.outgoing].weight.detach().abs()
        costs = costs + weight_out.T @ slot_cost[layer.outgoing]
    return costs


def importance(model: ModularModel, layer: NeuronLayer) -> Float[Tensor, " n"]:
    wiring = model.wiring()
    score = wiring[layer.incoming].weight.detach().abs().sum(1)
    if layer.outgoing is not None:
        score = score + wiring[layer.outgoing].weight.detach().abs().sum(0)
    return score


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
    model: ModularModel,
    slot_cost: list[Tensor],
    top_k: int,
    optimizer: torch.optim.Optimizer | None = None,
) -> int:
    """One BIMT relocation over every permutable layer; returns the number of swaps applied."""
    applied = 0
    for layer in model.neuron_layers():
        k = min(top_k, layer.size)
        positions = importance(model, layer).argsort(descending=True, stable=True)[:k]
        perm, swaps = greedy_swaps(placement_costs(model, layer, slot_cost), positions)
        if swaps:
            permute_sites(layer, perm, optimizer)
            applied += len(swaps)
    return applied
