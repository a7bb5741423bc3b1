"""Hook factories for patching and ablation. Hooks are only ever attached inside ``model.hooks(...)``."""

from __future__ import annotations

from collections.abc import Callable

import torch
from jaxtyping import Bool, Float
from torch import Tensor

Hook = Callable[..., Tensor]


def diagonal_patch(clean: Float[Tensor, "pairs n"]) -> Hook:
    """For activations laid out as (pairs * n, n), row (p, i) gets neuron i set to ``clean[p, i]``:
    every single-neuron patch of every pair in one batch."""

    def hook(activation: Tensor, hook=None) -> Tensor:
        pairs, n = clean.shape
        activation.view(pairs, n, n).diagonal(dim1=1, dim2=2).copy_(clean)
        return activation

    return hook


def keep_or_replace(keep: Bool[Tensor, "rows n"], replacement: Float[Tensor, "rows n"] | Float[Tensor, " n"]) -> Hook:
    """Keep the activations where ``keep`` is true; elsewhere use ``replacement`` (mean, zero, clean...)."""

    def hook(activation: Tensor, hook=None) -> Tensor:
        return torch.where(keep, activation, replacement)

    return hook
