"""The fast, exact effective-circuit-size search (see ``ecs.py`` for the procedure and the design): cached
layer inputs, column updates pushed through the rest of the network, speculative batched blocks, and the
reference's own arithmetic for near-ties, so the masks equal :func:`modbench.discovery.ecs.ecs_reference`'s.

Beyond ``ecs.py``'s outline:

* **Near-ties in batches.** The candidates of a pass too close to call are evaluated together on their
  predicted states (exact up to the first miss), by the reference's own operations from layer L on
  (``ecs_exact.ExactLoss``: one stacked product for the changed column, the rest of the network on the
  images that moved only); the first exact decision against its prediction ends the pass.
* **Null weights without evaluation.** A null weight's loss is the current state's, bit for bit. Before any
  removal that is the base loss; after one, it is the loss of the last removal, which that removal's own
  (exact) decision put at or below the threshold: the null weight goes too. No forward is needed.
* **Window.** A pass costs about PASS_COST candidates' evaluations on top of its candidates, and a miss
  wastes the rest of it: windows are sized from the misses seen so far (``_LayerPruner.prune``), at most
  ``block``."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from modbench.discovery.ecs import _inputs, _needed, _param_names, _working_copy
from modbench.discovery.ecs_exact import ExactLoss, layer_input
from modbench.discovery.ecs_tails import MAX_ROWS, _owner, _tail

TOL_ULPS = 2.0  # the band, in machine epsilons of the rounding scale (see _tolerance)
PASS_COST, PRIOR_MISSES, MIN_WINDOW = 64, 1 / 512, 32  # window sizing (see _LayerPruner.prune)


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
        self.x_in = layer_input(run.work, name, self.module, run.x)
        self.tail = _tail(run.work, name, run.x, run.label)
        self.exact = ExactLoss(run.work, name, run.x, run.target, self.x_in, self.module)
        run.stats["exact_from_layer"] += self.exact.rest is not None
        run.stats["exact_stacked"] += self.exact.stack is not None
        self.pre = self.module(self.x_in)
        self.tail.set_state(self.pre)
        self.n_in = self.param.shape[1]
        self.keep = torch.zeros(self.flat.numel(), dtype=torch.bool)

    def refresh(self, row: int) -> None:
        """Recompute output column ``row`` after its weights changed, and the tail's cached state."""
        bias = self.module.bias[row] if self.module.bias is not None else 0
        self.pre[:, row] = self.x_in @ self.param[row] + bias
        self.tail.set_state(self.pre)
        self.exact.changed(row)

    def prune(self) -> Tensor:
        run = self.run
        cols_zero = (self.x_in == 0).all(0)
        weights = self.flat.clone()
        null = (weights == 0) | cols_zero.repeat(self.param.shape[0])
        effective = torch.nonzero(~null).flatten().cpu()
        run.stats["null"] += int(null.sum())
        run.stats["effective"] += len(effective)
        self.next_flat = 0
        self.x_t = self.x_in.T.double().contiguous()  # (inputs, images)
        self.w_neg = -weights.double()
        x_abs = self.x_t.abs().T
        delta_est = torch.zeros(len(effective), dtype=torch.float64)
        limit = max(1, min(run.block, MAX_ROWS // len(run.x)))
        row_ends = torch.searchsorted(effective // self.n_in, torch.arange(1, self.param.shape[0] + 1))
        p, row = 0, -1
        while p < len(effective):  # windows never straddle two rows: one output column changes
            if int(effective[p]) // self.n_in != row:
                row = int(effective[p]) // self.n_in
                end = int(row_ends[row])
                bias = 0.0 if self.module.bias is None else abs(float(self.module.bias[row]))
                bound = float((x_abs @ self.w_neg.view(self.param.shape)[row].abs()).max())
                self.tail.begin_row(row, bound + bias)
                # first-order predictions of the row's removals in the current state: -w x_in[:, i] . dL/dpre_o
                slope = self.tail.slope(self.pre, row).double()
                index = effective[p:end].to(self.x_in.device)
                own = self.x_t.index_select(0, index % self.n_in) @ slope
                delta_est[p:end] = (self.w_neg.index_select(0, index) * own).cpu()
            # a pass costs PASS_COST candidates' evaluations more, and a miss wastes the rest of the window:
            # with m misses per committed candidate, sqrt(2 PASS_COST / m) minimises the cost per candidate
            window = math.sqrt(2 * PASS_COST * (run.committed + 1 / PRIOR_MISSES) / (run.misses + 1))
            size = min(limit, max(MIN_WINDOW, int(window)), end - p)
            committed = self._pass(effective[p:p + size], delta_est[p:p + size])
            p += committed
            run.committed += committed
            run.misses += committed < size
        self.finish()
        run.stats["exact_rows"] += self.exact.rows
        return self.keep.view(self.param.shape)

    def _pass(self, index: Tensor, delta_est: Tensor) -> int:
        """One batched pass over effective candidates ``index``; commits the exact prefix; returns its length."""
        run = self.run
        run.stats["passes"] += 1
        run.stats["evaluations"] += len(index)
        size, n = len(index), len(run.x)
        # predicted decisions: additive simulation from the last measured marginal effects
        predicted, level, cap = bytearray(size), run.state_loss, run.base_value + run.threshold
        for j, delta in enumerate(delta_est.tolist()):
            if level + delta <= cap:
                predicted[j] = 1
                level += delta
        prune_mask = torch.frombuffer(predicted, dtype=torch.bool) if size else torch.zeros(0, dtype=torch.bool)
        device = self.pre.device
        col, ins = int(index[0]) // self.n_in, (index % self.n_in).to(device)
        mask = prune_mask.to(device)
        # (B, n), float64: each removal's own change of column col, and the predicted removals before j
        own = self.x_t.index_select(0, ins) * self.w_neg.index_select(0, index.to(device))[:, None]
        taken = own * mask[:, None]
        state = taken.cumsum(0).sub_(taken).add_(self.pre[:, col].double())  # column col in state j
        removed = state + own  # ... and with candidate j removed too
        # marginal effect of each candidate, summed over the (candidate, image) pairs it changes
        image, cand = torch.nonzero(self.tail.differs(state, removed).T, as_tuple=True)  # sorted by image
        run.stats["pairs"] += len(image)
        marginal = torch.zeros(size, dtype=torch.float64, device=device)
        state_ce = self.tail.state_ce(col).double()
        if len(image):
            ce_removed = self.tail.pair_ce(col, image, removed.view(-1).index_select(0, cand * n + image)).double()
            # the image's CE in state j: its pair of the last predicted removal before j, else its CE in S
            pair = torch.arange(len(image), device=device)
            updates = torch.where(mask.index_select(0, cand), pair, -1).cummax(0).values
            last = F.pad(updates[:-1], (1, 0), value=-1)
            counts = torch.bincount(image, minlength=n)
            first = (counts.cumsum(0) - counts).index_select(0, image)  # the image's first pair
            ce_state = torch.where(last >= first, ce_removed.index_select(0, last.clamp(min=0)),
                                   state_ce.index_select(0, image))
            marginal.index_add_(0, cand, ce_removed - ce_state)
        marginal = (marginal / n).cpu()
        taken = marginal * prune_mask
        estimates = taken.cumsum(0).sub_(taken).add_(marginal).add_(float(state_ce.mean()))  # state j minus j
        delta_est.copy_(marginal)
        diff = estimates - run.base_value
        certain_keep = diff > run.threshold + run.tol
        certain_prune = diff <= run.threshold - run.tol
        # every candidate up to the first decision against its prediction was evaluated on its exact state
        against = torch.nonzero((certain_keep & prune_mask) | (certain_prune & ~prune_mask))
        stop = int(against[0]) if len(against) else size
        prune = prune_mask.clone()
        if stop < size:
            prune[stop] = bool(certain_prune[stop])
        # too close to call: the reference's own loss on the predicted (= exact, up to a miss) states, batched
        unsure = torch.nonzero(~(certain_keep | certain_prune)[:stop]).flatten()
        row = self.param[col]
        for chunk in unsure.split(max(self.exact.stack or 1, 8)) if len(unsure) else ():
            zeroed = prune_mask & (torch.arange(size) < chunk[:, None])  # predicted removals before each
            zeroed[torch.arange(len(chunk)), chunk] = True  # ... and the candidate itself
            states = row.repeat(len(chunk), 1)
            states[:, ins] = states.index_select(1, ins).masked_fill_(zeroed.to(device), 0)
            loss = self.exact.losses(col, states)
            run.stats["exact_forwards"] += len(chunk)
            for estimate, value in zip(estimates[chunk].tolist(), loss.tolist()):
                run.note_error(estimate, value)
            keep = (loss - run.base).double().cpu() > run.threshold  # _needed, elementwise
            estimates[chunk] = loss.double().cpu()
            miss = torch.nonzero(keep == prune_mask[chunk])
            if len(miss):
                stop = int(chunk[int(miss[0])])
                prune[stop] = not bool(keep[int(miss[0])])
                break
        committed = min(stop + 1, size)
        self._commit(index[:committed], prune[:committed], estimates[:committed])
        return committed

    def _commit(self, index: Tensor, prune: Tensor, losses: Tensor) -> None:
        """Commit effective candidates ``index`` (their decisions ``prune``, the losses of their removals) and
        the null weights before each. A null weight leaves the forward bit-identical, so its loss is the
        state's: after any removal, the loss of the last removal, which that removal's decision already put
        at or below the threshold, so it goes; before any, the base loss (see ``_FastRun.state_needed``)."""
        run, start, end = self.run, self.next_flat, int(index[-1]) + 1
        removals = torch.nonzero(prune).flatten()
        keep = torch.zeros(end - start, dtype=torch.bool)
        if run.state_needed():  # null weights before the first removal are kept
            keep[: int(index[removals[0]]) - start if len(removals) else None] = True
        keep[index - start] = ~prune
        self.keep[start:end] = keep
        self.flat[start:end].masked_fill_(~keep.to(self.flat.device), 0)
        self.next_flat = end
        if len(removals):
            run.removed = True
            run.state_loss = float(losses[int(removals[-1])])
            self.refresh(int(index[0]) // self.n_in)

    def finish(self) -> None:
        """The null weights after the last effective one."""
        keep = self.run.state_needed()
        self.keep[self.next_flat:] = keep
        if not keep:
            self.flat[self.next_flat:] = 0


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
        self.state_loss, self.removed = self.base_value, False  # the current state's loss (estimate or exact)
        self.committed, self.misses = 0, 0  # candidates committed, passes cut short by a miss
        self.stats: dict[str, Any] = dict(passes=0, evaluations=0, exact_forwards=0, null=0, effective=0, pairs=0,
                                           max_error_over_tol=0.0, exact_from_layer=0, exact_stacked=0, exact_rows=0)

    def note_error(self, estimate: float, exact: float) -> None:
        """Track the largest |estimate - reference loss| seen, in units of tol (must stay well below 1)."""
        self.stats["max_error_over_tol"] = max(self.stats["max_error_over_tol"], abs(estimate - exact) / self.tol)

    def state_needed(self) -> bool:
        """The reference's decision for a weight whose removal leaves the forward (so the loss) unchanged:
        the base loss before any removal; after one, the last removal's loss, which was not needed."""
        return not self.removed and _needed(self.base, self.base, self.threshold)


@torch.no_grad()
def ecs_fast(
    model: nn.Module, x: Tensor, label: int, layers: Sequence[Tensor], threshold: float = 0.0,
    block: int = 256, stats: dict[str, Any] | None = None,
) -> dict[str, Tensor]:
    """:func:`ecs_reference`'s masks, computed with cached layer inputs, column updates and speculative
    batched passes (see the module docstring). ``block``: most candidates per pass. ``stats``, if given,
    receives counters (passes, evaluations, exact_forwards, null, effective, pairs, exact_rows, ...)."""
    names = _param_names(model, layers)
    run = _FastRun(model, x, label, threshold, block)
    masks = {}
    with torch.inference_mode():  # less bookkeeping per operation; the tensors made inside stay inside
        for name in reversed(names):
            masks[name] = _LayerPruner(run, name).prune()
    if stats is not None:
        stats.update(run.stats, tol=run.tol)
    return {name: masks[name].to(run.params[name].device, copy=True) for name in names}
