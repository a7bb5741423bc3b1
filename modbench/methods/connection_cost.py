"""BIMT connection cost, as the authors' MNIST code computes it (``get_cc`` in ``mnist_3.5.ipynb``).

    cc = sum_layers mean_{o,i} |W_oi| (A dist_oi + y*) + sum_layers mean_o |b_o| y*

Means are per layer (the paper writes sums). With ``penalize_last=False`` the last layer pays y*|W| only.
Each layer's (A dist + y*) / numel(W) is a fixed matrix, since neurons move between fixed slots, so the
whole cost is a weighted L1 norm sum_t sum |p_t| c_t over weights and biases, computed with a handful of
fused ``_foreach`` kernels instead of autograd through dozens of small ops.
"""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor

from modbench.models.base import ModularModel
from modbench.models.geometry import l1_distance


def slot_costs(
    model: ModularModel, weight_factor: float, layer_separation: float, penalize_last: bool
) -> list[Float[Tensor, "n_out n_in"]]:
    """Per layer, the cost per unit |w| of a connection between two slots: (A d + y*) / numel(W)."""
    costs = []
    for wired in model.wiring():
        factor = weight_factor if (penalize_last or not wired.is_last) else 0.0
        distance = l1_distance(wired.out_coords, wired.in_coords)
        costs.append((factor * distance + layer_separation) / distance.numel())
    return costs


def cost_terms(
    model: ModularModel, slot_cost: list[Tensor], layer_separation: float
) -> tuple[list[Tensor], list[Tensor]]:
    """Parameters and their per-entry costs: weights with ``slot_cost``, biases with y*/numel(b)."""
    params, costs = [], []
    for wired, cost in zip(model.wiring(), slot_cost, strict=True):
        params.append(wired.weight)
        costs.append(cost)
        if wired.bias is not None:
            params.append(wired.bias)
            costs.append(torch.full_like(wired.bias, layer_separation / wired.bias.numel()))
    return params, costs


class _WeightedL1(torch.autograd.Function):
    @staticmethod
    def forward(ctx, costs: list[Tensor], *params: Tensor) -> Tensor:  # type: ignore[override]
        ctx.costs = costs
        ctx.save_for_backward(*params)
        weighted = torch._foreach_mul(torch._foreach_abs(list(params)), costs)
        return torch.stack(torch._foreach_norm(weighted, 1)).sum()

    @staticmethod
    def backward(ctx, grad_output: Tensor):  # type: ignore[override]
        grads = torch._foreach_sign(list(ctx.saved_tensors))  # d|p|/dp, 0 at 0 like autograd's abs
        torch._foreach_mul_(grads, ctx.costs)
        torch._foreach_mul_(grads, grad_output)
        return (None, *grads)


def weighted_l1(params: list[Tensor], costs: list[Tensor]) -> Tensor:
    """sum_t sum(|params_t| * costs_t), differentiable."""
    return _WeightedL1.apply(costs, *params)
