"""The task protocol (implementation side) and contrastive pairs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int, Shaped
from torch import Tensor, nn

from modbench.data.dataset import TaskData


@dataclass(frozen=True)
class ContrastivePairs:
    """Clean and corrupted inputs, row by row, with their labels (any input dtype)."""

    clean: Shaped[Tensor, "pairs *input"]
    corrupted: Shaped[Tensor, "pairs *input"]
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


@runtime_checkable
class Task(Protocol):
    """What the runner, trainer and discoverers ask of a task. ``config`` is its frozen declaration
    (``model``, ``metric``, ``discoverer``, ``quality_floor``, ``train`` and ``steps_for(source)``).

    Optional: ``figures(model, stem, title) -> list[Path]``, task-specific figures saved with each run
    (files named ``stem`` plus a suffix), e.g. modular addition's Fourier norms. ``for_model(model_config)
    -> Task``, the task as that model needs it (e.g. with a pretrained model's tokenizer); ``evaluate(model,
    data) -> {metric: summary}``, held-out metrics of its own for the record (e.g. perplexity);
    ``eval_batch_size``, inputs per evaluation forward when one input yields many read-out rows."""

    config: Any

    def load(self, data_dir: Path | None) -> TaskData:
        """The task's data; an explicit ``data_dir`` that lacks it is a ``UserError``."""

    def readout(self, output: Tensor) -> Float[Tensor, "n classes"]:
        """Model output -> per-example class logits (e.g. the last position of a sequence)."""

    def targets(self, y: Tensor) -> Int[Tensor, " n"]:
        """Labels aligned with ``readout`` rows."""

    def contrast(self, data: TaskData, seed: int) -> ContrastivePairs:
        """Clean/corrupted pairs for patching, deterministic given the seed."""


def task_loss(logits: Float[Tensor, "n c"], targets: Int[Tensor, " n"], kind: str) -> Tensor:
    if kind == "mse":  # the BIMT code: MSE against one-hot targets, mean over batch x classes
        return F.mse_loss(logits, F.one_hot(targets, logits.shape[-1]).to(logits.dtype))
    return F.cross_entropy(logits, targets)


@torch.no_grad()
def accuracy(model: nn.Module, task: Task, x: Tensor, y: Tensor, batch_size: int | None = None) -> float:
    batch_size = batch_size or getattr(task, "eval_batch_size", 10_000)
    correct = total = 0
    for i in range(0, len(x), batch_size):
        targets = task.targets(y[i : i + batch_size])
        correct += int((task.readout(model(x[i : i + batch_size])).argmax(-1) == targets).sum())
        total += len(targets)
    return correct / max(total, 1)
