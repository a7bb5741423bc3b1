"""Image classification read per class: per-class discoverers (ECS, ON/OFF) analyse each class's test
images. Contrastive pairs, for pair-based discoverers, are each test image against the
next test image of another class (seeded shuffle)."""

from __future__ import annotations

import torch

from modbench.data.dataset import TaskData
from modbench.tasks.base import ContrastivePairs
from modbench.tasks.configs import ClassTaskConfig
from modbench.tasks.image_pairs import ImageTask


class ImageClassTask(ImageTask):
    config: ClassTaskConfig

    def contrast(self, data: TaskData, seed: int) -> ContrastivePairs:
        generator = torch.Generator().manual_seed(seed)
        order = torch.randperm(len(data.y_test), generator=generator)
        partner = torch.roll(order, 1)
        differ = data.y_test[order] != data.y_test[partner]
        clean, corrupted = order[differ], partner[differ]
        return ContrastivePairs(data.x_test[clean], data.x_test[corrupted], data.y_test[clean], data.y_test[corrupted])
