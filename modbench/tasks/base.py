"""Pair tasks: which digits are clean and which corrupted, and how pairs are formed.

Pair rule (Nainani gives none): for each rule (clean digit c <- corrupted digit k), the test-split images
of c and of k are each shuffled by a generator seeded with (seed, rule index) and zipped; the longer list
is cut. Rules are independent, so a corrupted digit shared by two rules (9 in 4<-9 and 7<-9) may appear
in both. The result is deterministic given the seed and the data source.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor

from modbench.data.dataset import ImageDataset
from modbench.registry import Registry


@dataclass(frozen=True)
class ContrastivePairs:
    clean: Float[Tensor, "pairs d"]
    corrupted: Float[Tensor, "pairs d"]
    clean_labels: Int[Tensor, " pairs"]
    corrupted_labels: Int[Tensor, " pairs"]

    def __len__(self) -> int:
        return len(self.clean)

    def select(self, index: Int[Tensor, " m"]) -> ContrastivePairs:
        return ContrastivePairs(
            self.clean[index], self.corrupted[index], self.clean_labels[index], self.corrupted_labels[index]
        )

    def to(self, device: torch.device) -> ContrastivePairs:
        return ContrastivePairs(*(t.to(device) for t in (self.clean, self.corrupted, self.clean_labels,
                                                         self.corrupted_labels)))


@dataclass(frozen=True)
class PairTask:
    """A task declaration. ``pairs`` holds (clean class, corrupted class) rules."""

    key: str
    summary: str
    pairs: tuple[tuple[int, int], ...]
    dataset: str = "mnist"
    model: str = "mnist_mlp"
    metric: str = "logit_difference"
    discoverer: str = "activation_patching"

    def __post_init__(self) -> None:
        if not self.pairs:
            raise ValueError(f"task {self.key!r} declares no pairs")
        for clean, corrupted in self.pairs:
            if clean == corrupted or min(clean, corrupted) < 0:
                raise ValueError(f"task {self.key!r}: bad pair rule {clean} <- {corrupted}")

    def make_pairs(self, data: ImageDataset, seed: int) -> ContrastivePairs:
        clean_index, corrupted_index = [], []
        for rule, (clean, corrupted) in enumerate(self.pairs):
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


TASKS: Registry[PairTask] = Registry("task")


def register_task(task: PairTask) -> PairTask:
    TASKS.add(task.key, task)
    return task
