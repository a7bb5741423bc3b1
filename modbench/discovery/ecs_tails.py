"""How a column change in one Linear layer reaches the class loss, for the fast ECS search: one "tail"
per layer kind (the read-out: a logit column; a ReLU layer just before the read-out: a multiple of one
read-out column; a hidden layer: a rank-1 update pushed through what follows; L -> ReLU -> Linear -> ReLU ->
read-out: per-image tables; anything else: the model's own forward from there). The shortcuts estimate in
float64, so their error stays far below the band of ``ecs_fast._tolerance``; the general ones in the
model's dtype."""

from __future__ import annotations

import re
from collections.abc import Callable

import torch
from torch import Tensor, nn

from modbench.models.base import class_order

MAX_ROWS = 1 << 18  # batched rows (candidates x images) per pass; bounds memory
EXP_LIMIT = 700.0  # exp below e^700 cannot overflow a float64: no shift by the largest logit needed


def _ce_rows(logits: Tensor, label_col: int) -> Tensor:
    """(..., classes) -> (...): CE of each row against one class column, as log_softmax computes it
    (shifted by the row max first, so a confident row's CE keeps its relative precision)."""
    shifted = logits - logits.amax(-1, keepdim=True)
    return shifted.exp().sum(-1).log() - shifted[..., label_col]


def _ce_cols(logits: Tensor, label_row: int) -> Tensor:
    """Transposed logits (classes, m) -> (m,): CE of each column against one class row (as _ce_rows)."""
    shifted = logits - logits.amax(0)
    return shifted.exp().sum(0).log() - shifted[label_row]


def _ce_rel(z: Tensor, dim: int) -> Tensor:
    """log(1 + sum exp(z)) along ``dim``: the CE when ``z`` are the other classes' logits minus the label's
    (log1p keeps a confident image's small CE exact); shifted by the largest only where exp could overflow."""
    if z.numel() == 0 or float(z.amax()) < EXP_LIMIT:
        return z.exp().sum(dim).log1p_()
    top = z.amax(dim, keepdim=True).clamp_(min=0)
    return (z - top).exp_().sum(dim).add_((-top).exp().squeeze(dim)).log_().add_(top.squeeze(dim))


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

    def slope(self, pre: Tensor, col: int) -> Tensor:
        """d(mean CE)/d(column ``col`` of L's output) at ``pre`` (after begin_row): first-order predictions
        of each removal's effect."""
        with torch.inference_mode(False), torch.enable_grad():
            point = pre.clone().requires_grad_(True)
            return torch.autograd.grad(self.mean_loss(point), point)[0][:, col]


class _ReadoutTail(_Tail):
    """L is the read-out: its output are the logits (in slot order); nothing runs after it."""

    def __init__(self, label_slot: int) -> None:
        self.label_slot = label_slot

    def set_state(self, pre: Tensor) -> None:
        self.logits = pre.double()
        self.ce = _ce_rows(self.logits, self.label_slot)

    def mean_loss(self, pre: Tensor) -> Tensor:
        return _ce_rows(pre, self.label_slot).mean()

    def slope(self, pre: Tensor, col: int) -> Tensor:
        pull = pre.double().softmax(-1)[:, col] - float(col == self.label_slot)
        return (pull / len(pre)).to(pre.dtype)

    def pair_ce(self, col: int, rows: Tensor, values: Tensor) -> Tensor:
        logits = self.logits.index_select(0, rows)
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
        change = self.act(values.to(self.post.dtype)) - self.post[:, col].index_select(0, rows)
        next_pre = torch.addcmul(self.next_pre.index_select(0, rows), change[:, None], self.following.weight[:, col])
        return _ce_cols(self.resume(next_pre), self.label)


class _ReluLastTail(_HiddenTail):
    """L -> ReLU -> read-out: a change of column ``col`` moves an image's logits along the read-out's column
    ``col``; in float64, as the other classes' logits minus the label's (see _ce_rel)."""

    def __init__(self, readout: nn.Linear, label: int) -> None:
        super().__init__(nn.ReLU(), readout, lambda logits: logits.T, label)
        self.others = torch.arange(readout.out_features, device=readout.weight.device) != label

    def _relative(self, logits: Tensor) -> Tensor:
        return (logits - logits[..., self.label, None])[..., self.others]

    def set_state(self, pre: Tensor) -> None:
        self.pre, self.post = pre, pre.relu()
        self.logits = self.following(self.post).double()
        self.rel = self._relative(self.logits)  # (images, classes - 1)
        self.ce = _ce_rel(self.rel, 1)

    def begin_row(self, col: int, bound: float) -> None:
        self.rel_col = self._relative(self.following.weight[:, col].double())

    def pair_ce(self, col: int, rows: Tensor, values: Tensor) -> Tensor:
        change = values.double().relu() - self.post[:, col].double().index_select(0, rows)
        return _ce_rel(torch.addcmul(self.rel.index_select(0, rows), change[:, None], self.rel_col), 1)

    def slope(self, pre: Tensor, col: int) -> Tensor:
        pull = self.logits.softmax(1)
        pull[:, self.label] -= 1
        return ((pull @ self.following.weight[:, col].double()) * (pre[:, col] > 0) / len(pre)).to(pre.dtype)


class _ReluReadoutTail(_HiddenTail):
    """L -> ReLU -> Linear -> ReLU -> read-out Linear. With the other columns of L's output fixed, image r's
    logits are a piecewise-affine function of s = relu(column ``col``), s >= 0: logits = A_r[seg] + s B_r[seg],
    cut where a unit of the next layer switches. Windows stay within one row of W_L, so only column ``col``
    of the state changes while the row is pruned: the table (float64; the other classes' logits minus the
    label's, see _ce_rel) is built once per row, with only the cuts an image can reach (none once W_L+1 is
    mostly pruned), and a pair costs a lookup and a classes-wide affine map instead of the next two layers."""

    def __init__(self, following: nn.Linear, readout: nn.Linear, label: int) -> None:
        super().__init__(nn.ReLU(), following, self._logits_t, label)
        self.readout = readout
        self.col: int | None = None
        self.cached: tuple[int, Tensor, Tensor] | None = None  # (column, its values, the images' CE)
        self.rel: Tensor | None = None

    def _logits_t(self, next_pre: Tensor) -> Tensor:
        logits = self.readout.weight @ next_pre.relu().T
        return logits if self.readout.bias is None else logits + self.readout.bias[:, None]

    def set_state(self, pre: Tensor) -> None:
        """Within a row only column ``col`` changes, which the table covers: the next layer waits for begin_row."""
        self.pre, self.post, self.next_pre = pre, pre.relu(), None

    def begin_row(self, col: int, bound: float) -> None:
        """Tabulate column ``col`` (s <= bound: cuts beyond it never matter)."""
        self.col, self.cached = col, None
        if self.next_pre is None:
            self.next_pre = self.following(self.post)
        if self.rel is None:  # the read-out is final while L is pruned (layers go last first)
            out = self.readout.weight.double()  # (classes, d)
            others = torch.arange(len(out), device=out.device) != self.label
            # the other classes' logits minus the label's: CE = log(1 + sum_c exp(logit_c)), see _ce_rel
            self.rel = (out - out[self.label])[others]  # (classes - 1, d)
            bias = self.readout.bias
            self.rel_bias = None if bias is None else (bias.double() - bias[self.label].double())[others]
        rel = self.rel
        w = self.following.weight[:, col].double()  # (d,): next-layer weights of unit col
        a = self.next_pre.double() - self.post[:, col, None].double() * w  # (n, d): next pre-acts at s = 0
        n = len(a)
        top = bound + 1.0
        cut = -a / w  # where unit k of the next layer switches; only 0 < s <= bound matters
        relevant = (w != 0) & (cut > 0) & (cut <= bound)
        cut = torch.where(relevant, cut, top)
        d = int(relevant.sum(1).max())  # an image's cuts, at most (often none: a pruned W_L+1)
        cut, order = cut.sort(1) if d else (cut[:, :0], cut[:, :0].long())
        cut, order = cut[:, :d], order[:, :d]
        # one sorted 1-D array of every image's cuts: image r's shifted by r * span, s searched likewise
        self.span, self.bound = 2 * top + 2, bound
        self.cuts = (cut + self.span * torch.arange(n, dtype=torch.float64, device=cut.device)[:, None]).reshape(-1)
        on = (a > 0) | ((a == 0) & (w > 0))  # units on just above s = 0
        # segment 0 (s = 0): A = rel @ (a * on), B = rel @ (w * on); a cut switches unit k on (+) or off (-)
        start = torch.stack([a * on, w * on], 1) @ rel.T  # (n, 2, classes - 1)
        if self.rel_bias is not None:
            start[:, 0] += self.rel_bias
        table = start[:, None]
        if d:
            w_order = w.index_select(0, order.reshape(-1)).view(n, d)
            sign = torch.where(w_order > 0, 1.0, -1.0).double()  # switching on (+) or off (-)
            coef = torch.stack([a.gather(1, order), w_order], 2) * sign[..., None]  # (n, d, 2)
            rel_order = rel.T.contiguous().index_select(0, order.reshape(-1)).view(n, d, 1, -1)
            steps = (coef[..., None] * rel_order).cumsum_(1).add_(start[:, None])  # (n, d, 2, classes - 1)
            table = torch.cat([table, steps], 1)
        self.table = table.reshape(n * (d + 1), -1)  # row r (d + 1) + segment: [A, B]
        # |A + s B| <= sum_k |rel_ck| (|a_rk| + s |w_k|) (+ bias): below e^700, no shift by the largest needed
        reach = rel.abs() @ (a.abs().amax(0) + (bound + 0.5) * w.abs())
        if self.rel_bias is not None:
            reach = reach + self.rel_bias.abs()
        self.tame = bool((reach < EXP_LIMIT).all())
        # the first-order predictions: d(mean CE)/d(column col) in the current state
        logits = self._logits_t(self.next_pre).double()  # (classes, n)
        pull = logits.softmax(0)
        pull[self.label] -= 1
        grad_h = (self.readout.weight.double().T @ pull) * (self.next_pre.T > 0)  # (d, n)
        self.slope_col = (w @ grad_h) * (self.pre[:, col] > 0) / n

    def slope(self, pre: Tensor, col: int) -> Tensor:
        return self.slope_col.to(pre.dtype)

    def _at(self, col: int, rows: Tensor, s: Tensor) -> Tensor:
        """CE of images ``rows`` at s = relu(column value) >= 0, from the table."""
        if col != self.col:
            raise RuntimeError(f"column {col} was not tabulated (begin_row)")
        if len(self.cuts):
            key = s.clamp(max=self.bound + 0.5) + self.span * rows.double()
            entry = torch.searchsorted(self.cuts, key, right=True) + rows  # image r: r * (d + 1) + segment
        else:  # one segment per image
            entry = rows
        ab = self.table.index_select(0, entry).T  # (2 (classes - 1), pairs)
        logits = torch.addcmul(ab[: len(ab) // 2], ab[len(ab) // 2:], s)  # minus the label's
        if self.tame:
            return logits.exp_().sum(0).log1p_()
        top = logits.amax(0).clamp_(min=0)
        return (logits - top).exp_().sum(0).add_((-top).exp()).log_().add_(top)

    def pair_ce(self, col: int, rows: Tensor, values: Tensor) -> Tensor:
        return self._at(col, rows, values.double().relu())

    def state_ce(self, col: int) -> Tensor:
        s = self.post[:, col].to(torch.float64, copy=True)
        if self.cached is None or self.cached[0] != col:
            self.cached = (col, s, self._at(col, torch.arange(len(s), device=s.device), s))
        else:  # re-evaluate only the images whose value changed since the last call
            rows = torch.nonzero(s != self.cached[1]).flatten()
            if len(rows):
                self.cached[2][rows] = self._at(col, rows, s.index_select(0, rows))
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
    if len(mlps) == 1 and type(mlps[0].act) is nn.ReLU:
        return _ReluLastTail(unembed, label_slot)
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
