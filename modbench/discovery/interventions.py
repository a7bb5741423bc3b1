"""Interventions: what replaces a left-out candidate's activation when a circuit runs alone.

``values`` returns, per site, either one activation broadcast to every row (``per_pair`` false: mean,
zero) or one per pair (``per_pair`` true: resample takes the pair's corrupted activation). With ``edges``, the
values are those of the edge graph's groups (what a cut edge carries), for circuits of edges.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from modbench.discovery.edges import sender_values
from modbench.models.base import ModelAdapter
from modbench.tasks.base import ContrastivePairs


@dataclass(frozen=True)
class Replacement:
    values: dict[str, Tensor]
    per_pair: bool


def _cache(model: ModelAdapter, inputs: Tensor, edges: bool) -> dict[str, Tensor]:
    """Candidate sites' activations (circuits of nodes), or every edge-graph group's value (circuits of edges:
    what a cut edge carries instead of its sender's value)."""
    if edges:
        return sender_values(model, inputs)
    names = [site.name for site in model.sites()]
    _, cache = model.run_with_cache(inputs, names_filter=names)
    return {name: cache[name] for name in names}


class MeanAblation:
    def __init__(self, config: object) -> None:
        self.config = config

    @torch.no_grad()
    def values(self, model: ModelAdapter, pairs: ContrastivePairs, edges: bool = False) -> Replacement:
        cache = _cache(model, torch.cat([pairs.clean, pairs.corrupted]), edges)
        return Replacement({name: value.mean(0) for name, value in cache.items()}, per_pair=False)


class ZeroAblation(MeanAblation):
    @torch.no_grad()
    def values(self, model: ModelAdapter, pairs: ContrastivePairs, edges: bool = False) -> Replacement:
        cache = _cache(model, pairs.clean[:1], edges)
        return Replacement({name: torch.zeros_like(value[0]) for name, value in cache.items()}, per_pair=False)


class ResampleAblation(MeanAblation):
    @torch.no_grad()
    def values(self, model: ModelAdapter, pairs: ContrastivePairs, edges: bool = False) -> Replacement:
        return Replacement(_cache(model, pairs.corrupted, edges), per_pair=True)
