"""The in-memory dataset type shared by all image tasks."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor


@dataclass(frozen=True)
class ImageDataset:
    """Train/test tensors plus the name of the source they came from (e.g. ``mnist``, ``mnist-5k``)."""

    source: str
    x_train: Float[Tensor, "n_train d"]
    y_train: Int[Tensor, " n_train"]
    x_test: Float[Tensor, "n_test d"]
    y_test: Int[Tensor, " n_test"]

    def __post_init__(self) -> None:
        if len(self.x_train) != len(self.y_train) or len(self.x_test) != len(self.y_test):
            raise ValueError("inputs and labels differ in length")

    @property
    def n_classes(self) -> int:
        return int(torch.cat([self.y_train, self.y_test]).max()) + 1
