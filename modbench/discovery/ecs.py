"""Effective circuit size (ECS, Golechha et al.): the share of a network's Linear weights that one class needs.

The authors' procedure (their ``pipeline.ipynb``; conv layers ignored), for the images ``x`` of one class::

    base = CE(model(x), label)                        # mean cross-entropy, cached once
    for each Linear weight matrix, last layer first:
        for each weight, row-major:
            w_old = w; w = 0
            if CE(model(x), label) - base > threshold:  # always against the ORIGINAL loss
                w = w_old                                # needed: keep it
    ECS = kept weights / all weights of those layers

:func:`ecs_reference` is that loop, literally (one full forward per weight). :func:`ecs_fast` returns the
same masks, bit for bit, much faster:

* **Layer caching.** While layer L is pruned, the layers below it are untouched, so L's input ``x_in`` is
  computed once. Removing ``W[o, i]`` moves only output column ``o``, by ``-W[o, i] * x_in[:, i]``; the
  read-out's column is one logit (no forward at all), a hidden layer's column enters the next Linear as a
  rank-1 update of its cached output, and the rest of the network runs from there. The loss is a mean over
  images and image r depends on its own row only, so a candidate is evaluated on the (candidate, image)
  pairs it changes (x_in[r, i] != 0 and the activation moves); for L -> ReLU -> Linear -> ReLU -> read-out
  (the first layer of the 784-64-64-10 MLP) an image's logits are piecewise affine in its column's ReLU
  output, tabulated once per row, so a pair is a table lookup.
* **Null weights.** A weight that is 0, or whose input column ``x_in[:, i]`` is 0 for every image (an
  unused pixel, a dead ReLU), adds +-0 to every product: the reference's forward is bit-identical with or
  without it, so its loss is exactly the current state's loss and it is decided without evaluation.
* **Speculative blocks.** Decisions are sequential (each depends on the loss of the state all earlier
  decisions left), but only a removal changes the state. A block of consecutive candidates of one row is
  evaluated in one batched pass, candidate j with every earlier candidate of the block that is *predicted*
  to be removed already removed (cumulative sums of the column updates). Predictions simulate the rule
  additively from each candidate's marginal effect (first order, d loss/d column, at the row's start; then
  the last measured one). Every candidate up to and including the first whose evaluated decision differs
  from its prediction was evaluated on the exact sequential state: those decisions are exact and
  committed, and the next block starts after it. Predicting "all kept" gives the single-removal pass (all
  before the first removal are exact rejections), "all removed" the cumulative-prefix pass (all before the
  first rejection are exact removals); measured predictions commit long mixed runs.
* **Near-ties.** The batched arithmetic (float64 bookkeeping) differs from the reference's full forward by
  the reference's own rounding. A candidate whose estimated ``loss - base`` lies within ``tol`` of the
  threshold (``tol``: TOL_ULPS machine epsilons of the rounding scale, see ``_tolerance``) is decided by
  the reference's own arithmetic on the exact state: the same operations from layer L on, checked bit for
  bit against the full forward, else the full forward (``ecs_exact.py``: all near-ties of a pass in one
  batch, recomputing only the images whose column moved, each shortcut checked bit for bit when a layer
  starts). Hence the masks equal the reference's, rounding included (tests: float64; the benchmark:
  float32, where the reference decides ~1-3% of the weights by rounding alone).

Both functions work on a deep copy: the model passed in is never modified. Layers are Linear weights
(``nn.Parameter`` of an ``nn.Linear``), given in forward order, pruned last layer first, each row-major.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from modbench.discovery.catalog import ECSConfig



def _working_copy(model: nn.Module) -> nn.Module:
    work = copy.deepcopy(model)
    work.eval()
    for param in work.parameters():
        param.requires_grad_(False)
    return work


def _param_names(model: nn.Module, layers: Sequence[Tensor]) -> list[str]:
    by_id = {id(param): name for name, param in model.named_parameters()}
    names = []
    for layer in layers:
        if id(layer) not in by_id:
            raise ValueError("every entry of layers must be a parameter of the model")
        if layer.dim() != 2:
            raise ValueError(f"{by_id[id(layer)]} is not a 2-D (Linear) weight")
        names.append(by_id[id(layer)])
    if len(set(names)) != len(names):
        raise ValueError("a parameter is listed twice in layers")
    return names


def _inputs(model: nn.Module, x: Tensor, label: int) -> tuple[Tensor, Tensor]:
    param = next(model.parameters())
    if len(x) == 0:
        raise ValueError("ECS needs at least one image of the class")
    x = x.to(device=param.device, dtype=param.dtype)
    return x, torch.full((len(x),), int(label), dtype=torch.long, device=param.device)


def _loss(model: nn.Module, x: Tensor, target: Tensor) -> Tensor:
    """The authors' loss: mean cross-entropy of a full forward pass."""
    return F.cross_entropy(model(x), target)


def _needed(loss: Tensor, base: Tensor, threshold: float) -> bool:
    """The decision rule: the weight is kept when removing it raised the loss by more than ``threshold``."""
    return float(loss - base) > threshold


@torch.no_grad()
def ecs_reference(
    model: nn.Module, x: Tensor, label: int, layers: Sequence[Tensor], threshold: float = 0.0,
    *, max_weights: int | None = None,
) -> dict[str, Tensor]:
    """The authors' sequential procedure, literally: one full forward of ``x`` per weight.

    ``layers``: Linear weight parameters of ``model`` in forward order; they are pruned last layer first,
    each row-major. Returns a keep mask (True = needed) per parameter name, shaped like the parameter.
    ``max_weights`` (for timing samples): stop after visiting that many weights; the rest read as kept.
    """
    work = _working_copy(model)
    names = _param_names(model, layers)
    x, target = _inputs(work, x, label)
    params = dict(work.named_parameters())
    base = _loss(work, x, target)
    masks = {}
    budget = math.inf if max_weights is None else max_weights
    for name in reversed(names):
        flat = params[name].view(-1)
        visited = int(max(0, min(flat.numel(), budget)))
        keep = torch.zeros(flat.numel(), dtype=torch.bool)
        keep[visited:] = True  # not visited (max_weights): reads as kept
        for k in range(visited):
            old = flat[k].clone()
            flat[k] = 0
            if _needed(_loss(work, x, target), base, threshold):
                flat[k] = old
                keep[k] = True
        budget -= flat.numel()
        masks[name] = keep.view(params[name].shape).to(params[name].device)
    return {name: masks[name] for name in names}


# ----------------------------------------------------------------------------------------------------------
# the fast version
# ----------------------------------------------------------------------------------------------------------


def linear_wires(model: nn.Module) -> list[tuple[str, str]]:
    """(wire name, parameter name) of every wire of ``model.wiring()`` that is an nn.Linear weight, in
    forward order (conv kernels, embeddings and raw attention matrices are left out, as by the authors)."""
    linear_weights = {id(module.weight) for module in model.modules() if isinstance(module, nn.Linear)}
    names = {id(param): name for name, param in model.named_parameters()}
    wires = [(wire.name, names[id(wire.param)]) for wire in model.wiring().wires
             if wire.param.dim() == 2 and id(wire.param) in linear_weights]
    if not wires:
        raise ValueError(f"{type(model).__name__} has no Linear weights in its wiring: ECS does not apply")
    return wires


class EffectiveCircuitSize:
    """Per-class ECS over a model's Linear layers (Golechha et al.)."""

    def __init__(self, config: ECSConfig) -> None:
        self.config = config

    def analyse(self, model: nn.Module, task: Any, data: Any) -> dict[str, Any]:
        """The per-class discoverer protocol: every class of the task's test split."""
        x, y = data.x_test.to(next(model.parameters()).device), task.targets(data.y_test)
        y = y.to(x.device)
        result = self.per_class(model, x, y, int(y.max()) + 1, classes=[int(c) for c in torch.unique(y)])
        return result | {"summary": {"ecs": result["ecs_per_class"]}}

    def per_class(self, model: nn.Module, x_test: Tensor, y_test: Tensor, n_classes: int,
                  classes: Sequence[int] | None = None) -> dict[str, Any]:
        """ECS of each class in ``classes`` (default: 0 .. n_classes - 1; a class without images is an error)."""
        from modbench.discovery.ecs_fast import ecs_fast
        wires = linear_wires(model)
        params = dict(model.named_parameters())
        layers = [params[param] for _, param in wires]
        total = sum(layer.numel() for layer in layers)
        per_class: list[float] = []
        kept: dict[str, list[float]] = {wire: [] for wire, _ in wires}
        for c in range(n_classes) if classes is None else classes:
            images = x_test[y_test == c]
            if self.config.max_images is not None:
                images = images[: self.config.max_images]
            if len(images) == 0:
                raise ValueError(f"class {c} has no test images")
            masks = ecs_fast(model, images, c, layers, self.config.threshold, self.config.block)
            per_class.append(sum(int(mask.sum()) for mask in masks.values()) / total)
            for wire, param in wires:
                kept[wire].append(int(masks[param].sum()) / masks[param].numel())
        return {"ecs_per_class": per_class, "ecs_mean": sum(per_class) / len(per_class), "kept_per_wire": kept}
