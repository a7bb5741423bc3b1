"""The fast, exact effective-circuit-size search (see ``ecs.py`` for the procedure and the design): cached
layer inputs, column updates pushed through the rest of the network, speculative batched blocks, and the
reference's own arithmetic for near-ties, so the masks equal :func:`modbench.discovery.ecs.ecs_reference`'s."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from modbench.discovery.ecs import _inputs, _loss, _needed, _param_names, _working_copy
from modbench.models.base import class_order

TOL_ULPS = 2.0  # the band, in machine epsilons of the rounding scale (see _tolerance)
MAX_ROWS = 1 << 18  # batched rows (candidates x images) per pass; bounds memory


def _ce_rows(logits: Tensor, label_col: int) -> Tensor:
    """(..., classes) -> (...): CE of each row against one class column, as log_softmax computes it
    (shifted by the row max first, so a confident row's CE keeps its relative precision)."""
    shifted = logits - logits.amax(-1, keepdim=True)
    return shifted.exp().sum(-1).log() - shifted[..., label_col]


def _ce_cols(logits: Tensor, label_row: int) -> Tensor:
    """Transposed logits (classes, m) -> (m,): CE of each column against one class row (as _ce_rows)."""
    shifted = logits - logits.amax(0)
    return shifted.exp().sum(0).log() - shifted[label_row]


class _Tail:
    """How the loss follows from column ``col`` of layer L's output (pre-activation, slot order), the other
    columns fixed at the current state S.

    The loss is a mean over images, and image r's CE depends on row r only, so candidates are evaluated on
    (candidate, image) pairs: ``differs`` says which pairs change anything downstream (not an image with
    x_in[r, i] = 0, nor one whose ReLU stays off); ``pair_ce`` is image r's CE when its column ``col`` takes
    a new value, ``state_ce`` every image's CE in S in the same arithmetic."""

    ce: Tensor

    def set_state(self, pre: Tensor) -> None:
        """Cache state S."""
        raise NotImplementedError

    def begin_row(self, col: int, bound: float) -> None:
        """The pruner moves to row ``col`` of W_L; column ``col`` of L's output stays below ``bound``."""

    def differs(self, before: Tensor, after: Tensor) -> Tensor:
        return after != before

    def pair_ce(self, col: int, rows: Tensor, values: Tensor) -> Tensor:
        raise NotImplementedError

    def state_ce(self, col: int) -> Tensor:
        """Every image's CE in state S, in the arithmetic of ``pair_ce``."""
        return self.ce

    def mean_loss(self, pre: Tensor) -> Tensor:
        """Mean CE as a (differentiable) function of L's whole output."""
        raise NotImplementedError

    def gradient(self, pre: Tensor) -> Tensor:
        """d(mean CE)/d(L's output) at ``pre``: first-order predictions of each removal's effect."""
        with torch.enable_grad():
            point = pre.detach().clone().requires_grad_(True)
            return torch.autograd.grad(self.mean_loss(point), point)[0]


class _ReadoutTail(_Tail):
    """L is the read-out: its output are the logits (in slot order); nothing runs after it."""

    def __init__(self, label_slot: int) -> None:
        self.label_slot = label_slot

    def set_state(self, pre: Tensor) -> None:
        self.logits = pre
        self.ce = _ce_rows(pre, self.label_slot)

    def mean_loss(self, pre: Tensor) -> Tensor:
        return _ce_rows(pre, self.label_slot).mean()

    def pair_ce(self, col: int, rows: Tensor, values: Tensor) -> Tensor:
        logits = self.logits[rows]
        logits[:, col] = values
        return _ce_rows(logits, self.label_slot)


class _HiddenTail(_Tail):
    """L is hidden: act -> next Linear (its cached output plus a rank-1 update) -> ``resume`` -> logits."""

    def __init__(self, act: nn.Module, following: nn.Linear, resume: Callable[[Tensor], Tensor], label: int) -> None:
        self.act, self.following, self.resume, self.label = act, following, resume, label

    def set_state(self, pre: Tensor) -> None:
        self.post = self.act(pre)
        self.next_pre = self.following(self.post)
        self.ce = _ce_cols(self.resume(self.next_pre), self.label)

    def differs(self, before: Tensor, after: Tensor) -> Tensor:
        return self.act(after) != self.act(before)

    def mean_loss(self, pre: Tensor) -> Tensor:
        return _ce_cols(self.resume(self.following(self.act(pre))), self.label).mean()

    def pair_ce(self, col: int, rows: Tensor, values: Tensor) -> Tensor:
        change = self.act(values.to(self.post.dtype)) - self.post[rows, col]
        next_pre = torch.addcmul(self.next_pre[rows], change[:, None], self.following.weight[:, col])
        return _ce_cols(self.resume(next_pre), self.label)


class _ReluReadoutTail(_HiddenTail):
    """L -> ReLU -> Linear -> ReLU -> read-out Linear. With the other columns of L's output fixed, image r's
    logits are a piecewise-affine function of s = relu(column ``col``), s >= 0: logits = A_r[seg] + s B_r[seg],
    cut where a unit of the next layer switches. Windows stay within one row of W_L, so only column ``col``
    of the state changes while the row is pruned: the table (float64) is built once per row, and a pair
    costs a lookup and a classes-wide affine map instead of the next two layers."""

    def __init__(self, following: nn.Linear, readout: nn.Linear, label: int) -> None:
        super().__init__(nn.ReLU(), following, self._logits_t, label)
        self.readout = readout
        self.col: int | None = None
        self.cached: tuple[int, Tensor, Tensor] | None = None  # (column, its values, the images' CE)

    def _logits_t(self, next_pre: Tensor) -> Tensor:
        logits = self.readout.weight @ next_pre.relu().T
        return logits if self.readout.bias is None else logits + self.readout.bias[:, None]

    def begin_row(self, col: int, bound: float) -> None:
        """Tabulate column ``col`` (s <= bound: cuts beyond it never matter)."""
        self.col, self.cached = col, None
        w = self.following.weight[:, col].double()  # (d,): next-layer weights of unit col
        a = self.next_pre.double() - self.post[:, col, None].double() * w  # (n, d): next pre-acts at s = 0
        n, d = a.shape
        out = self.readout.weight.double().T  # (d, classes)
        top = bound + 1.0
        cut = -a / w  # where unit k of the next layer switches; only 0 < s <= bound matters
        cut = torch.where((w != 0) & (cut > 0) & (cut <= bound), cut, top)
        order = cut.argsort(1)
        # one sorted 1-D array of every image's cuts: image r's shifted by r * span, s searched likewise
        self.span, self.bound = 2 * top + 2, bound
        self.cuts = (cut.gather(1, order) + self.span * torch.arange(n, dtype=torch.float64)[:, None]).view(-1)
        on = (a > 0) | ((a == 0) & (w > 0))  # units on just above s = 0
        part_a = a[:, :, None] * out  # (n, d, classes): unit k's share of A while on
        part_b = w[:, None] * out  # (d, classes): ... and of B
        sign = torch.where(w > 0, 1.0, -1.0).double()[order][:, :, None]  # switching on (+) or off (-)
        sign = torch.where(cut.gather(1, order)[:, :, None] < top, sign, 0.0)  # never reached: no switch
        a0 = (part_a * on[:, :, None]).sum(1)
        if self.readout.bias is not None:
            a0 = a0 + self.readout.bias.double()
        b0 = on.double() @ part_b
        steps_a = sign * part_a.gather(1, order[:, :, None].expand(-1, -1, out.shape[1]))
        steps_b = sign * part_b[order]
        self.table_a = torch.cat([a0[:, None], a0[:, None] + steps_a.cumsum(1)], 1).view(n * (d + 1), -1)
        self.table_b = torch.cat([b0[:, None], b0[:, None] + steps_b.cumsum(1)], 1).view(n * (d + 1), -1)

    def _at(self, col: int, rows: Tensor, s: Tensor) -> Tensor:
        """CE of images ``rows`` at s = relu(column value) >= 0, from the table."""
        if col != self.col:
            raise RuntimeError(f"column {col} was not tabulated (begin_row)")
        key = s.clamp(max=self.bound + 0.5) + self.span * rows.double()
        entry = torch.searchsorted(self.cuts, key, right=True) + rows  # image r: r * (d + 1) + segment
        logits = self.table_a.index_select(0, entry) + s[:, None] * self.table_b.index_select(0, entry)
        return _ce_rows(logits, self.label)

    def pair_ce(self, col: int, rows: Tensor, values: Tensor) -> Tensor:
        return self._at(col, rows, values.double().relu())

    def state_ce(self, col: int) -> Tensor:
        s = self.post[:, col].to(torch.float64, copy=True)
        if self.cached is None or self.cached[0] != col:
            self.cached = (col, s, self._at(col, torch.arange(len(s), device=s.device), s))
        else:  # re-evaluate only the images whose value changed since the last call
            rows = torch.nonzero(s != self.cached[1]).flatten()
            if len(rows):
                self.cached[2][rows] = self._at(col, rows, s[rows])
                self.cached = (col, s, self.cached[2])
        return self.cached[2]


class _GenericTail(_Tail):
    """Any Linear module applied once per forward: the full model runs on the pairs' images with the module's
    output replaced (slower, but needs nothing of the model's layout)."""

    def __init__(self, model: nn.Module, module: nn.Linear, x: Tensor, label: int) -> None:
        self.model, self.module, self.x, self.label = model, module, x, label

    def set_state(self, pre: Tensor) -> None:
        self.pre = pre
        self.ce = _ce_rows(self._run(pre, self.x), self.label)

    def mean_loss(self, pre: Tensor) -> Tensor:
        return _ce_rows(self._run(pre, self.x), self.label).mean()

    def _run(self, outputs: Tensor, x: Tensor) -> Tensor:
        handle = self.module.register_forward_hook(lambda module, args, output: outputs)
        try:
            return self.model(x)
        finally:
            handle.remove()

    def pair_ce(self, col: int, rows: Tensor, values: Tensor) -> Tensor:
        outputs = self.pre[rows]
        outputs[:, col] = values
        return _ce_rows(self._run(outputs, self.x[rows]), self.label)


def _owner(model: nn.Module, name: str) -> nn.Linear:
    module = model.get_submodule(name.rsplit(".", 1)[0]) if "." in name else model
    if not isinstance(module, nn.Linear) or not name.endswith(".weight"):
        raise ValueError(f"{name} is not the weight of an nn.Linear module")
    return module


def _tail(model: nn.Module, name: str, x: Tensor, label: int) -> _Tail:
    """Shortcuts for the modbench MLP/CNN layout (see ``_layout``), else the generic hook-based tail. The
    shortcuts work on slot-order logits (the CE does not depend on the column order) with the label's slot."""
    layer = _layout(model, name)
    if layer is None:
        return _GenericTail(model, _owner(model, name), x, label)
    blocks, unembed = model.blocks, model.unembed
    label_slot = int(class_order(model.output_order)[label])
    if layer == len(blocks):
        return _ReadoutTail(label_slot)
    mlps = [blocks[j].mlp for j in range(layer, len(blocks))]
    linears = [mlp.linear for mlp in mlps[1:]] + [unembed]
    if len(mlps) == 2 and all(type(mlp.act) is nn.ReLU for mlp in mlps):
        return _ReluReadoutTail(linears[0], unembed, label_slot)

    def resume(pre: Tensor) -> Tensor:
        """From block L + 1's pre-activation (``pre``: the next Linear's output) to TRANSPOSED slot logits
        (classes, rows): a narrow read-out is faster as W @ h.T on CPU."""
        h = pre
        for mlp, linear in zip(mlps[1:-1], linears[1:-1]):
            h = linear(mlp.act(h))
        if len(mlps) == 1:  # ``pre`` are the logits already
            return h.T
        logits = unembed.weight @ mlps[-1].act(h).T
        return logits if unembed.bias is None else logits + unembed.bias[:, None]

    return _HiddenTail(mlps[0].act, linears[0], resume, label_slot)


def _layout(model: nn.Module, name: str) -> int | None:
    """For the modbench MLP/CNN layout (``blocks[l].mlp.linear``/``.act``/``.hook_pre``/``.hook_post``,
    ``unembed``, ``output_order``, ``run_from``): the block index of Linear weight ``name`` (``len(blocks)``
    for ``unembed.weight``), when every block from it on is an MLP block; else None."""
    blocks = getattr(model, "blocks", None)
    if not (isinstance(blocks, nn.ModuleList) and isinstance(getattr(model, "unembed", None), nn.Linear)
            and isinstance(getattr(model, "output_order", None), Tensor) and hasattr(model, "run_from")):
        return None
    if name == "unembed.weight":
        layer = len(blocks)
    else:
        match = re.fullmatch(r"blocks\.(\d+)\.mlp\.linear\.weight", name)
        if not match:
            return None
        layer = int(match.group(1))
    if layer > len(blocks) or len(blocks) == 0:
        return None
    return layer if all(hasattr(blocks[j], "mlp") for j in range(min(layer, len(blocks) - 1), len(blocks))) else None


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
