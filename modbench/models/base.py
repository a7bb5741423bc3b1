"""What the trainer, the regimes and the discoverers need from a model.

A modbench model is a TransformerLens ``HookedRootModule`` (so ``run_with_cache``/``hooks`` work) that
also describes its wiring geometrically, for the BIMT-family regimes:

* ``wiring()``: every weight matrix with the coordinates of the neurons it connects;
* ``neuron_layers()``: the layers whose neurons may be permuted, each with the parameter dimensions a
  permutation must move so that the network function is unchanged.

A hooked CNN or a HookedTransformer plugs in by providing the same two methods.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch
from jaxtyping import Float
from torch import Tensor, nn

from modbench.registry import PluginSpec, Registry, plugin_decorator


@dataclass(frozen=True)
class WiredLinear:
    """A weight matrix (out, in) between two neuron layers, with their 2-D coordinates."""

    weight: nn.Parameter
    bias: nn.Parameter | None
    in_coords: Float[Tensor, "n_in 2"]
    out_coords: Float[Tensor, "n_out 2"]
    is_last: bool


@dataclass(frozen=True)
class NeuronLayer:
    """A permutable layer of ``size`` neurons.

    ``sites`` lists (tensor, dim) pairs: permuting every one of them along ``dim`` with the same
    permutation moves whole neurons without changing the function. ``incoming``/``outgoing`` index
    ``wiring()`` (``outgoing`` is None for the output layer).
    """

    size: int
    incoming: int
    outgoing: int | None
    sites: tuple[tuple[Tensor, int], ...]


@runtime_checkable
class ModularModel(Protocol):
    def wiring(self) -> list[WiredLinear]: ...

    def neuron_layers(self) -> list[NeuronLayer]: ...

    def __call__(self, x: Tensor) -> Tensor: ...


ModelSpec = PluginSpec
MODELS: Registry[PluginSpec] = Registry("model")


def register_model(key: str, config: Any, summary: str) -> Callable[[Any], Any]:
    """Register ``build(config) -> model`` under ``key`` with its default config."""
    return plugin_decorator(MODELS, key, config, summary)


def permute_sites(layer: NeuronLayer, perm: Tensor, optimizer: torch.optim.Optimizer | None = None) -> None:
    """Apply ``perm`` (new slot s holds old neuron perm[s]) to every site of ``layer``.

    With ``optimizer`` given, Adam-style moment buffers of permuted parameters move too.
    """
    with torch.no_grad():
        for tensor, dim in layer.sites:
            tensor.copy_(tensor.index_select(dim, perm.to(tensor.device)))
            if optimizer is not None and tensor in optimizer.state:
                for value in optimizer.state[tensor].values():
                    if isinstance(value, Tensor) and value.shape == tensor.shape:
                        value.copy_(value.index_select(dim, perm.to(value.device)))
