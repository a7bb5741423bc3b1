"""The training configuration (no torch here: tasks declare their defaults with it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from modbench.registry import check_int, check_number

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
        for name in ("steps", "batch_size", "eval_every"):
            check_int(self, name, 1)
        check_int(self, "seed", 0)
        check_number(self, "lr", 0, low_open=True)
        check_number(self, "weight_decay", 0)
        if (not isinstance(self.betas, tuple) or len(self.betas) != 2
                or not all(isinstance(b, int | float) and not isinstance(b, bool) and 0 <= b < 1 for b in self.betas)):
            raise ValueError(f"betas must be two numbers in [0, 1), got {self.betas!r}")
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}")
