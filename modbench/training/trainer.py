"""The one training loop. Regimes plug in through the Method protocol (loss terms, after-step hooks)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from modbench.data.dataset import ImageDataset
from modbench.errors import TrainingFailed
from modbench.methods.base import Method
from modbench.training.memory import PeakMemory
from modbench.training.progress import progress_bar

NAN_CHECK_EVERY = 100


@dataclass(frozen=True)
class TrainConfig:
    """Defaults are the BIMT MNIST code: AdamW lr 1e-3, no weight decay, batch 100, 40k steps, MSE,
    test accuracy every 200 steps (here on the whole test split, not 2,000 random test images)."""

    steps: int = 40_000
    batch_size: int = 100
    lr: float = 1e-3
    weight_decay: float = 0.0
    loss: Literal["mse", "cross_entropy"] = "mse"
    seed: int = 1
    eval_every: int = 200

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1 or self.eval_every < 1:
            raise ValueError("steps, batch_size and eval_every must be >= 1")
        if self.lr <= 0 or self.weight_decay < 0:
            raise ValueError("lr must be > 0 and weight_decay >= 0")
        if self.loss not in ("mse", "cross_entropy"):
            raise ValueError(f"loss must be 'mse' or 'cross_entropy', got {self.loss!r}")


@dataclass
class TrainResult:
    """``test_accuracy`` is at the last step; ``best_test_accuracy`` is the highest seen at any evaluation,
    which is what the BIMT notebook tracks (``best_test_acc``) and, we believe, what its paper reports."""

    test_accuracy: float
    best_test_accuracy: float
    best_step: int
    train_time_s: float
    peak_memory_bytes: int | None
    peak_memory_kind: str
    final_losses: dict[str, float]
    history: list[dict[str, float | int]] = field(default_factory=list)


def task_loss(logits: Tensor, labels: Tensor, kind: str) -> Tensor:
    if kind == "mse":  # the BIMT code: MSE against one-hot targets, mean over batch x classes
        return F.mse_loss(logits, F.one_hot(labels, logits.shape[-1]).to(logits.dtype))
    return F.cross_entropy(logits, labels)


@torch.no_grad()
def accuracy(model: nn.Module, x: Tensor, y: Tensor, batch_size: int = 10_000) -> float:
    correct = sum(
        int((model(x[i : i + batch_size]).argmax(-1) == y[i : i + batch_size]).sum())
        for i in range(0, len(x), batch_size)
    )
    return correct / len(x)


def _batches(n: int, batch_size: int, generator: torch.Generator):
    """Endless shuffled mini-batch indices, reshuffled each epoch."""
    while True:
        order = torch.randperm(n, generator=generator)
        for start in range(0, n - batch_size + 1, batch_size):
            yield order[start : start + batch_size]


def train(
    model: nn.Module,
    method: Method,
    data: ImageDataset,
    cfg: TrainConfig,
    device: torch.device,
    show_progress: bool = True,
) -> TrainResult:
    """Train ``model`` in place. Raises :class:`TrainingFailed` when the loss stops being finite."""
    model.to(device)
    x_train, y_train = data.x_train.to(device), data.y_train.to(device)
    x_test, y_test = data.x_test.to(device), data.y_test.to(device)
    generator = torch.Generator().manual_seed(cfg.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    method.setup(model, cfg.steps)
    history: list[dict[str, float | int]] = []
    losses: dict[str, Tensor] = {}
    batches = _batches(len(x_train), min(cfg.batch_size, len(x_train)), generator)
    start = time.perf_counter()
    with PeakMemory(device) as peak, progress_bar(cfg.steps, show_progress) as advance:
        for step in range(cfg.steps):
            index = next(batches).to(device)
            losses = {"task": task_loss(model(x_train[index]), y_train[index], cfg.loss)}
            losses.update(method.regularizers(model, step))
            total = sum(losses.values())
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            method.after_backward(model, step)
            optimizer.step()
            logged = method.after_step(model, step + 1, optimizer)
            done = step + 1 == cfg.steps
            # NaN/inf spreads into the weights, so checking every 100 steps misses nothing and avoids a
            # device sync per step.
            if ((step + 1) % NAN_CHECK_EVERY == 0 or done) and not torch.isfinite(total):
                raise TrainingFailed(f"loss became {float(total.detach())} by step {step + 1}; run failed")
            if (step + 1) % cfg.eval_every == 0 or done:
                row = {"step": step + 1, **{k: float(v.detach()) for k, v in losses.items()}, **logged,
                       **method.metrics(model, step + 1)}
                row["test_accuracy"] = accuracy(model, x_test, y_test)
                history.append(row)
                advance(step + 1, f"loss {float(total.detach()):.4f} acc {row['test_accuracy']:.4f}")
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    elapsed = time.perf_counter() - start
    best = max(history, key=lambda row: row["test_accuracy"])
    return TrainResult(
        test_accuracy=history[-1]["test_accuracy"],
        best_test_accuracy=best["test_accuracy"],
        best_step=int(best["step"]),
        train_time_s=elapsed,
        peak_memory_bytes=peak.bytes,
        peak_memory_kind=peak.kind,
        final_losses={k: float(v.detach()) for k, v in losses.items()},
        history=history,
    )
