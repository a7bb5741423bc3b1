"""The Discoverer protocol and registry."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from jaxtyping import Float
from torch import Tensor, nn

from modbench.registry import PluginSpec, Registry, plugin_decorator
from modbench.tasks.base import ContrastivePairs


@dataclass(frozen=True)
class NeuronScores:
    """Per-pair scores of every candidate neuron, per hook point: ``scores[hook]`` is (pairs, neurons).

    Aggregation over pairs is the mean; ``lower_is_better`` says which end is the circuit.
    """

    scores: dict[str, Float[Tensor, "pairs neurons"]]
    lower_is_better: bool

    def mean(self) -> dict[str, Float[Tensor, " neurons"]]:
        return {hook: value.mean(0) for hook, value in self.scores.items()}


@runtime_checkable
class Discoverer(Protocol):
    config: Any

    def score(self, model: nn.Module, pairs: ContrastivePairs) -> NeuronScores: ...


DiscovererSpec = PluginSpec
DISCOVERERS: Registry[PluginSpec] = Registry("discoverer")


def register_discoverer(key: str, config: Any, summary: str = "") -> Callable[[Any], Any]:
    return plugin_decorator(DISCOVERERS, key, config, summary)
