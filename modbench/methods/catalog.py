"""Built-in training methods: frozen configs and registrations, no torch (implementations load on build).

The five regimes compared by Nainani (2024) are presets of one BIMT connection-cost method:
vanilla: lambda = 0, no swaps.   l1: A = 0, no swaps.   l1_local: A > 0, no swaps.
l1_swap: A = 0 in the loss, swaps every S steps scored with A > 0.   bimt: A > 0 plus swaps.
Defaults are the authors' MNIST code (``mnist_3.5.ipynb``), not the paper text.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from modbench.registries import register_method

# lambda multipliers as (fraction of training at which it starts, multiplier of ``lam``).
SCHEDULES: dict[str, tuple[tuple[float, float], ...]] = {
    "code": ((0.0, 1.0), (0.25, 10.0), (0.5, 100.0)),  # mnist_3.5: 0.01 -> 0.1 -> 1.0
    "paper": ((0.0, 1.0), (0.25, 10.0), (0.5, 100.0), (0.75, 300.0)),  # paper 3.5 with lam=1e-3
    "constant": ((0.0, 1.0),),
}
SWAP_PERIOD = 500  # mnist_3.5.ipynb: relocate() every 500 steps


def check_finite_nonnegative(config: object, *names: str) -> None:
    for name in names:
        value = getattr(config, name)
        if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value) or value < 0:
            raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")


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
        check_finite_nonnegative(self, "lam", "weight_factor", "layer_separation", "swap_weight_factor")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.schedule!r} (known: {', '.join(SCHEDULES)})")
        for name in ("swap_every", "swap_top_k"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise ValueError(f"{name} must be an integer, got {value!r}")
        if self.swap_every < 0:
            raise ValueError(f"swap_every must be >= 0, got {self.swap_every}")
        if self.swap_top_k < 1:
            raise ValueError(f"swap_top_k must be >= 1, got {self.swap_top_k}")
        for name in ("penalize_last_distance", "permute_optimizer_state"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false, got {getattr(self, name)!r}")

    def lam_at(self, step: int, total_steps: int) -> float:
        multiplier = 0.0
        for start, value in SCHEDULES[self.schedule]:
            if step >= start * total_steps:
                multiplier = value
        return self.lam * multiplier


LOCAL_COST = "modbench.methods.local_cost:LocalCostMethod"
PRESETS = {
    "vanilla": (LocalCostConfig(lam=0.0), "no regularisation (Nainani's FullyDense)"),
    "l1": (LocalCostConfig(weight_factor=0.0), "L1 on weights and biases, lambda schedule as BIMT"),
    "l1_local": (LocalCostConfig(), "distance-weighted L1 (BIMT's local cost), no swaps"),
    "l1_swap": (LocalCostConfig(weight_factor=0.0, swap_every=SWAP_PERIOD), "L1 plus BIMT swaps"),
    "bimt": (LocalCostConfig(swap_every=SWAP_PERIOD), "brain-inspired modular training: local L1 + swaps"),
}
for _key, (_config, _summary) in PRESETS.items():
    register_method(_key, _config, _summary, factory=LOCAL_COST)


@dataclass(frozen=True)
class ClusterConfig:
    """Golechha et al.'s clusterability loss: task loss - lam * mean over the chosen wires of C(W), with k
    contiguous clusters per neuron group (shared by every wire touching the group, so clusters align across
    matrices), after ``warmup_steps`` plain steps. ``wires`` names the clustered weights (see
    ``model.wiring()``); empty = every hidden wire (between two permutable groups, not the read-out)."""

    lam: float = 20.0
    k: int = 4
    warmup_steps: int = 0
    wires: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        check_finite_nonnegative(self, "lam")
        for name in ("k", "warmup_steps"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < (2 if name == "k" else 0):
                raise ValueError(f"{name} must be an integer >= {2 if name == 'k' else 0}, got {value!r}")
        if not all(isinstance(w, str) for w in self.wires):
            raise ValueError(f"wires must be wire names, got {self.wires!r}")


register_method("cluster", ClusterConfig(), "clusterability loss (Golechha et al. 2025): CE - 20 * mean C, k = 4",
                factory="modbench.methods.cluster:ClusterMethod")
