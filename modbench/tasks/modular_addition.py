"""Modular addition (Nanda et al. 2023; Golechha et al. 2025 section 4): (a + b) mod p from [a, b, =] on a
1-layer HookedTransformer; see ``modular_addition_impl`` for the pair rule and the metric."""

from modbench.registries import register_task
from modbench.tasks.configs import ModularAdditionConfig

register_task("modular_addition", ModularAdditionConfig(),
              "(a + b) mod 113 on a 1-layer HookedTransformer (Nanda et al.; Golechha et al. 2025)",
              factory="modbench.tasks.modular_addition_impl:ModularAdditionTask")
