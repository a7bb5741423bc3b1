"""The one training loop. Regimes plug in through the Method protocol (loss terms, after-step hooks);
tasks through read-out and targets, so images, token sequences and per-position targets train alike."""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from modbench.data.dataset import TaskData
from modbench.errors import TrainingFailed
from modbench.methods.base import Method
from modbench.tasks.base import Task, accuracy, task_loss
from modbench.training.config import TrainConfig
from modbench.training.memory import PROBE_STEPS, peak_bytes
from modbench.training.progress import progress_bar

NAN_CHECK_EVERY = 100


@dataclass
class TrainResult:
    """``test_accuracy`` is at the last step; ``best_test_accuracy`` is the highest seen at any evaluation,
    which is what the BIMT notebook tracks (``best_test_acc``) and, we believe, what its paper reports.
    ``peak_memory_bytes`` covers training steps only (see ``memory.py``)."""

    test_accuracy: float
    best_test_accuracy: float
    best_step: int
    train_time_s: float
    peak_memory_bytes: int
    peak_memory_kind: str
    final_losses: dict[str, float]
    history: list[dict[str, float | int]] = field(default_factory=list)


def batches(n: int, batch_size: int, generator: torch.Generator) -> Iterator[Tensor]:
    """Endless shuffled mini-batch indices, reshuffled each epoch (full batch when batch_size >= n)."""
    batch_size = min(batch_size, n)
    while True:
        order = torch.randperm(n, generator=generator)
        for start in range(0, n - batch_size + 1, batch_size):
            yield order[start : start + batch_size]


class Stepper:
    """One optimisation step: task loss + regime terms, backward, regime gradient, optimizer, after-step."""

    def __init__(self, model: nn.Module, method: Method, task: Task, cfg: TrainConfig, total_steps: int) -> None:
        self.model, self.method, self.task, self.cfg = model, method, task, cfg
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay,
                                           betas=cfg.betas)
        method.setup(model, total_steps)

    def __call__(self, x: Tensor, y: Tensor, step: int) -> tuple[dict[str, Tensor], dict[str, float]]:
        losses = {"task": task_loss(self.task.readout(self.model(x)), self.task.targets(y), self.cfg.loss)}
        losses.update(self.method.regularizers(self.model, step))
        total = sum(losses.values())
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        self.method.after_backward(self.model, step)
        self.optimizer.step()
        losses["total"] = total
        return losses, self.method.after_step(self.model, step + 1, self.optimizer)


def probe_memory(model: nn.Module, method: Method, task: Task, data: TaskData, cfg: TrainConfig,
                 device: torch.device) -> tuple[int, str]:
    x, y = data.x_train.to(device), data.y_train.to(device)
    generator = torch.Generator().manual_seed(cfg.seed + 1)
    steps = min(PROBE_STEPS, cfg.steps)

    def work() -> None:
        stepper = Stepper(copy.deepcopy(model), copy.deepcopy(method), task, cfg, cfg.steps)
        index = batches(len(x), cfg.batch_size, generator)
        for step in range(cfg.steps - steps, cfg.steps):
            rows = next(index).to(device)
            stepper(x[rows], y[rows], step)

    return peak_bytes(work, device)


def train(
    model: nn.Module,
    method: Method,
    task: Task,
    data: TaskData,
    cfg: TrainConfig,
    device: torch.device,
    show_progress: bool = True,
) -> TrainResult:
    """Train ``model`` in place. Raises :class:`TrainingFailed` when the loss stops being finite."""
    model.to(device)
    peak, peak_kind = probe_memory(model, method, task, data, cfg, device)
    x_train, y_train = data.x_train.to(device), data.y_train.to(device)
    x_test, y_test = data.x_test.to(device), data.y_test.to(device)
    stepper = Stepper(model, method, task, cfg, cfg.steps)
    index = batches(len(x_train), cfg.batch_size, torch.Generator().manual_seed(cfg.seed))
    history: list[dict[str, float | int]] = []
    losses: dict[str, Tensor] = {}
    start = time.perf_counter()
    with progress_bar(cfg.steps, show_progress) as advance:
        for step in range(cfg.steps):
            rows = next(index).to(device)
            losses, logged = stepper(x_train[rows], y_train[rows], step)
            done = step + 1 == cfg.steps
            # NaN/inf spreads into the weights, so checking every 100 steps misses nothing and avoids a
            # device sync per step.
            total = losses["total"]
            if ((step + 1) % NAN_CHECK_EVERY == 0 or done) and not torch.isfinite(total):
                raise TrainingFailed(f"loss became {float(total.detach())} by step {step + 1}; run failed")
            if (step + 1) % cfg.eval_every == 0 or done:
                row = {"step": step + 1, **{k: float(v.detach()) for k, v in losses.items()}, **logged,
                       **method.metrics(model, step + 1)}
                row["test_accuracy"] = accuracy(model, task, x_test, y_test)
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
        peak_memory_bytes=peak,
        peak_memory_kind=peak_kind,
        final_losses={k: float(v.detach()) for k, v in losses.items()},
        history=history,
    )
