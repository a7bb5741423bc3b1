"""Built-in training methods: frozen configs and registrations, no torch (implementations load on build).

The five regimes compared by Nainani (2024) are presets of one BIMT connection-cost method:
vanilla: lambda = 0, no swaps.   l1: A = 0, no swaps.   l1_local: A > 0, no swaps.
l1_swap: A = 0 in the loss, swaps every S steps scored with A > 0.   bimt: A > 0 plus swaps.
Defaults are the authors' MNIST code (``mnist_3.5.ipynb``), not the paper text.
"""

from __future__ import annotations

from dataclasses import dataclass

from modbench.registries import register_method
from modbench.registry import check_flag, check_int, check_number

# lambda multipliers as (fraction of training at which it starts, multiplier of ``lam``).
SCHEDULES: dict[str, tuple[tuple[float, float], ...]] = {
    "code": ((0.0, 1.0), (0.25, 10.0), (0.5, 100.0)),  # mnist_3.5: 0.01 -> 0.1 -> 1.0
    "paper": ((0.0, 1.0), (0.25, 10.0), (0.5, 100.0), (0.75, 300.0)),  # paper 3.5 with lam=1e-3
    "constant": ((0.0, 1.0),),
}
SWAP_PERIOD = 500  # mnist_3.5.ipynb: relocate() every 500 steps


@dataclass(frozen=True)
class LocalCostConfig:
    """``layer_separation`` y* is every weight's cost beyond its distance term (all of it under plain L1), so
    it must be > 0. The regimes without swaps keep ``swap_every`` = 0 (never); those that swap use
    :class:`SwapConfig`."""

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
        for name in ("lam", "weight_factor", "swap_weight_factor"):
            check_number(self, name, 0)
        check_number(self, "layer_separation", 0, low_open=True)
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule: unknown schedule {self.schedule!r} (known: {', '.join(SCHEDULES)})")
        check_int(self, "swap_every", 0)
        check_int(self, "swap_top_k", 1)
        check_flag(self, "penalize_last_distance")
        check_flag(self, "permute_optimizer_state")

    def lam_at(self, step: int, total_steps: int) -> float:
        multiplier = 0.0
        for start, value in SCHEDULES[self.schedule]:
            if step >= start * total_steps:
                multiplier = value
        return self.lam * multiplier


@dataclass(frozen=True)
class SwapConfig(LocalCostConfig):
    """The regimes that swap (l1_swap, bimt): ``swap_every`` is an interval of steps, >= 1. Never swapping is
    another regime (l1, l1_local), chosen by its name, so that no row is labelled with a regime it did not
    train under. Same fields as :class:`LocalCostConfig`, so the same config hashes."""

    swap_every: int = SWAP_PERIOD

    def __post_init__(self) -> None:
        try:
            check_int(self, "swap_every", 1)
        except ValueError as error:
            raise ValueError(f"{error} (a regime that swaps; never swapping is l1 or l1_local)") from None
        super().__post_init__()


LOCAL_COST = "modbench.methods.local_cost:LocalCostMethod"
PRESETS = {
    "vanilla": (LocalCostConfig(lam=0.0), "no regularisation (Nainani's FullyDense)"),
    "l1": (LocalCostConfig(weight_factor=0.0), "L1 on weights and biases, lambda schedule as BIMT"),
    "l1_local": (LocalCostConfig(), "distance-weighted L1 (BIMT's local cost), no swaps"),
    "l1_swap": (SwapConfig(weight_factor=0.0), "L1 plus BIMT swaps"),
    "bimt": (SwapConfig(), "brain-inspired modular training: local L1 + swaps"),
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
        check_number(self, "lam", 0)
        check_int(self, "k", 2)
        check_int(self, "warmup_steps", 0)
        if not isinstance(self.wires, tuple) or not all(isinstance(w, str) for w in self.wires):
            raise ValueError(f"wires must be wire names, got {self.wires!r}")


register_method("cluster", ClusterConfig(), "clusterability loss (Golechha et al. 2025): CE - 20 * mean C, k = 4",
                factory="modbench.methods.cluster:ClusterMethod")
