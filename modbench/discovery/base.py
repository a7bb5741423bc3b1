"""Scores, circuits and the Discoverer protocol."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import torch
from jaxtyping import Bool, Float
from torch import Tensor, nn

from modbench.models.base import Site
from modbench.models.edges import EdgeSite
from modbench.tasks.base import ContrastivePairs, Task


@dataclass(frozen=True)
class CandidateScores:
    """Per-pair scores of every candidate of every site: ``scores[site]`` is (pairs, candidates), or (1,
    candidates) when a discoverer scores the pairs together (edge discoverers).

    Aggregation over pairs is the mean; ``lower_is_better`` says which end is the circuit. ``costs``: what
    the discovery spent (``forward_passes``, ``backward_passes``, ``edge_tests``), reported per resample.
    """

    scores: dict[str, Float[Tensor, "pairs candidates"]]
    lower_is_better: bool
    costs: dict[str, float] = field(default_factory=dict)

    def mean(self) -> dict[str, Float[Tensor, " candidates"]]:
        return {site: value.mean(0) for site, value in self.scores.items()}


@dataclass(frozen=True)
class Circuits:
    """A batch of circuits over sites: ``keep[site]`` is (circuits, candidates), true inside the circuit."""

    keep: dict[str, Bool[Tensor, "circuits candidates"]]

    def __len__(self) -> int:
        return len(next(iter(self.keep.values())))

    def select(self, index: slice | Tensor) -> Circuits:
        return Circuits({site: mask[index] for site, mask in self.keep.items()})

    def sizes(self) -> dict[str, Tensor]:
        return {site: mask.sum(-1) for site, mask in self.keep.items()}


@runtime_checkable
class Discoverer(Protocol):
    """Scores every candidate of every site on a batch of pairs. Traits declared at registration:
    ``cost_depends_on_weights`` (is its time a property of the model?), ``exact`` (False: an approximation),
    ``packable`` (``score`` runs under ``torch.vmap``, so several models of one architecture can be scored in
    one pass: ``modbench.models.pack``; no ``torch.autograd``, ``.item()`` or data-dependent control flow
    inside; default False; the model's forward and hooks, the task's read-out, the metric, the intervention and
    circuit scoring then run under ``torch.vmap`` too, with P times the memory of one model; a pack that
    cannot run so is scored one model at a time, with a warning), ``reads="classes"`` for per-class
    discoverers that ``analyse`` a model instead, ``candidates="edges"`` for edge discoverers (ACDC, EAP,
    EAP-IG, exact edge patching: their candidates are the edges of ``model.edge_graph()``, their ``score``
    takes ``replacement=``, the intervention's values for cut edges, and their circuits are scored by cutting
    edges), ``selection``/``selection_config`` for a discoverer's own default selection (ACDC: its decisions)."""

    config: Any

    def score(self, model: nn.Module, task: Task, pairs: ContrastivePairs) -> CandidateScores: ...


@runtime_checkable
class Selection(Protocol):
    config: Any

    def check(self, sites: tuple[Site | EdgeSite, ...]) -> None:
        """Raise ``UserError`` when the selection cannot apply to these sites (called before training)."""

    def select(self, scores: dict[str, Float[Tensor, "circuits candidates"]], lower_is_better: bool) -> Circuits: ...


def broadcast_mask(mask: Bool[Tensor, "rows n"], site: Site, ndim: int) -> Tensor:
    """(rows, n) candidate mask -> a shape that broadcasts over an activation of ``ndim`` dims."""
    shape = [mask.shape[0]] + [1] * (ndim - 1)
    shape[site.axis] = mask.shape[1]
    return mask.view(shape)


def keep_or_replace(keep: Bool[Tensor, "rows n"], replacement: Tensor, site: Site) -> Callable[..., Tensor]:
    """Hook: keep the activations of candidates where ``keep`` is true, elsewhere use ``replacement``
    (broadcastable to the activation: a mean, zeros, or per-row corrupted activations)."""

    def hook(activation: Tensor, hook: Any = None) -> Tensor:
        return torch.where(broadcast_mask(keep, site, activation.dim()), activation, replacement)

    return hook
