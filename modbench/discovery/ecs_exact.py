"""The reference's own loss, bit for bit, for the fast ECS search's near-ties (see ``ecs.py``): states that
differ from the current one in one row of the pruned weight W_L, evaluated in a batch.

For the modbench layout the loss is recomputed from layer L on (the layers below are untouched), with the
forward's own operations; each shortcut below is checked bit for bit when the layer starts (every position
of its batch, several rows each) and replaced by the plain computation if it fails:

* A state changes one column of L's output. The columns of several states come from one product of L's
  input with a small stack of weight rows (a GEMM output element depends on its own input and weight rows,
  in an order fixed by the shapes), else from the full product per state.
* The cross-entropy is the NLL of the log-softmax, whose rows the rest of the network computes image by
  image. The log-probabilities of one state (the cache) are kept; an image of the next state runs through
  the rest only if its value in that column moved (bit pattern; for a ReLU, unless negative before and
  after), in batches of a fixed size, else the full batch per state. The NLL then runs on all images.

Any other model: the full forward (or the verified shorter path) per state, the weights set in place."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from modbench.discovery.ecs import _loss
from modbench.discovery.ecs_tails import _layout
from modbench.models.base import class_order

STACK_SIZES = (4, 8, 16, 32)  # weight rows per product, smallest first: the first that checks out is used
CHUNK_ROWS = 256  # most images per batch through the rest of the network
_BITS = {torch.float64: torch.int64, torch.float32: torch.int32, torch.float16: torch.int16, torch.bfloat16: torch.int16}


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


def layer_input(model: nn.Module, name: str, module: nn.Linear, x: Tensor) -> Tensor:
    """Layer L's input in a forward of ``x``: what enters the module, or for the modbench layout's read-out
    (which the forward may apply as a permuted matrix rather than as the module) the last block's output."""
    if name == "unembed.weight" and _layout(model, name) is not None:
        return _capture(model, x, model.blocks[-1].mlp.hook_post, output=True)
    return _capture(model, x, module, output=False)


def _shifts(size: int) -> list[int]:
    """Rotations of the rows for the checks: each puts every row at another position of a batch."""
    return sorted({0, 1, size // 2, size - 1})


class ExactLoss:
    """The reference's loss of the current state with one row of W_L replaced (see the module docstring)."""

    def __init__(self, model: nn.Module, name: str, x: Tensor, target: Tensor, x_in: Tensor,
                 module: nn.Linear) -> None:
        self.x, self.target, self.x_in, self.module = x, target, x_in, module
        self.weight, self.bias = module.weight, module.bias
        self.dirty: set[int] = set()
        self.rows = 0  # images run through the rest (a work count for the stats)
        self.stack: int | None = None  # weight rows per stacked product, if it checked out
        self.chunk: int | None = None  # images per batch through the rest, if it checked out
        self.rest: list[nn.Module] | None = None  # the modules after L's Linear, if they reproduce the forward
        self.state: Callable[[], Tensor] = partial(_loss, model, x, target)  # the current state's loss
        logits = model(x)
        layer = _layout(model, name)
        if layer is None:
            return
        blocks, self.slots = model.blocks, class_order(model.output_order)
        rest: list[nn.Module] = []  # act_L, Linear_L+1, act_L+1, ..., read-out (none if L is the read-out)
        for j in range(layer, len(blocks)):
            rest += [blocks[j].mlp.act, blocks[j + 1].mlp.linear if j + 1 < len(blocks) else model.unembed]
        self.pre = module(x_in)
        if torch.equal(self._logits(self.pre, rest), logits):
            self.rest = rest
            self.stack = next((size for size in STACK_SIZES if size <= len(self.weight) and self._stacks(size)), None)
            # cross-entropy = NLL of log-softmax, whose rows the rest computes image by image
            self.logp = logits.log_softmax(1)
            if torch.equal(F.nll_loss(self.logp, target), F.cross_entropy(logits, target)):
                size = min(max(2 * len(x), 16), CHUNK_ROWS)  # the moved images of a few states
                self.chunk = size if self._chunks(size) else None
            return
        # the model's own forward from L's output on, when it reproduces the full forward
        hook = f"blocks.{min(layer, len(blocks) - 1)}.mlp.hook_pre"
        if layer == len(blocks):
            pre = _capture(model, x, blocks[-1].mlp.hook_pre, output=True)
            resume = partial(model.run_from, hook, pre)
        else:
            resume = lambda: model.run_from(hook, module(x_in))  # noqa: E731
        if torch.equal(resume(), logits):
            self.state = lambda: F.cross_entropy(resume(), target)

    def _logits(self, pre: Tensor, rest: list[nn.Module] | None = None) -> Tensor:
        for step in self.rest if rest is None else rest:
            pre = step(pre)
        return pre.index_select(1, self.slots)

    def _stacks(self, size: int) -> bool:
        """Does a product with a stack of ``size`` weight rows give each row's column of the full product,
        bit for bit, at every position of the stack?"""
        out = len(self.weight)
        for shift in _shifts(size):
            for chunk in ((torch.arange(-(-out // size) * size) + shift) % out).view(-1, size):
                bias = None if self.bias is None else self.bias[chunk]
                if not torch.equal(F.linear(self.x_in, self.weight[chunk], bias), self.pre[:, chunk]):
                    return False
        return True

    def _chunks(self, size: int) -> bool:
        """Does the rest, run on a batch of ``size`` images, give each image's log-probabilities of the full
        batch, bit for bit, at every position of the batch?"""
        n = len(self.x)
        for shift in _shifts(size):
            for chunk in ((torch.arange(-(-n // size) * size) + shift) % n).view(-1, size):
                if not torch.equal(self._logits(self.pre[chunk]).log_softmax(1), self.logp[chunk]):
                    return False
        return True

    def changed(self, col: int) -> None:
        """Row ``col`` of W_L was changed in place (a commit)."""
        self.dirty.add(col)

    def _columns(self, col: int, rows: Tensor) -> Tensor:
        """(images, len(rows)): column ``col`` of L's output with W_L's row ``col`` set to each of ``rows``."""
        if self.stack is None:  # the full product per row
            saved, out = self.weight[col].clone(), []
            for row in rows:
                self.weight[col] = row
                out.append(self.module(self.x_in)[:, col])
            self.weight[col] = saved
            return torch.stack(out, 1)
        bias = None if self.bias is None else self.bias[col].repeat(self.stack)
        parts = []
        for chunk in rows.split(self.stack):
            stack = torch.zeros(self.stack, rows.shape[1], dtype=rows.dtype, device=rows.device)
            stack[: len(chunk)] = chunk
            parts.append(F.linear(self.x_in, stack, bias)[:, : len(chunk)])
        return torch.cat(parts, 1)

    def losses(self, col: int, rows: Tensor) -> Tensor:
        """The reference's loss of each state: the current one with W_L's row ``col`` set to ``rows[u]``."""
        if self.rest is None:
            saved, out = self.weight[col].clone(), []
            for row in rows:
                self.weight[col] = row
                out.append(self.state())
            self.weight[col] = saved
            return torch.stack(out)
        # the cache (L's output, log-probabilities) is a state that differs from the current one in row col
        # at most (chunked: the last state evaluated): other rows changed since are computed afresh
        stale = sorted(self.dirty - {col}) if self.chunk is not None else sorted(self.dirty)
        if stale:
            self.pre[:, stale] = torch.cat([self._columns(c, self.weight[c][None]) for c in stale], 1)
            self.logp = self._logits(self.pre).log_softmax(1)
        self.dirty = {col} if self.chunk is not None else set()
        columns = self._columns(col, rows)
        if self.chunk is None:
            out = []
            for u in range(len(rows)):
                pre = self.pre.clone()
                pre[:, col] = columns[:, u]
                out.append(F.cross_entropy(self._logits(pre), self.target))
            return torch.stack(out)
        # image r of state u: as in state u - 1 (u = 0: the cache) unless its value moved (bit pattern,
        # sign of zero included); only the moved ones run through the rest
        values = torch.cat([self.pre[:, col, None], columns], 1)
        before, after = values[:, :-1], values[:, 1:]
        moved = after.view(_BITS[after.dtype]) != before.view(_BITS[after.dtype])
        if self.rest and type(self.rest[0]) is nn.ReLU:  # negative before and after: +0 either way
            moved &= ~(torch.maximum(after, before) < 0)
        state, image = torch.nonzero(moved.T, as_tuple=True)
        logp = self.logp.expand(columns.shape[1], -1, -1)
        if len(image):
            pre = self.pre.index_select(0, image)
            pre[:, col] = columns.view(-1).index_select(0, image * columns.shape[1] + state)
            pad = torch.arange(-len(pre) % self.chunk, device=pre.device) % len(self.pre)
            batch = torch.cat([pre, self.pre.index_select(0, pad)]).split(self.chunk)
            self.rows += len(pre)
            fresh = torch.cat([self._logits(part).log_softmax(1) for part in batch])
            latest = torch.full(moved.T.shape, -1, dtype=torch.long, device=moved.device)
            latest[state, image] = torch.arange(len(image), device=moved.device)
            latest = latest.cummax(0).values  # (state, image): the last state up to this one where it moved
            picked = fresh.index_select(0, latest.clamp(min=0).view(-1)).view(logp.shape)
            logp = torch.where(latest[..., None] >= 0, picked, logp)
        self.pre[:, col], self.logp = columns[:, -1], logp[-1]
        return torch.stack([F.nll_loss(each, self.target) for each in logp.unbind(0)])
