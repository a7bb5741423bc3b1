"""The in-memory split every task hands to the trainer: inputs of any dtype (float images, int tokens)."""

from __future__ import annotations

from dataclasses import dataclass

from jaxtyping import Shaped
from torch import Tensor


@dataclass(frozen=True)
class TaskData:
    """Train/test tensors plus the name of the source they came from (``mnist``, ``mnist-5k``, ...).

    ``note`` says anything a reader of a result must know about the data (e.g. a split substitution).
    """

    source: str
    x_train: Shaped[Tensor, "n_train *input"]
    y_train: Shaped[Tensor, "n_train *target"]
    x_test: Shaped[Tensor, "n_test *input"]
    y_test: Shaped[Tensor, "n_test *target"]
    note: str = ""

    def __post_init__(self) -> None:
        if len(self.x_train) != len(self.y_train) or len(self.x_test) != len(self.y_test):
            raise ValueError("inputs and labels differ in length")
