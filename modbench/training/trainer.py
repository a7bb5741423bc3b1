"""The one training loop. Regimes plug in through the Method protocol (loss terms, after-step hooks);
tasks through read-out and targets, so images, token sequences and per-position targets train alike."""

from __future__ import annotations

import copy
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import Tensor, nn

from modbench.data.dataset import TaskData
from modbench.errors import TrainingFailed
from modbench.methods.base import Method
from modbench.tasks.base import Task, accuracy, task_loss
from modbench.training.checkpoint import ProgressFile
from modbench.training.config import TrainConfig
from modbench.training.memory import PROBE_STEPS, peak_bytes
from modbench.training.progress import progress_bar

NAN_CHECK_EVERY = 100
COMPILE_ENV = "MODBENCH_COMPILE"  # "1": compiled training steps (a runtime option, never part of a config)
PREFETCH_STEPS = 256  # batch rows copied to the device in one transfer, at most this many steps ahead


@dataclass
class TrainResult:
    """``test_accuracy`` is at the last step; ``best_test_accuracy`` is the highest seen at any evaluation,
    which is what the BIMT notebook tracks (``best_test_acc``) and, we believe, what its paper reports.
    ``peak_memory_bytes`` covers training steps only (see ``memory.py``). ``resumed_from_step`` > 0: the run
    was killed and continued from its periodic progress file (``train_time_s`` adds the segments)."""

    test_accuracy: float
    best_test_accuracy: float
    best_step: int
    train_time_s: float
    peak_memory_bytes: int
    peak_memory_kind: str
    final_losses: dict[str, float]
    history: list[dict[str, float | int]] = field(default_factory=list)
    resumed_from_step: int = 0
    packed_with: int = 1  # > 1: trained in a pack of that many models; train_time_s is the pack's share
    compiled_step: bool = False  # the forward/backward ran compiled (``compile_requested``): equal up to rounding


class BatchOrder:
    """Endless shuffled mini-batch indices, reshuffled each epoch (full batch when batch_size >= n), with a
    state that a resumed run restores, so that it draws the batches the uninterrupted run would have."""

    def __init__(self, n: int, batch_size: int, generator: torch.Generator) -> None:
        self.n, self.batch_size, self.generator = n, min(batch_size, n), generator
        self.order: Tensor | None = None
        self.position = 0

    def __iter__(self) -> BatchOrder:
        return self

    def __next__(self) -> Tensor:
        if self.order is None or self.position + self.batch_size > self.n:
            self.order, self.position = torch.randperm(self.n, generator=self.generator), 0
        rows = self.order[self.position : self.position + self.batch_size]
        self.position += self.batch_size
        return rows

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state(), "order": self.order, "position": self.position}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])
        self.order, self.position = state["order"], int(state["position"])


def batches(n: int, batch_size: int, generator: torch.Generator) -> BatchOrder:
    return BatchOrder(n, batch_size, generator)


class PrefetchedRows:
    """Each step's batch rows, drawn in order from ``draw`` a chunk of steps at a time and copied to the device
    in one transfer, so a step makes no host-to-device copy. A chunk never crosses a multiple of ``every``
    (where a progress save reads the batch order's state): the draws, hence the batches, are the per-step ones."""

    def __init__(self, draw: Callable[[], Tensor], device: torch.device, end: int, every: int) -> None:
        self.draw, self.device, self.end, self.every = draw, device, end, every
        self.start, self.rows = 0, torch.empty(0)

    def __call__(self, step: int) -> Tensor:
        if not self.start <= step < self.start + len(self.rows):
            stop = min(self.end, (step // self.every + 1) * self.every, step + PREFETCH_STEPS)
            self.start, self.rows = step, torch.stack([self.draw() for _ in range(step, stop)]).to(self.device)
        return self.rows[step - self.start]


def compile_requested(compile_step: bool | None) -> bool:
    """The runtime switch for compiled training steps: the argument, else ``$MODBENCH_COMPILE=1``."""
    return os.environ.get(COMPILE_ENV, "") == "1" if compile_step is None else compile_step


def compiled(fn: Callable[..., Tensor], device: torch.device) -> Callable[..., Tensor]:
    """``fn`` (a forward and its loss; AOTAutograd compiles its backward with it) under ``torch.compile``:
    CUDA graphs (mode ``reduce-overhead``) on CUDA, where a small model's step is launch-bound; inductor's
    C++ kernels on CPU. The same operations, fused: results equal eager's up to rounding (tests). The optimizer
    step stays eager: compiled AdamW computes its bias corrections from float32 step tensors (1 - 0.999 loses
    ~1e-5 of its value at step 1), which would move the weights by far more than rounding."""
    return torch.compile(fn, mode="reduce-overhead" if device.type == "cuda" else None, dynamic=False)


def begin_compiled_step(device: torch.device) -> None:
    """Tell CUDA-graph trees that the last step's outputs are dead, so the next replay may reuse them."""
    if device.type == "cuda":
        torch.compiler.cudagraph_mark_step_begin()


class Stepper:
    """One optimisation step: task loss + regime terms, backward, regime gradient, optimizer, after-step."""

    def __init__(self, model: nn.Module, method: Method, task: Task, cfg: TrainConfig, total_steps: int,
                 compile_step: bool = False) -> None:
        self.model, self.method, self.task, self.cfg = model, method, task, cfg
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay,
                                           betas=cfg.betas)
        method.setup(model, total_steps)
        self.device = next(model.parameters()).device
        self.compile_step = compile_step
        self.task_loss = compiled(self.eager_task_loss, self.device) if compile_step else self.eager_task_loss

    def eager_task_loss(self, x: Tensor, y: Tensor) -> Tensor:
        return task_loss(self.task.readout(self.model(x)), self.task.targets(y), self.cfg.loss)

    def __call__(self, x: Tensor, y: Tensor, step: int) -> tuple[dict[str, Tensor], dict[str, float]]:
        if self.compile_step:
            begin_compiled_step(self.device)
        losses = {"task": self.task_loss(x, y)}
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
    steps = min(PROBE_STEPS, cfg.steps)

    def work(count: int = steps) -> None:
        generator = torch.Generator().manual_seed(cfg.seed + 1)
        stepper = Stepper(copy.deepcopy(model), copy.deepcopy(method), task, cfg, cfg.steps)
        index = batches(len(x), cfg.batch_size, generator)
        for step in range(cfg.steps - count, cfg.steps):
            rows = next(index).to(device)
            stepper(x[rows], y[rows], step)

    if device.type == "cuda":
        # One step first, unmeasured: cuBLAS allocates its workspaces through the caching allocator at a
        # process's first matrix products, the same tens of MiB for every regime, which is not the regime's.
        work(1)
    return peak_bytes(work, device)


def train(
    model: nn.Module,
    method: Method,
    task: Task,
    data: TaskData,
    cfg: TrainConfig,
    device: torch.device,
    show_progress: bool = True,
    progress: ProgressFile | None = None,
    compile_step: bool | None = None,
) -> TrainResult:
    """Train ``model`` in place. Raises :class:`TrainingFailed` when the loss stops being finite.

    With ``progress``, the whole training state (weights, optimizer moments, batch order, history, time) is
    saved every ``progress.every`` steps, and a run that finds a saved state continues from it: the result
    equals the uninterrupted run's (same batches, same swaps, same weights). ``compile_step`` (default:
    ``compile_requested``) runs each step's forward and backward compiled (``compiled``). Either way the data
    is on the device once, batch rows arrive in chunks (``PrefetchedRows``), and the host waits for the device
    only at loss checks (every NAN_CHECK_EVERY steps), evaluations and BIMT swaps, never at every step."""
    compile_step = compile_requested(compile_step)
    model.to(device)
    x_train, y_train = data.x_train.to(device), data.y_train.to(device)
    x_test, y_test = data.x_test.to(device), data.y_test.to(device)
    saved = progress.load(model.state_dict()) if progress is not None else None
    if saved is None:
        peak, peak_kind = probe_memory(model, method, task, data, cfg, device)
    stepper = Stepper(model, method, task, cfg, cfg.steps, compile_step)
    index = batches(len(x_train), cfg.batch_size, torch.Generator().manual_seed(cfg.seed))
    history: list[dict[str, float | int]] = []
    first, before = 0, 0.0
    if saved is not None:
        model.load_state_dict(saved["model"])
        stepper.optimizer.load_state_dict(saved["optimizer"])
        index.load_state_dict(saved["order"])
        history, first, before = saved["history"], saved["step"], saved["elapsed"]
        peak, peak_kind = saved["peak"], saved["peak_kind"]
    losses: dict[str, Tensor] = {}
    rows_at = PrefetchedRows(lambda: next(index), device, cfg.steps, progress.every if progress else cfg.steps)
    start = time.perf_counter()
    with progress_bar(cfg.steps, show_progress) as advance:
        advance(first, f"resumed at step {first}" if first else "")
        for step in range(first, cfg.steps):
            rows = rows_at(step)
            losses, logged = stepper(x_train[rows], y_train[rows], step)
            check, evaluate = checkpoints(step, cfg)
            if check and (failure := diverged(losses["total"], step)):
                raise failure
            if evaluate:
                history.append(evaluation_row(model, method, task, losses, logged, step, x_test, y_test))
                advance(step + 1, f"loss {history[-1]['total']:.4f} acc {history[-1]['test_accuracy']:.4f}")
            if progress is not None and progress.due(step + 1, cfg.steps):
                progress.save({"step": step + 1, "model": model.state_dict(),
                               "optimizer": stepper.optimizer.state_dict(), "order": index.state_dict(),
                               "history": history, "elapsed": before + time.perf_counter() - start,
                               "peak": peak, "peak_kind": peak_kind})
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    elapsed = before + time.perf_counter() - start
    return replace(result_of(history, losses, elapsed, peak, peak_kind, first), compiled_step=compile_step)


def checkpoints(step: int, cfg: TrainConfig) -> tuple[bool, bool]:
    """After step ``step`` (0-based): whether to check that the loss is finite, and whether to evaluate.
    NaN/inf spreads into the weights, so checking every 100 steps misses nothing and spares a device sync
    per step."""
    done = step + 1 == cfg.steps
    return (step + 1) % NAN_CHECK_EVERY == 0 or done, (step + 1) % cfg.eval_every == 0 or done


def diverged(total: Tensor, step: int) -> TrainingFailed | None:
    if torch.isfinite(total):
        return None
    return TrainingFailed(f"loss became {float(total.detach())} by step {step + 1}; run failed")


def evaluation_row(model: nn.Module, method: Method, task: Task, losses: dict[str, Tensor],
                   logged: dict[str, float], step: int, x_test: Tensor, y_test: Tensor) -> dict[str, float | int]:
    """One history row after step ``step`` (0-based): losses, what the regime logged, its metrics, test accuracy."""
    row = {"step": step + 1, **{k: float(v.detach()) for k, v in losses.items()}, **logged,
           **method.metrics(model, step + 1)}
    row["test_accuracy"] = accuracy(model, task, x_test, y_test)
    return row


def result_of(history: list[dict[str, float | int]], losses: dict[str, Tensor], elapsed: float, peak: int,
              peak_kind: str, resumed_from_step: int = 0) -> TrainResult:
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
        resumed_from_step=resumed_from_step,
    )
