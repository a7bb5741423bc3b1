"""Circle detection (Nainani 2024, Table 1): clean digits with closed loops, corrupted look-alikes without.

8 <- 3 (an 8 is a 3 with its loops closed) and 6 <- 5 (a 6 is a 5 with its lower loop closed).
"""

from modbench.registries import register_task
from modbench.tasks.configs import PairTaskConfig

register_task("circle_detection", PairTaskConfig(pairs=((8, 3), (6, 5))),
              "MNIST MLP, clean <- corrupted pairs 8 <- 3 and 6 <- 5 (Nainani 2024)",
              factory="modbench.tasks.image_pairs:ImagePairTask")
