"""Packed training: several models of one architecture (the regimes and seeds of one task) trained in one
process along a model axis, so that small models fill the hardware together instead of one launch-bound
step at a time.

The parameters and buffers of the P models are stacked into tensors with a leading model axis; the forward
and backward of all P models is one ``torch.vmap`` over ``functional_call``, and one AdamW step updates the
stack (AdamW is elementwise, so this is each model's own update). Each model keeps its own ``Parameter``
objects, aliasing its slice of the stack, so every regime hook runs on its model exactly as in the one
training loop (:mod:`modbench.training.trainer`): ``regularizers`` (their gradients reach the aliases and are
added to the model's slice of the stacked gradient), ``after_backward`` (on the slice, through the aliases'
``.grad``), and ``after_step`` (BIMT swaps permute the aliases and, through :class:`_SliceOptimizer`, the
model's slice of the moment buffers). Each model draws its own batches from its own seed. The result equals
training the models one by one (tested in float64), except ``train_time_s``: the pack's time divided by P.
Like the one loop, a pack saves its whole state (stacked weights, optimizer, every batch order, histories)
every ``progress.every`` steps, and a killed pack resumes from it and ends as the uninterrupted pack.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call

from modbench.data.dataset import TaskData
from modbench.errors import TrainingFailed
from modbench.methods.base import Method
from modbench.tasks.base import Task, task_loss
from modbench.training.checkpoint import ProgressFile
from modbench.training.config import TrainConfig
from modbench.training.progress import progress_bar
from modbench.training.trainer import (PrefetchedRows, TrainResult, batches, begin_compiled_step, checkpoints,
                                       compile_requested, compiled, diverged, evaluation_row, probe_memory, result_of)


@dataclass
class Member:
    """One model of a pack, with its regime and its seed (initialisation is the caller's, batches are drawn
    from ``seed`` as in the one loop)."""

    model: nn.Module
    method: Method
    seed: int


def _alias(module: nn.Module, name: str, value: Tensor, parameter: bool, trainable: bool = True) -> None:
    owner, _, leaf = name.rpartition(".")
    target = module.get_submodule(owner) if owner else module
    if parameter:
        target._parameters[leaf] = nn.Parameter(value, requires_grad=trainable)
    else:
        target._buffers[leaf] = value


class _Stack:
    """The pack's stacked parameters and buffers; each member's own tensors become views of its slice.
    Only trainable parameters are optimised (frozen ones are stacked apart, as buffers are), and a parameter
    no member's loss reaches keeps no gradient, so AdamW leaves it alone as it would one by one."""

    def __init__(self, models: list[nn.Module]) -> None:
        first = models[0]
        named = [dict(m.named_parameters()) for m in models]
        if len(list(first.named_parameters(remove_duplicate=False))) != len(named[0]):
            raise ValueError("packed training does not support tied (shared) parameters")
        trainable = {name for name, p in named[0].items() if p.requires_grad}
        self.params = {name: torch.stack([n[name].detach() for n in named]).requires_grad_()
                       for name in named[0] if name in trainable}
        self.frozen = {name: torch.stack([n[name].detach() for n in named]) for name in named[0]
                       if name not in trainable}
        self.buffers = {name: torch.stack([dict(m.named_buffers())[name] for m in models])
                        for name, _ in first.named_buffers()}
        for index, model in enumerate(models):
            for name, stacked in self.params.items():
                _alias(model, name, stacked.detach()[index], parameter=True)
            for name, stacked in self.frozen.items():
                _alias(model, name, stacked[index], parameter=True, trainable=False)
            for name, stacked in self.buffers.items():
                _alias(model, name, stacked[index], parameter=False)
        self.aliases = [{name: p for name, p in m.named_parameters() if name in trainable} for m in models]

    @property
    def tensors(self) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """What ``functional_call`` replaces in the template: (parameters, buffers), each stacked."""
        return self.params | self.frozen, self.buffers

    def gather_grads(self) -> None:
        """Each model's regularizer gradients (on its aliases) join the stacked gradient; the aliases' ``.grad``
        then view the model's slice, where ``after_backward`` adds its terms."""
        for name, stacked in self.params.items():
            if stacked.grad is None:
                if all(aliases[name].grad is None for aliases in self.aliases):
                    continue  # reached by no loss: no gradient, as for one model alone
                stacked.grad = torch.zeros_like(stacked)
            for index, aliases in enumerate(self.aliases):
                alias, mine = aliases[name], stacked.grad[index]
                if alias.grad is not None:
                    mine.add_(alias.grad)
                alias.grad = mine

    def zero_grads(self) -> None:
        for name, stacked in self.params.items():
            stacked.grad = None
            for aliases in self.aliases:
                aliases[name].grad = None


class _SliceOptimizer:
    """What a swap needs of an optimizer (``state[param]``: moment buffers shaped like the parameter), for one
    member: views of its slice of the pack optimizer's state, built when a swap asks for them."""

    def __init__(self, optimizer: torch.optim.Optimizer, stack: _Stack, index: int) -> None:
        self.optimizer, self.stack, self.index = optimizer, stack, index

    @property
    def state(self) -> dict[Tensor, dict[str, Tensor]]:
        out = {}
        for name, stacked in self.stack.params.items():
            state = self.optimizer.state.get(stacked, {})
            out[self.stack.aliases[self.index][name]] = {
                key: value[self.index] for key, value in state.items()
                if isinstance(value, Tensor) and value.shape == stacked.shape}
        return out


def train_packed(members: list[Member], task: Task, data: TaskData, cfg: TrainConfig, device: torch.device,
                 show_progress: bool = True, compile_step: bool | None = None,
                 progress: ProgressFile | None = None) -> list[TrainResult | TrainingFailed]:
    """Train every member in place (``cfg`` with each member's seed); per member, its TrainResult or the
    TrainingFailed that one-by-one training would have raised (the others go on: models never mix).
    ``compile_step`` (default: ``$MODBENCH_COMPILE``): the pack's batched forward and backward run compiled,
    as in ``trainer.train``. ``progress``: the pack's periodic state, saved and resumed as ``trainer.train``
    does for one model (the caller discards it once the members are saved)."""
    compile_step = compile_requested(compile_step)
    models = [member.model.to(device) for member in members]
    saved = progress.load(_stacked_shapes(models)) if progress is not None else None
    peaks = (list(zip(saved["peak"], saved["peak_kind"], strict=True)) if saved is not None else
             [probe_memory(m.model, m.method, task, data, replace(cfg, seed=m.seed), device) for m in members])
    template = copy.deepcopy(models[0])  # before stacking; its tensors are replaced by the stack's in every call
    stack = _Stack(models)
    optimizer = torch.optim.AdamW(list(stack.params.values()), lr=cfg.lr, weight_decay=cfg.weight_decay,
                                  betas=cfg.betas)
    for member in members:
        member.method.setup(member.model, cfg.steps)
    slices = [_SliceOptimizer(optimizer, stack, index) for index in range(len(members))]

    def losses_of(params: dict[str, Tensor], buffers: dict[str, Tensor], x: Tensor, y: Tensor) -> Tensor:
        logits = functional_call(template, (params, buffers), (x,))
        return task_loss(task.readout(logits), task.targets(y), cfg.loss)

    batched_losses = torch.vmap(losses_of)
    if compile_step:
        batched_losses = compiled(batched_losses, device)
    x_train, y_train = data.x_train.to(device), data.y_train.to(device)
    x_test, y_test = data.x_test.to(device), data.y_test.to(device)
    orders = [batches(len(x_train), cfg.batch_size, torch.Generator().manual_seed(m.seed)) for m in members]
    histories: list[list[dict[str, Any]]] = [[] for _ in members]
    failed: dict[int, TrainingFailed] = {}
    first, before = 0, 0.0
    if saved is not None:
        histories, failed, first, before = _restore(saved, stack, optimizer, orders)
    last: list[dict[str, Tensor]] = [{} for _ in members]
    rows_at = PrefetchedRows(lambda: torch.stack([next(order) for order in orders]), device, cfg.steps,
                             progress.every if progress else cfg.steps)
    start = time.perf_counter()
    with progress_bar(cfg.steps, show_progress) as advance:
        advance(first, f"resumed at step {first}" if first else "")
        for step in range(first, cfg.steps):
            rows = rows_at(step)
            if compile_step:
                begin_compiled_step(device)
            task_losses = batched_losses(*stack.tensors, x_train[rows], y_train[rows])
            terms = [m.method.regularizers(m.model, step) for m in members]
            total = task_losses.sum() + sum(value for term in terms for value in term.values())
            stack.zero_grads()
            total.backward()
            stack.gather_grads()
            for member in members:
                member.method.after_backward(member.model, step)
            optimizer.step()
            check, evaluate = checkpoints(step, cfg)
            for index, member in enumerate(members):
                if index in failed:
                    continue
                logged = member.method.after_step(member.model, step + 1, slices[index])
                if not (check or evaluate):
                    continue
                losses = {"task": task_losses[index], **terms[index]}
                losses["total"] = sum(losses.values())
                last[index] = losses
                if check and (failure := diverged(losses["total"], step)):
                    failed[index] = failure
                    continue
                if evaluate:
                    histories[index].append(evaluation_row(member.model, member.method, task, losses, logged, step,
                                                           x_test, y_test))
            if evaluate:
                advance(step + 1, f"{len(members) - len(failed)} of {len(members)} models training")
            if progress is not None and progress.due(step + 1, cfg.steps):
                progress.save({"step": step + 1, "model": stack.params | stack.buffers,
                               "optimizer": optimizer.state_dict(), "order": [o.state_dict() for o in orders],
                               "history": histories, "failed": {str(i): str(e) for i, e in failed.items()},
                               "elapsed": before + time.perf_counter() - start,
                               "peak": [peak for peak, _ in peaks], "peak_kind": [kind for _, kind in peaks]})
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    stack.zero_grads()  # the members keep views of the stack's weights, not of its gradients
    share = (before + time.perf_counter() - start) / len(members)
    return [failed.get(index) or replace(result_of(histories[index], last[index], share, *peaks[index], first),
                                         packed_with=len(members), compiled_step=compile_step)
            for index in range(len(members))]


def _stacked_shapes(models: list[nn.Module]) -> dict[str, Tensor]:
    """What a pack's saved weights must look like (trainable parameters and buffers, a leading model axis),
    as shape-only tensors: a state left by another pack or another version of the model is set aside."""
    first = models[0]
    named = [(n, p) for n, p in first.named_parameters() if p.requires_grad] + list(first.named_buffers())
    return {name: torch.empty((len(models), *value.shape), device="meta") for name, value in named}


def _restore(saved: dict[str, Any], stack: _Stack, optimizer: torch.optim.Optimizer,
             orders: list[Any]) -> tuple[list[list[dict[str, Any]]], dict[int, TrainingFailed], int, float]:
    """Put a saved pack state back in place (the members' tensors are views of the stack, so they follow)."""
    with torch.no_grad():
        for name, stacked in (stack.params | stack.buffers).items():
            stacked.copy_(saved["model"][name])
    optimizer.load_state_dict(saved["optimizer"])
    for order, state in zip(orders, saved["order"], strict=True):
        order.load_state_dict(state)
    failed = {int(index): TrainingFailed(message) for index, message in saved["failed"].items()}
    return saved["history"], failed, int(saved["step"]), float(saved["elapsed"])
