"""Selections: circuits chosen from scores, after discovery (a batch of score rows -> a batch of circuits)."""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor

from modbench.discovery.base import Circuits
from modbench.discovery.catalog import ThresholdConfig, TopFractionConfig, TopKConfig
from modbench.errors import UserError
from modbench.models.base import Site
from modbench.models.edges import EdgeSite


class SelectionBase:
    def __init__(self, config: object) -> None:
        self.config = config

    def check(self, sites: tuple[Site | EdgeSite, ...]) -> None:
        """Raise ``UserError`` when the selection cannot apply to these sites (of nodes or of edges; called before
        training)."""


class TopK(SelectionBase):
    config: TopKConfig

    def check(self, sites: tuple[Site | EdgeSite, ...]) -> None:
        """Before any training: K must fit every site (never clipped silently)."""
        for site in sites:
            if self.config.k > site.size:
                raise UserError(f"--top-k {self.config.k} is larger than site {site.name} ({site.size} candidates)")

    def select(self, scores: dict[str, Float[Tensor, "circuits n"]], lower_is_better: bool) -> Circuits:
        keep = {}
        for site, value in scores.items():
            if self.config.k > value.shape[-1]:
                raise UserError(f"top-k {self.config.k} is larger than site {site} ({value.shape[-1]} candidates)")
            chosen = value.topk(self.config.k, dim=-1, largest=not lower_is_better).indices
            keep[site] = torch.zeros_like(value, dtype=torch.bool).scatter_(-1, chosen, True)
        return Circuits(keep)


class TopFraction(SelectionBase):
    config: TopFractionConfig
    def select(self, scores: dict[str, Float[Tensor, "circuits n"]], lower_is_better: bool) -> Circuits:
        sites = list(scores)
        joined = torch.cat([scores[s] for s in sites], dim=-1)
        count = max(1, round(self.config.fraction * joined.shape[-1]))
        chosen = joined.topk(count, dim=-1, largest=not lower_is_better).indices
        mask = torch.zeros_like(joined, dtype=torch.bool).scatter_(-1, chosen, True)
        return Circuits(dict(zip(sites, mask.split([scores[s].shape[-1] for s in sites], -1), strict=True)))


class Threshold(SelectionBase):
    config: ThresholdConfig
    def select(self, scores: dict[str, Float[Tensor, "circuits n"]], lower_is_better: bool) -> Circuits:
        value = self.config.value
        return Circuits({site: s <= value if lower_is_better else s >= value for site, s in scores.items()})
