"""Circle detection (Nainani 2024, Table 1): clean digits with closed loops, corrupted look-alikes without.

8 <- 3 (an 8 is a 3 with its loops closed) and 6 <- 5 (a 6 is a 5 with its lower loop closed).
"""

from modbench.tasks import PairTask, register_task

register_task(
    PairTask(
        key="circle_detection",
        summary="MNIST MLP, clean <- corrupted pairs 8 <- 3 and 6 <- 5 (Nainani 2024)",
        pairs=((8, 3), (6, 5)),
    )
)
