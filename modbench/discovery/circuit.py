"""Circuits chosen from scores, and their sparsity.

Circuit sparsity (Nainani reports it "from 0 to 1" without a formula; this is ours):
    sparsity = 1 - (active edges inside the circuit) / (all edges of the network)
An edge is a weight; it is active when |w| >= tau * max|W| of its layer (tau = 0.01 by default), and
inside the circuit when both its ends are: all inputs and outputs count as circuit nodes, hidden neurons
only when kept. With K = 15 of 100 neurons per layer, a dense 784-100-100-10 network scores
1 - (784*15 + 15*15 + 15*10) / 89,400 = 0.864, close to Nainani's FullyDense 0.8635.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Bool, Float
from torch import Tensor, nn


@dataclass(frozen=True)
class Circuits:
    """A batch of circuits: ``keep[hook]`` is (circuits, neurons), true for circuit neurons."""

    keep: dict[str, Bool[Tensor, "circuits neurons"]]

    def __len__(self) -> int:
        return len(next(iter(self.keep.values())))

    @classmethod
    def top_k(cls, scores: dict[str, Float[Tensor, "circuits neurons"]], k: int, lower_is_better: bool) -> Circuits:
        keep = {}
        for hook, value in scores.items():
            chosen = value.topk(min(k, value.shape[-1]), dim=-1, largest=not lower_is_better).indices
            keep[hook] = torch.zeros_like(value, dtype=torch.bool).scatter_(-1, chosen, True)
        return cls(keep)


def edge_sparsity(model: nn.Module, circuits: Circuits, threshold: float = 0.01) -> Float[Tensor, " circuits"]:
    wiring = model.wiring()
    n = len(circuits)
    device = wiring[0].weight.device
    hidden = [circuits.keep[hook].float() for hook in model.hidden_hook_names("post")]
    masks = [torch.ones(n, wiring[0].weight.shape[1], device=device), *hidden,
             torch.ones(n, wiring[-1].weight.shape[0], device=device)]
    inside = torch.zeros(n, device=device)
    total = 0
    for layer, wired in enumerate(wiring):
        magnitude = wired.weight.detach().abs()
        active = (magnitude >= threshold * magnitude.max()).float()
        inside += torch.einsum("bo,oi,bi->b", masks[layer + 1], active, masks[layer])
        total += magnitude.numel()
    return 1 - inside / total
