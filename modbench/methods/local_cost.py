"""The BIMT family of regimes as one implementation: a (possibly distance-weighted) L1 connection
cost under a lambda schedule, plus optional neuron swaps every S steps (Liu, Gan, Tegmark 2023).

The five registered regimes (``regimes.py``) are presets of :class:`LocalCostConfig`; defaults are the
authors' MNIST code (``mnist_3.5.ipynb``), not the paper text (see seed-methods.md section 1.3).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from modbench.errors import UserError
from modbench.methods.base import MethodBase
from modbench.methods.connection_cost import add_weighted_l1_grad, cost_terms, slot_costs, weighted_l1
from modbench.methods.swap import relocate
from modbench.models.base import ModularModel

# lambda multipliers as (fraction of training at which it starts, multiplier of ``lam``).
SCHEDULES: dict[str, tuple[tuple[float, float], ...]] = {
    "code": ((0.0, 1.0), (0.25, 10.0), (0.5, 100.0)),  # mnist_3.5: 0.01 -> 0.1 -> 1.0
    "paper": ((0.0, 1.0), (0.25, 10.0), (0.5, 100.0), (0.75, 300.0)),  # paper 3.5 with lam=1e-3
    "constant": ((0.0, 1.0),),
}


@dataclass(frozen=True)
class LocalCostConfig:
    lam: float = 0.01
    schedule: str = "code"
    weight_factor: float = 2.0  # A in the training loss (0 = plain L1)
    layer_separation: float = 0.5  # y*
    penalize_last_distance: bool = False  # the code trains with no_penalize_last=True
    swap_every: int = 0  # S; 0 = never swap
    swap_top_k: int = 30
    swap_weight_factor: float = 2.0  # swaps are scored with the full default cost, A > 0, last included
    permute_optimizer_state: bool = False  # the authors' code leaves Adam moments in place

    def __post_init__(self) -> None:
        for name in ("lam", "weight_factor", "layer_separation", "swap_weight_factor"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.schedule!r} (known: {', '.join(SCHEDULES)})")
        if self.swap_every < 0:
            raise ValueError(f"swap_every must be >= 0, got {self.swap_every}")
        if self.swap_top_k < 1:
            raise ValueError(f"swap_top_k must be >= 1, got {self.swap_top_k}")

    def lam_at(self, step: int, total_steps: int) -> float:
        multiplier = 0.0
        for start, value in SCHEDULES[self.schedule]:
            if step >= start * total_steps:
                multiplier = value
        return self.lam * multiplier


class LocalCostMethod(MethodBase):
    config: LocalCostConfig

    def setup(self, model: nn.Module, total_steps: int) -> None:
        super().setup(model, total_steps)
        cfg = self.config
        if cfg.lam == 0 and cfg.swap_every == 0:
            return
        if not isinstance(model, ModularModel):
            raise UserError(f"{type(model).__name__} has no neuron geometry (wiring/neuron_layers)")
        if cfg.swap_every and cfg.swap_top_k > max(layer.size for layer in model.neuron_layers()):
            raise UserError(f"swap_top_k={cfg.swap_top_k} is larger than every permutable layer")
        loss_cost = slot_costs(model, cfg.weight_factor, cfg.layer_separation, cfg.penalize_last_distance)
        self._params, self._costs = cost_terms(model, loss_cost, cfg.layer_separation)
        self._swap_cost = slot_costs(model, cfg.swap_weight_factor, cfg.layer_separation, True)

    def after_backward(self, model: nn.Module, step: int) -> None:
        lam = self.config.lam_at(step, self.total_steps)
        if lam:
            add_weighted_l1_grad(self._params, self._costs, lam)

    def metrics(self, model: nn.Module, step: int) -> dict[str, float]:
        lam = self.config.lam_at(step - 1, self.total_steps)
        if not lam:
            return {}
        cost = float(weighted_l1(self._params, self._costs))
        return {"lambda": lam, "connection_cost": cost, "weighted_connection_cost": lam * cost}

    def after_step(self, model: nn.Module, step: int, optimizer: torch.optim.Optimizer) -> dict[str, float]:
        every = self.config.swap_every
        if not every or step % every:
            return {}
        optimizer_state = optimizer if self.config.permute_optimizer_state else None
        return {"swaps": float(relocate(model, self._swap_cost, self.config.swap_top_k, optimizer_state))}
