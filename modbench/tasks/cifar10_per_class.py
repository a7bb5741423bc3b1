"""Per-class CIFAR-10 on the hooked CNN (Golechha et al., Table 1): conv 3->16 k3 s1 p1, 2x2 max-pool,
fc 4096-64-64-10, ReLU, no bias; cross-entropy, Adam lr 1e-3, batch 64. The data are not on every machine:
without them the run stops with one line saying where to put the files."""

from modbench.registries import register_task
from modbench.tasks.configs import ClassTaskConfig
from modbench.training.config import TrainConfig

register_task("cifar10_per_class", ClassTaskConfig(
    dataset="cifar10", model="cifar_cnn", quality_floor=0.4,
    train=TrainConfig(steps=7_820, batch_size=64, loss="cross_entropy", eval_every=782),  # 10 epochs of 50k
    steps_by_source=()),
    "CIFAR-10 hooked CNN (Golechha 2025), circuits per class", factory="modbench.tasks.image_classes:ImageClassTask")
