"""The training configuration (no torch here: tasks declare their defaults with it)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

LOSSES = ("mse", "cross_entropy")


@dataclass(frozen=True)
class TrainConfig:
    """Defaults are the BIMT MNIST code: AdamW lr 1e-3, no weight decay, batch 100, 40k steps, MSE,
    test accuracy every 200 steps (here on the whole test split, not 2,000 random test images)."""

    steps: int = 40_000
    batch_size: int = 100
    lr: float = 1e-3
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    loss: Literal["mse", "cross_entropy"] = "mse"
    seed: int = 1
    eval_every: int = 200

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "eval_every", "seed"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise ValueError(f"{name} must be an integer, got {value!r}")
        if self.steps < 1 or self.batch_size < 1 or self.eval_every < 1 or self.seed < 0:
            raise ValueError("steps, batch_size and eval_every must be >= 1 and seed >= 0")
        for name in ("lr", "weight_decay", *()):
            value = getattr(self, name)
            if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number, got {value!r}")
        if self.lr <= 0 or self.weight_decay < 0:
            raise ValueError("lr must be > 0 and weight_decay >= 0")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"betas must be two numbers in [0, 1), got {self.betas!r}")
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}")
