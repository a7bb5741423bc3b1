"""Straight-line detection (Nainani 2024, section 3.2): digits drawn with straight strokes against
similar digits with curves: 4 <- 9, 1 <- 3, 7 <- 9."""

from modbench.registries import register_task
from modbench.tasks.configs import PairTaskConfig

register_task("line_detection", PairTaskConfig(pairs=((4, 9), (1, 3), (7, 9))),
              "MNIST MLP, clean <- corrupted pairs 4 <- 9, 1 <- 3, 7 <- 9 (Nainani 2024)",
              factory="modbench.tasks.image_pairs:ImagePairTask")
