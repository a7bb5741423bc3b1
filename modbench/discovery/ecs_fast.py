"""The fast, exact effective-circuit-size search (see ``ecs.py`` for the procedure and the design): cached
layer inputs, column updates pushed through the rest of the network, speculative batched blocks, and the
reference's own arithmetic for near-ties, so the masks equal :func:`modbench.discovery.ecs.ecs_reference`'s."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from modbench.discovery.ecs import _inputs, _loss, _needed, _param_names, _working_copy
from modbench.discovery.ecs_tails import MAX_ROWS, _layout, _owner, _tail
from modbench.models.base import class_order

TOL_ULPS = 2.0  # the band, in machine epsilons of the rounding scale (see _tolerance)


def _capture(model: nn.Module, x: Tensor, module: nn.Module, output: bool) -> Tensor:
    """The input (or output) of ``module`` in a forward of ``x``; it must run exactly once."""
    seen: list[Tensor] = []
    if output:
        handle = module.register_forward_hook(lambda mod, args, out: seen.append(out))
    else:
        handle = module.register_forward_pre_hook(lambda mod, args: seen.append(args[0]))
    try:
        model(x)
    finally:
        handle.remove()
    if len(seen) != 1 or seen[0].dim() != 2 or seen[0].shape[0] != len(x):
        raise ValueError("ECS needs each pruned Linear applied once per forward to an (images, features) input")
    return seen[0]


def _layer_input(model: nn.Module, name: str, module: nn.Linear, x: Tensor) -> Tensor:
    """Layer L's input in a forward of ``x``: what enters the module, or for the modbench layout's read-out
    (which the forward may apply as a permuted matrix rather than as the module) the last block's output."""
    if name == "unembed.weight" and _layout(model, name) is not None:
        return _capture(model, x, model.blocks[-1].mlp.hook_post, output=True)
    return _capture(model, x, module, output=False)


def _lean_logits(model: nn.Module, name: str, x: Tensor, x_in: Tensor) -> list[Callable[[], Tensor]]:
    """For the modbench layout: ways to recompute the forward's logits from block L on, skipping the layers
    below it: the block modules applied to the cached input (then the slot permutation), or the model's own
    ``run_from``. The caller keeps the first one whose logits equal the full forward's bit for bit."""
    layer = _layout(model, name)
    if layer is None:
        return []
    blocks, unembed, slots = model.blocks, model.unembed, class_order(model.output_order)
    steps: list[nn.Module] = []
    for j in range(layer, len(blocks)):
        steps += [blocks[j].mlp.linear, blocks[j].mlp.act]
    steps.append(unembed)

    def modules() -> Tensor:
        h = x_in
        for step in steps:
            h = step(h)
        return h[:, slots]

    if layer == len(blocks):
        hook = f"blocks.{layer - 1}.mlp.hook_pre"
        value = _capture(model, x, blocks[layer - 1].mlp.hook_pre, output=True)
        return [modules, lambda: model.run_from(hook, value)]
    linear, hook = blocks[layer].mlp.linear, f"blocks.{layer}.mlp.hook_pre"
    return [modules, lambda: model.run_from(hook, linear(x_in))]


def _tolerance(logits: Tensor, base: Tensor, label: int) -> float:
    """Half-width of the band where a batched estimate cannot call a decision: TOL_ULPS machine epsilons of
    the reference's own rounding scale, log2(n) |base| (its cascade sum of n per-image CEs) plus
    mean_r sum_c |p_rc - y_rc| |logit_rc| (logit rounding, weighted by each logit's pull on the CE). The
    largest |estimate - reference| seen is reported as ``stats['max_error_over_tol']`` (well below 1)."""
    pull = logits.softmax(-1)
    pull[:, label] -= 1
    scale = max(1.0, math.log2(len(logits))) * abs(float(base)) + float((pull.abs() * logits.abs()).sum(-1).mean())
    return TOL_ULPS * torch.finfo(logits.dtype).eps * scale


class _LayerPruner:
    """Sequential pruning of one Linear weight (row-major), exactly as the reference decides it."""

    def __init__(self, run: _FastRun, name: str) -> None:
        self.run = run
        self.param = run.params[name]
        self.flat = self.param.view(-1)
        self.module = _owner(run.work, name)
        self.x_in = _layer_input(run.work, name, self.module, run.x)
        self.tail = _tail(run.work, name, run.x, run.label)
        # the reference's loss of the current state, bit for bit: the full forward, or a shorter path whose
        # logits equal it bit for bit (the same operations from layer L on)
        self.exact = partial(_loss, run.work, run.x, run.target)
        logits = run.work(run.x)
        for lean in _lean_logits(run.work, name, run.x, self.x_in):
            if torch.equal(lean(), logits):
                self.exact = partial(lambda lean: F.cross_entropy(lean(), run.target), lean)
                run.stats["exact_from_layer"] += 1
                break
        run.exact = self.exact
        self.pre = self.module(self.x_in)
        self.tail.set_state(self.pre)
        self.n_in = self.param.shape[1]
        self.keep = torch.zeros(self.flat.numel(), dtype=torch.bool)

    def refresh(self, row: int) -> None:
        """Recompute output column ``row`` after its weights changed, and the tail's cached state."""
        bias = self.module.bias[row] if self.module.bias is not None else 0
        self.pre[:, row] = self.x_in @ self.param[row] + bias
        self.tail.set_state(self.pre)

    def decide_nulls(self, stop: int) -> None:
        """Null weights before flat index ``stop``: their removal leaves the forward bit-identical, so the
        reference's loss is the current state's loss."""
        start = self.next_flat
        if stop > start:
            keep = self.run.state_needed()
            self.keep[start:stop] = keep
            if not keep:
                self.flat[start:stop] = 0  # only null weights lie between two effective candidates
        self.next_flat = max(stop, start)

    def prune(self) -> Tensor:
        run = self.run
        cols_zero = (self.x_in == 0).all(0)
        weights = self.flat.clone()
        null = (weights == 0) | cols_zero.repeat(self.param.shape[0])
        effective = torch.nonzero(~null).flatten()
        run.stats["null"] += int(null.sum())
        run.stats["effective"] += len(effective)
        self.next_flat = 0
        delta_est = torch.zeros(len(effective), dtype=torch.float64)
        limit = max(1, min(run.block, MAX_ROWS // len(run.x)))
        window = min(limit, 32)
        row_ends = torch.searchsorted(effective // self.n_in, torch.arange(1, self.param.shape[0] + 1))
        p, row = 0, -1
        while p < len(effective):  # windows never straddle two rows: one output column changes
            if int(effective[p]) // self.n_in != row:
                row = int(effective[p]) // self.n_in
                end = int(row_ends[row])
                bias = 0.0 if self.module.bias is None else abs(float(self.module.bias[row]))
                bound = float((self.x_in.abs().double() @ weights.view(self.param.shape)[row].abs().double()).max())
                self.tail.begin_row(row, bound + bias)
                # first-order predictions of the row's removals in the current state: -w x_in[:, i] . dL/dpre_o
                slope = self.tail.gradient(self.pre)[:, row]
                index = effective[p:end].to(self.x_in.device)
                delta_est[p:end] = (-weights[index] * (slope @ self.x_in[:, index % self.n_in])).double().cpu()
            size = min(window, end - p)
            committed = self._pass(effective[p:p + size], weights, delta_est[p:p + size])
            p += committed
            # a pass costs a fixed overhead plus a little per candidate: grow fast, shrink gently
            if committed < size:
                window = min(window, max(32, 2 * committed))
            elif size == window:
                window = min(limit, 2 * window)
        self.decide_nulls(self.flat.numel())
        return self.keep.view(self.param.shape)

    def _pass(self, index: Tensor, weights: Tensor, delta_est: Tensor) -> int:
        """One batched pass over effective candidates ``index``; commits the exact prefix; returns its length."""
        run = self.run
        run.stats["passes"] += 1
        run.stats["evaluations"] += len(index)
        size = len(index)
        # predicted decisions: additive simulation from the last measured marginal effects
        predicted, level = [], run.state_loss
        for delta in delta_est.tolist():
            prune = level + delta - run.base_value <= run.threshold
            predicted.append(prune)
            if prune:
                level += delta
        prune_mask = torch.tensor(predicted, dtype=torch.bool)
        device, n = self.pre.device, len(run.x)
        col, ins = int(index[0]) // self.n_in, (index % self.n_in).to(device)
        pruned = prune_mask.to(device=device, dtype=torch.float64)[:, None]
        # (B, n), float64: each removal's own change of column col, and the predicted removals before j
        own = -weights[index.to(device)].double()[:, None] * self.x_in[:, ins].T.double()
        before = (own * pruned).cumsum(0) - own * pruned
        state = self.pre[:, col].double() + before  # column col in state j
        removed = state + own  # ... and with candidate j removed too
        # marginal effect of each candidate, summed over the (candidate, image) pairs it changes
        pairs = torch.nonzero(self.tail.differs(state, removed).T)  # (image, candidate), sorted by image
        image, cand = pairs[:, 0], pairs[:, 1]
        marginal = torch.zeros(size, dtype=torch.float64, device=device)
        state_ce = self.tail.state_ce(col)
        if len(pairs):
            ce_removed = self.tail.pair_ce(col, image, removed[cand, image])
            # the image's CE in state j: its pair of the last predicted removal before j, else its CE in S
            updates = torch.where(prune_mask.to(device)[cand], torch.arange(len(pairs), device=device), -1)
            last = torch.cat([updates.new_full((1,), -1), updates.cummax(0).values[:-1]])
            same_image = last >= torch.searchsorted(image, image)
            ce_state = torch.where(same_image, ce_removed[last.clamp(min=0)], state_ce[image])
            marginal.index_add_(0, cand, ce_removed.double() - ce_state.double())
        marginal = (marginal / n).cpu()
        taken = marginal * prune_mask
        start = float(state_ce.double().mean())
        estimates = start + taken.cumsum(0) - taken + marginal  # loss of state j minus candidate j
        delta_est.copy_(marginal)
        diff = estimates - run.base_value
        certain_keep = diff > run.threshold + run.tol
        certain_prune = diff <= run.threshold - run.tol
        agree = (certain_keep & ~prune_mask) | (certain_prune & prune_mask)
        changed = False
        j = 0
        while j < size:
            stops = torch.nonzero(~agree[j:]).flatten()
            stop = j + int(stops[0]) if len(stops) else size
            self._commit_run(index[j:stop], prune_mask[j:stop], estimates[j:stop])  # as predicted: exact
            changed = changed or bool(prune_mask[j:stop].any())
            if stop == size:
                j = size
                break
            k = int(index[stop])
            if certain_keep[stop] or certain_prune[stop]:  # a certain decision against the prediction: exact too
                prune = bool(certain_prune[stop])
                self._commit(k, prune=prune, loss=float(estimates[stop]), exact=None)
                matched = False
            else:  # too close to call: the reference's own forward on the exact state
                self.decide_nulls(k)
                self.flat[k] = 0
                loss = self.exact()
                run.stats["exact_forwards"] += 1
                run.note_error(float(estimates[stop]), float(loss))
                prune = not _needed(loss, run.base, run.threshold)
                self.flat[k] = weights[k]
                self._commit(k, prune=prune, loss=float(loss), exact=loss)
                matched = prune == bool(prune_mask[stop])
            changed = changed or prune
            j = stop + 1
            if not matched:
                break
        if changed:
            self.refresh(col)
        return j

    def _commit(self, k: int, prune: bool, loss: float, exact: Tensor | None) -> None:
        self.decide_nulls(k)
        self.keep[k] = not prune
        if prune:
            self.flat[k] = 0
            self.run.set_state(loss, exact)
        self.next_flat = k + 1

    def _commit_run(self, index: Tensor, prune: Tensor, estimates: Tensor) -> None:
        """Commit effective candidates ``index`` whose evaluated decisions matched their predictions (so were
        made on the exact states), with the null weights before each, in a few tensor operations."""
        run = self.run
        size = len(index)
        if size == 0:
            return
        positions = torch.arange(self.next_flat, int(index[-1]) + 1)
        owner = torch.searchsorted(index, positions)  # the effective candidate at or after each position
        gap = torch.bincount(owner, minlength=size) > 1  # null weights lie before candidate t
        # state loss before candidate t: the last predicted removal before it, else the current state
        last = torch.where(prune, torch.arange(size), -1).cummax(0).values
        last = torch.cat([torch.tensor([-1]), last[:-1]])
        level = torch.where(last >= 0, estimates[last.clamp(min=0)], run.state_loss)
        moved = last >= 0
        diff = level - run.base_value
        close = moved & gap & (diff > run.threshold - run.tol) & (diff <= run.threshold + run.tol)
        if bool(close.any()):  # a state loss too close to call for null weights: one at a time, exactly
            for t in range(size):
                self._commit(int(index[t]), prune=bool(prune[t]), loss=float(estimates[t]), exact=None)
            return
        gap_keep = diff > run.threshold
        if bool((gap & ~moved).any()):
            gap_keep[~moved] = run.state_needed()
        is_own = index[owner] == positions
        keep = torch.where(is_own, ~prune[owner], gap_keep[owner])
        self.keep[positions] = keep
        self.flat[positions[~keep].to(self.flat.device)] = 0
        self.next_flat = int(index[-1]) + 1
        if bool(prune.any()):
            t = int(last[-1]) if not bool(prune[-1]) else size - 1
            run.set_state(float(estimates[t]), None)


class _FastRun:
    def __init__(self, model: nn.Module, x: Tensor, label: int, threshold: float, block: int) -> None:
        self.work = _working_copy(model)
        self.params = dict(self.work.named_parameters())
        self.x, self.target = _inputs(self.work, x, label)
        self.label, self.threshold, self.block = int(label), float(threshold), block
        logits = self.work(self.x)
        self.base = F.cross_entropy(logits, self.target)  # == _loss(work, x, target), same forward
        self.base_value = float(self.base)
        self.tol = _tolerance(logits, self.base, self.label)
        self.set_state(self.base_value, self.base)
        self.exact: Callable[[], Tensor] = partial(_loss, self.work, self.x, self.target)
        self.stats: dict[str, Any] = dict(passes=0, evaluations=0, exact_forwards=0, null=0, effective=0,
                                           max_error_over_tol=0.0, exact_from_layer=0)

    def set_state(self, loss: float, exact: Tensor | None) -> None:
        """The current state's loss: an estimate (within tol of the reference's) or the exact value."""
        self.state_loss, self.state_exact = loss, exact

    def note_error(self, estimate: float, exact: float) -> None:
        """Track the largest |estimate - reference loss| seen, in units of tol (must stay well below 1)."""
        self.stats["max_error_over_tol"] = max(self.stats["max_error_over_tol"], abs(estimate - exact) / self.tol)

    def state_needed(self) -> bool:
        """The reference's decision for a weight whose removal leaves the loss at the current state's."""
        diff = self.state_loss - self.base_value
        if self.state_exact is None and self.threshold - self.tol < diff <= self.threshold + self.tol:
            self.state_exact = self.exact()
            self.stats["exact_forwards"] += 1
            self.note_error(self.state_loss, float(self.state_exact))
        if self.state_exact is not None:
            return _needed(self.state_exact, self.base, self.threshold)
        return diff > self.threshold


@torch.no_grad()
def ecs_fast(
    model: nn.Module, x: Tensor, label: int, layers: Sequence[Tensor], threshold: float = 0.0,
    block: int = 256, stats: dict[str, Any] | None = None,
) -> dict[str, Tensor]:
    """:func:`ecs_reference`'s masks, computed with cached layer inputs, column updates and speculative
    batched passes (see the module docstring). ``block``: most candidates per pass. ``stats``, if given,
    receives counters (passes, evaluations, exact_forwards, null, effective)."""
    names = _param_names(model, layers)
    run = _FastRun(model, x, label, threshold, block)
    masks = {}
    for name in reversed(names):
        mask = _LayerPruner(run, name).prune()
        masks[name] = mask.to(run.params[name].device)
    if stats is not None:
        stats.update(run.stats, tol=run.tol)
    return {name: masks[name] for name in names}
