"""The circuit a record stores, as :class:`Circuits` over its model's sites, to draw it on the weights.

A record of a pair discoverer says in ``details`` what its consensus circuit (chosen from the mean scores over
the discovery resamples, or kept in most resamples) is made of: ``edge_circuit`` maps each edge site of
``model.edge_graph()`` to its kept ``(receiver, sender)`` pairs; ``node_circuit`` maps each candidate site of
``model.sites()`` to its kept candidate indices.
"""

from __future__ import annotations

from typing import Any

import torch

from modbench.discovery.base import Circuits
from modbench.models.base import ModelAdapter


def stored_circuit(details: dict[str, Any], model: ModelAdapter) -> Circuits | None:
    """The record's circuit on ``model``, or None when the record stores none (per-class discoverers, records
    made before circuits were stored) or names sites the model does not have."""
    if isinstance(details.get("edge_circuit"), dict) and hasattr(model, "edge_graph"):
        sites = {site.name: site for site in model.edge_graph().sites}
        kept = details["edge_circuit"]
        if not set(kept) <= set(sites):
            return None
        return Circuits({name: _mask(sites[name].size, [r * sites[name].n_senders + s for r, s in pairs])
                         for name, pairs in kept.items()})
    if isinstance(details.get("node_circuit"), dict):
        sizes = {site.name: site.size for site in model.sites()}
        kept = details["node_circuit"]
        if not set(kept) <= set(sizes):
            return None
        return Circuits({name: _mask(sizes[name], indices) for name, indices in kept.items()})
    return None


def _mask(size: int, indices: list[int]) -> torch.Tensor:
    mask = torch.zeros(1, size, dtype=torch.bool)
    mask[0, list(indices)] = True
    return mask
