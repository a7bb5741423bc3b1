"""A model's edge graph: what edge discoverers (ACDC, EAP, EAP-IG, exact edge patching) and the scoring of
edge circuits need from every model kind.

**Groups** are the graph's nodes, in forward order: the input (pixels, image channels, the token and position
embedding), hidden neurons, conv channels, attention heads (their ``hook_result``), MLP blocks (their
``hook_mlp_out``). A **slot** is one input of a receiving node: an MLP layer's pre-activation, a head's
query, key or value input, an MLP block's input, the read-out. An **edge site** holds every edge from one
sender group into one slot, an (n_receivers, n_senders) grid; cutting an edge replaces the sender's value *on
that edge only* by an intervention's value (its mean, zero, or its value on the pair's corrupted input).
A **stage** computes groups from the slots it reads (a hidden layer, an attention layer, an MLP block, the
read-out).

Layout: every tensor has two leading axes, ``(groups, pairs)`` = (G, m). G indexes circuits (scoring a batch
of circuits) or rows (alternative values of one receiver's input, ACDC); a G of 1 broadcasts. A group's value
is (G, m, n_senders, *sender_shape); a slot's input is (G, m, n_receivers, *receiver_shape).

A slot's **combiner** composes its input from its senders' values; it is linear in every value and in the
edge masks, which is what makes edge patching a masked sum:

    input = full(replacements) + sum over sites, senders s:  keep[r, s] * term_s(value_s - replacement_s)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor

OUTPUT = "output"  # the node a read-out slot belongs to: always connected


@dataclass(frozen=True)
class EdgeSite:
    """Every edge from sender group ``sender`` into slot ``slot``; candidate index = r * n_senders + s.
    ``wire`` names the weight these edges are (MLP, CNN: the sparsity's wire), None for residual edges."""

    name: str
    sender: str
    slot: str
    n_receivers: int
    n_senders: int
    wire: str | None = None

    @property
    def size(self) -> int:
        return self.n_receivers * self.n_senders


@runtime_checkable
class Combiner(Protocol):
    """How a slot's input is composed from its sites' sender values (listed in the slot's site order)."""

    def full(self, values: list[Tensor]) -> Tensor:
        """The input with every edge kept (or every edge fed ``values``)."""

    def delta(self, index: int, diff: Tensor, keep: Tensor) -> Tensor:
        """Site ``index``'s masked term: sum over senders s of keep[g, r, s] * term_s(diff_s); ``keep`` is
        (G or 1, n_receivers, n_senders), bool or float (EAP differentiates through it)."""

    def receiver_terms(self, index: int, diff: Tensor, r: int) -> Tensor:
        """(n_senders, G, m, *receiver_shape): each sender's term into receiver ``r``."""

    def sender_terms(self, index: int, diff: Tensor, senders: Tensor, receivers: Tensor, keep: Tensor | None
                     ) -> Tensor:
        """(G, m, |receivers|, *receiver_shape): the summed terms of ``senders`` (``diff`` their (G, m,
        |senders|, *sender_shape) changes) into ``receivers``, each edge times ``keep`` ((|receivers|,
        |senders|) kept edges; None: all)."""


@dataclass(frozen=True)
class Slot:
    """Input of the ``node`` group's receivers (``OUTPUT`` for the read-out), fed by ``sites``."""

    name: str
    node: str
    n_receivers: int
    sites: tuple[EdgeSite, ...]
    combiner: Combiner


@dataclass(frozen=True)
class Stage:
    """``per_node``: node r of the output group depends on receiver r's inputs alone (a layer of neurons, a
    conv layer with its pooling, one MLP block), so ``edge_stage`` may be given one receiver's inputs."""

    slots: tuple[Slot, ...]
    outputs: tuple[str, ...]  # groups this stage computes (empty for the read-out)
    per_node: bool = False


@dataclass(frozen=True)
class EdgeGraph:
    groups: dict[str, int]  # group -> number of nodes, in forward order (input groups first)
    inputs: tuple[str, ...]  # groups the input defines
    stages: tuple[Stage, ...]

    @property
    def slots(self) -> tuple[Slot, ...]:
        return tuple(slot for stage in self.stages for slot in stage.slots)

    @property
    def sites(self) -> tuple[EdgeSite, ...]:
        return tuple(site for slot in self.slots for site in slot.sites)

    def stage_of(self, slot: str) -> int:
        return next(i for i, stage in enumerate(self.stages) if any(s.name == slot for s in stage.slots))

    def slot(self, name: str) -> Slot:
        return next(slot for slot in self.slots if slot.name == name)


def _float(keep: Tensor, like: Tensor) -> Tensor:
    return keep.to(like.dtype)


class LinearCombiner:
    """input[r] = bias[r] + sum_s sum_e W[r, s, e] * value[s, e]: a Linear layer (no extra dims) or one that
    reads each sender through several features (a conv channel's pooled map: extra = spatial positions)."""

    def __init__(self, weight: Float[Tensor, "n_receivers n_senders *extra"], bias: Tensor | None) -> None:
        self.weight = weight
        self.bias = bias
        self.extra = weight.dim() - 2

    def _flat(self, value: Tensor) -> Tensor:  # (G, m, n_senders, E)
        return value.reshape(*value.shape[:3], -1)

    def full(self, values: list[Tensor]) -> Tensor:
        [value] = values
        weight = self.weight.reshape(self.weight.shape[0], -1)
        out = F.linear(value.reshape(*value.shape[:2], -1), weight)
        return out if self.bias is None else out + self.bias

    def delta(self, index: int, diff: Tensor, keep: Tensor) -> Tensor:
        weight = self.weight.reshape(*self.weight.shape[:2], -1)
        masked = weight * _float(keep, weight)[..., None]  # (G or 1, r, s, E)
        if len(masked) == 1:
            return torch.einsum("gmse,rse->gmr", self._flat(diff), masked[0])
        return torch.einsum("gmse,grse->gmr", self._flat(diff), masked)

    def receiver_terms(self, index: int, diff: Tensor, r: int) -> Tensor:
        row = self.weight[r].reshape(self.weight.shape[1], -1)  # (s, E)
        return torch.einsum("gmse,se->sgm", self._flat(diff), row)

    def sender_terms(self, index: int, diff: Tensor, senders: Tensor, receivers: Tensor, keep: Tensor | None
                     ) -> Tensor:
        block = self.weight[receivers][:, senders].reshape(len(receivers), len(senders), -1)  # (a, j, E)
        if keep is not None:
            block = block * _float(keep, block)[..., None]
        return torch.einsum("gmje,aje->gma", diff.reshape(*diff.shape[:2], len(senders), -1), block)


class ConvCombiner:
    """A same-padding conv: input[r] (an h x w map) = bias[r] + sum_s W[r, s] (*) value[s]; sender values are
    (G, m, n_senders, h * w)."""

    def __init__(self, weight: Float[Tensor, "out in k k"], bias: Tensor | None, height: int, width: int) -> None:
        self.weight, self.bias, self.height, self.width = weight, bias, height, width
        self.padding = weight.shape[-1] // 2

    def _maps(self, value: Tensor) -> Tensor:
        return value.reshape(-1, value.shape[2], self.height, self.width)

    def full(self, values: list[Tensor]) -> Tensor:
        [value] = values
        out = self._conv(value, self.weight)
        return out if self.bias is None else out + self.bias.view(-1, 1, 1)

    def delta(self, index: int, diff: Tensor, keep: Tensor) -> Tensor:
        groups, pairs, senders = diff.shape[:3]
        masked = self.weight[None] * _float(keep, diff)[..., None, None]  # (G or 1, out, in, k, k)
        if len(masked) == 1:
            return self._conv(diff, masked[0])
        masked = masked.flatten(0, 1)  # (G * out, in, k, k): one group of the grouped conv per circuit
        stacked = diff.reshape(groups, pairs, senders, self.height, self.width).transpose(0, 1)
        out = F.conv2d(stacked.reshape(pairs, groups * senders, self.height, self.width), masked,
                       padding=self.padding, groups=groups)
        return out.reshape(pairs, groups, -1, self.height, self.width).transpose(0, 1)

    def _conv(self, diff: Tensor, weight: Tensor) -> Tensor:
        out = F.conv2d(self._maps(diff), weight, padding=self.padding)
        return out.reshape(*diff.shape[:2], *out.shape[1:])

    def receiver_terms(self, index: int, diff: Tensor, r: int) -> Tensor:
        maps = self._maps(diff)  # (G m, s, h, w)
        kernels = self.weight[r][:, None]  # (s, 1, k, k): each sender's own kernel
        out = F.conv2d(maps, kernels, padding=self.padding, groups=maps.shape[1])  # (G m, s, h, w)
        return out.reshape(*diff.shape[:2], *out.shape[1:]).movedim(2, 0)

    def sender_terms(self, index: int, diff: Tensor, senders: Tensor, receivers: Tensor, keep: Tensor | None
                     ) -> Tensor:
        kernels = self.weight[receivers][:, senders]  # (a, j, k, k)
        if keep is not None:
            kernels = kernels * _float(keep, kernels)[..., None, None]
        return self._conv(diff, kernels)


class ResidualCombiner:
    """A residual stream read by ``n_receivers`` receivers (a layer's heads, or one MLP block / read-out):
    input[r] = constant + sum over sites and senders of value[s]. ``constant`` (the attention output biases
    of the layers before, which belong to no sender) broadcasts to (*receiver_shape)."""

    def __init__(self, n_receivers: int, constant: Tensor) -> None:
        self.n_receivers, self.constant = n_receivers, constant

    def full(self, values: list[Tensor]) -> Tensor:
        total = sum(value.sum(2) for value in values) + self.constant  # (G, m, *shape)
        return total[:, :, None].expand(-1, -1, self.n_receivers, *total.shape[2:])

    def delta(self, index: int, diff: Tensor, keep: Tensor) -> Tensor:
        keep = _float(keep, diff)
        return torch.einsum("grs,gms...->gmr...", keep.expand(diff.shape[0], -1, -1), diff)

    def receiver_terms(self, index: int, diff: Tensor, r: int) -> Tensor:
        return diff.movedim(2, 0)

    def sender_terms(self, index: int, diff: Tensor, senders: Tensor, receivers: Tensor, keep: Tensor | None
                     ) -> Tensor:
        mask = torch.ones(len(receivers), len(senders), dtype=diff.dtype, device=diff.device) if keep is None \
            else _float(keep, diff)
        return torch.einsum("aj,gmj...->gma...", mask, diff)
