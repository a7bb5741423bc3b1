"""The BIMT family of regimes as one implementation: a (possibly distance-weighted) L1 connection cost
under a lambda schedule, plus optional neuron swaps every S steps (Liu, Gan, Tegmark 2023). Works on any
model that declares a wiring (MLP, CNN, transformer). Presets and config: ``catalog.py``."""

from __future__ import annotations

from torch import nn

from modbench.errors import UserError
from modbench.methods.base import MethodBase
from modbench.methods.catalog import LocalCostConfig
from modbench.methods.connection_cost import add_weighted_l1_grad, cost_terms, slot_costs, weighted_l1
from modbench.methods.swap import relocate
from modbench.models.base import ModelAdapter, OptimizerState


class LocalCostMethod(MethodBase):
    config: LocalCostConfig

    def setup(self, model: nn.Module, total_steps: int) -> None:
        super().setup(model, total_steps)
        cfg = self.config
        if cfg.lam == 0 and cfg.swap_every == 0:
            return
        if not isinstance(model, ModelAdapter):
            raise UserError(f"{type(model).__name__} is not a modbench model (no wiring)")
        try:
            self._wiring = model.wiring()
        except NotImplementedError as error:
            raise UserError(str(error)) from None
        permutable = [g.size for g in self._wiring.groups.values() if g.permutable]
        if cfg.swap_every and cfg.swap_top_k > max(permutable, default=0):
            raise UserError(f"swap_top_k={cfg.swap_top_k} is larger than every permutable layer")
        loss_cost = slot_costs(self._wiring, cfg.weight_factor, cfg.layer_separation, cfg.penalize_last_distance)
        self._params, self._costs = cost_terms(self._wiring, loss_cost, cfg.layer_separation)
        # Kept only by regimes that swap (building them at each swap would add their temporaries to the peak).
        self._swap_cost = (slot_costs(self._wiring, cfg.swap_weight_factor, cfg.layer_separation, True)
                           if cfg.swap_every else [])

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

    def after_step(self, model: nn.Module, step: int, optimizer: OptimizerState) -> dict[str, float]:
        every = self.config.swap_every
        if not every or step % every:
            return {}
        optimizer_state = optimizer if self.config.permute_optimizer_state else None
        return {"swaps": float(relocate(self._wiring, self._swap_cost, self.config.swap_top_k, optimizer_state))}
