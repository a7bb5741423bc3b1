"""The five regimes compared by Nainani (2024), as presets of the BIMT connection-cost method.

vanilla: lambda = 0, no swaps.   l1: A = 0, no swaps.   l1_local: A > 0, no swaps.
l1_swap: A = 0 in the loss, swaps every S steps scored with A > 0.   bimt: A > 0 plus swaps.
"""

from modbench.methods.base import register_method
from modbench.methods.local_cost import LocalCostConfig, LocalCostMethod

SWAP_PERIOD = 500  # mnist_3.5.ipynb: relocate() every 500 steps

PRESETS = {
    "vanilla": (LocalCostConfig(lam=0.0), "no regularisation (Nainani's FullyDense)"),
    "l1": (LocalCostConfig(weight_factor=0.0), "L1 on weights and biases, lambda schedule as BIMT"),
    "l1_local": (LocalCostConfig(), "distance-weighted L1 (BIMT's local cost), no swaps"),
    "l1_swap": (LocalCostConfig(weight_factor=0.0, swap_every=SWAP_PERIOD), "L1 plus BIMT swaps"),
    "bimt": (LocalCostConfig(swap_every=SWAP_PERIOD), "brain-inspired modular training: local L1 + swaps"),
}

for _key, (_config, _summary) in PRESETS.items():
    register_method(_key, _config, _summary)(LocalCostMethod)
