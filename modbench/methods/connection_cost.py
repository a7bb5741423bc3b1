"""BIMT connection cost, as the authors' MNIST code computes it (``get_cc`` in ``mnist_3.5.ipynb``), on any
wiring (:class:`modbench.models.base.Wiring`):

    cc = sum_wires mean_entries |W| (A dist + y*) + sum_wires mean_o |b_o| y*

Means are per weight matrix (the paper writes sums); dist is the L1 distance between the coordinates of the
written and the read neuron (constant over a conv kernel). With ``penalize_last=False`` the read-out pays
y*|W| only. Each wire's (A dist + y*) / numel(W) is a fixed matrix, since neurons move between fixed slots,
so the whole cost is a weighted L1 norm sum_t sum |p_t| c_t over weights and biases. Its gradient,
lambda sign(p) c, is added to the gradients directly (two ``_foreach`` ops) instead of through autograd.
"""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor

from modbench.models.base import Wiring
from modbench.models.geometry import l1_distance


def slot_costs(
    wiring: Wiring, weight_factor: float, layer_separation: float, penalize_last: bool
) -> list[Float[Tensor, "n_out n_in"]]:
    """Per wire, the cost per unit |w| of a connection between two slots: (A d + y*) / numel(W)."""
    costs = []
    for wire in wiring.wires:
        factor = weight_factor if (penalize_last or not wire.is_last) else 0.0
        distance = l1_distance(wiring.groups[wire.writes].coords, wiring.groups[wire.reads].coords)
        costs.append((factor * distance + layer_separation).to(wire.param.dtype) / wire.param.numel())
    return costs


def cost_terms(wiring: Wiring, slot_cost: list[Tensor], layer_separation: float) -> tuple[list[Tensor], list[Tensor]]:
    """Parameters and their per-entry costs: weights with ``slot_cost``, biases with y*/numel(b)."""
    params, costs = [], []
    for wire, cost in zip(wiring.wires, slot_cost, strict=True):
        params.append(wire.param)
        costs.append(wire.spread(cost).contiguous())
        if wire.bias is not None:
            params.append(wire.bias)
            costs.append(torch.full_like(wire.bias, layer_separation / wire.bias.numel()))
    return params, costs


@torch.no_grad()
def weighted_l1(params: list[Tensor], costs: list[Tensor]) -> Tensor:
    """sum_t sum(|params_t| * costs_t): the cost's value (for logging)."""
    return torch.stack(torch._foreach_norm(torch._foreach_mul(torch._foreach_abs(params), costs), 1)).sum()


@torch.no_grad()
def add_weighted_l1_grad(params: list[Tensor], costs: list[Tensor], scale: float) -> None:
    """p.grad += scale * sign(p) * c: the exact gradient of ``scale * weighted_l1`` (d|p|/dp = 0 at 0, as in
    autograd), added directly rather than through autograd, which costs several times more small ops."""
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    torch._foreach_addcmul_(grads, torch._foreach_sign(params), costs, value=scale)
    for param, grad in zip(params, grads, strict=True):
        if param.grad is None:
            param.grad = grad
