"""Interventions: what replaces a left-out candidate's activation when a circuit runs alone.

``values`` returns, per site, either one activation broadcast to every row (``per_pair`` false: mean,
zero) or one per pair (``per_pair`` true: resample takes the pair's corrupted activation).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from modbench.models.base import ModelAdapter
from modbench.tasks.base import ContrastivePairs


@dataclass(frozen=True)
class Replacement:
    values: dict[str, Tensor]
    per_pair: bool


def _cache(model: ModelAdapter, inputs: Tensor) -> dict[str, Tensor]:
    names = [site.name for site in model.sites()]
    _, cache = model.run_with_cache(inputs, names_filter=names)
    return {name: cache[name] for name in names}


class MeanAblation:
    def __init__(self, config: object) -> None:
        self.config = config

    @torch.no_grad()
    def values(self, model: ModelAdapter, pairs: ContrastivePairs) -> Replacement:
        cache = _cache(model, torch.cat([pairs.clean, pairs.corrupted]))
        return Replacement({name: value.mean(0) for name, value in cache.items()}, per_pair=False)


class ZeroAblation(MeanAblation):
    @torch.no_grad()
    def values(self, model: ModelAdapter, pairs: ContrastivePairs) -> Replacement:
        cache = _cache(model, pairs.clean[:1])
        return Replacement({name: torch.zeros_like(value[0]) for name, value in cache.items()}, per_pair=False)


class ResampleAblation(MeanAblation):
    @torch.no_grad()
    def values(self, model: ModelAdapter, pairs: ContrastivePairs) -> Replacement:
        return Replacement(_cache(model, pairs.corrupted), per_pair=True)
