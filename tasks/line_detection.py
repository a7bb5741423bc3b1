"""Straight-line detection (Nainani 2024, section 3.2): digits drawn with straight strokes against
similar digits with curves: 4 <- 9, 1 <- 3, 7 <- 9."""

from modbench.tasks import PairTask, register_task

register_task(
    PairTask(
        key="line_detection",
        summary="MNIST MLP, clean <- corrupted pairs 4 <- 9, 1 <- 3, 7 <- 9 (Nainani 2024)",
        pairs=((4, 9), (1, 3), (7, 9)),
    )
)
