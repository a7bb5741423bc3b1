"""Image classification tasks with contrastive digit pairs (Nainani's circle and line detection).

Pair rule (Nainani gives none): for each rule (clean digit c <- corrupted digit k), the test-split images
of c and of k are each shuffled by a generator seeded with (seed, rule index) and zipped; the longer list
is cut. Rules are independent, so a corrupted digit shared by two rules (9 in 4<-9 and 7<-9) may appear
in both. The result is deterministic given the seed and the data source.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from modbench.data.dataset import TaskData
from modbench.data.cifar10 import load_cifar10
from modbench.data.mnist import load_mnist
from modbench.errors import UserError
from modbench.tasks.base import ContrastivePairs
from modbench.tasks.configs import ClassTaskConfig, PairTaskConfig

LOADERS = {"mnist": load_mnist, "cifar10": load_cifar10}


class ImageTask:
    """Image classification: data from a registered loader, logits as they come, labels as targets."""

    def __init__(self, config: PairTaskConfig | ClassTaskConfig) -> None:
        self.config = config

    def load(self, data_dir: Path | None) -> TaskData:
        if self.config.dataset not in LOADERS:
            raise UserError(f"unknown dataset {self.config.dataset!r} (known: {', '.join(LOADERS)})")
        return LOADERS[self.config.dataset](data_dir)

    def readout(self, output: Tensor) -> Tensor:
        return output

    def targets(self, y: Tensor) -> Tensor:
        return y


class ImagePairTask(ImageTask):
    config: PairTaskConfig

    def contrast(self, data: TaskData, seed: int) -> ContrastivePairs:
        clean_index, corrupted_index = [], []
        for rule, (clean, corrupted) in enumerate(self.config.pairs):
            generator = torch.Generator().manual_seed(seed * 1_000 + rule)
            clean_pool = torch.nonzero(data.y_test == clean).flatten()
            corrupted_pool = torch.nonzero(data.y_test == corrupted).flatten()
            clean_pool = clean_pool[torch.randperm(len(clean_pool), generator=generator)]
            corrupted_pool = corrupted_pool[torch.randperm(len(corrupted_pool), generator=generator)]
            n = min(len(clean_pool), len(corrupted_pool))
            clean_index.append(clean_pool[:n])
            corrupted_index.append(corrupted_pool[:n])
        clean_all, corrupted_all = torch.cat(clean_index), torch.cat(corrupted_index)
        return ContrastivePairs(
            data.x_test[clean_all], data.x_test[corrupted_all], data.y_test[clean_all], data.y_test[corrupted_all]
        )
