"""Per-class MNIST (Golechha et al., Table 1): the 784-64-64-10 ReLU MLP without bias, cross-entropy, Adam
lr 1e-3, batch 64; circuits are read per digit class (effective circuit size, ON/OFF cluster interventions)."""

from modbench.registries import register_task
from modbench.tasks.configs import ClassTaskConfig

register_task("mnist_per_class", ClassTaskConfig(),
              "MNIST MLP 784-64-64-10 (Golechha 2025), circuits per digit class",
              factory="modbench.tasks.image_classes:ImageClassTask")
