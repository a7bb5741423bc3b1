"""The clusterability regime (Golechha et al. 2025): loss = task loss - lam * mean_w C(W_w), with
C = in-cluster sum of W^2 / sum of W^2 over k contiguous bipartite clusters. Clusters belong to neuron groups,
so a group read by one clustered wire and written by another has one clustering (cluster c = the same
neurons in both), as in the authors' modular-addition model. Sizes not divisible by k: see
``clustering.contiguous_labels`` (leftovers spread over the first clusters; the authors' code drops them)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from modbench.clustering import contiguous_labels, wire_clusterability
from modbench.errors import UserError
from modbench.methods.base import MethodBase
from modbench.methods.catalog import ClusterConfig
from modbench.models.base import ModelAdapter, Wire, Wiring


def clustered_wires(wiring: Wiring, names: tuple[str, ...]) -> list[Wire]:
    """The named wires, or (none named) every hidden wire: between two permutable groups, not the read-out."""
    if not names:
        return [w for w in wiring.wires
                if wiring.groups[w.reads].permutable and wiring.groups[w.writes].permutable and not w.is_last]
    known = {w.name: w for w in wiring.wires}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise UserError(f"no wire named {', '.join(unknown)} (wires: {', '.join(known)})")
    return [known[n] for n in names]


class ClusterMethod(MethodBase):
    config: ClusterConfig

    def setup(self, model: nn.Module, total_steps: int) -> None:
        super().setup(model, total_steps)
        if not isinstance(model, ModelAdapter):
            raise UserError(f"{type(model).__name__} is not a modbench model (no wiring)")
        wiring = model.wiring()
        self._wires = clustered_wires(wiring, self.config.wires)
        if not self._wires:
            raise UserError("the model has no wire between two hidden groups: name the wires to cluster")
        k = self.config.k
        self._labels = []
        for wire in self._wires:
            rows, cols = wiring.groups[wire.writes].size, wiring.groups[wire.reads].size
            if k > min(rows, cols):
                raise UserError(f"k={k} is larger than wire {wire.name} ({rows} x {cols})")
            device = wire.param.device
            self._labels.append((contiguous_labels(rows, k).to(device), contiguous_labels(cols, k).to(device)))

    def _clusterability(self) -> list[Tensor]:
        return [wire_clusterability(w, rows, cols) for w, (rows, cols) in zip(self._wires, self._labels, strict=True)]

    def regularizers(self, model: nn.Module, step: int) -> dict[str, Tensor]:
        if step < self.config.warmup_steps or not self.config.lam:
            return {}
        return {"clusterability": -self.config.lam * torch.stack(self._clusterability()).mean()}

    @torch.no_grad()
    def metrics(self, model: nn.Module, step: int) -> dict[str, float]:
        values = self._clusterability()
        out = {f"C[{w.name}]": float(c) for w, c in zip(self._wires, values, strict=True)}
        return out | {"clusterability": float(torch.stack(values).mean())}
