"""What discoverers, regimes and the trainer need from a model, for every model kind.

A modbench model is a TransformerLens ``HookedRootModule`` (``hooks``/``run_with_cache`` work, hook names
follow TransformerLens) that inherits :class:`ModelAdapter` and declares:

* **sites** (:class:`Site`): where circuit candidates live, as a hook name and the axis of that hook's
  activation that indexes them: MLP neurons (``blocks.{l}.mlp.hook_post``, last axis), conv channels
  (axis 1 of a ``(batch, channels, h, w)`` activation), attention heads (axis 2 of ``hook_z``);
* **resumption**: ``resume_hook(site)`` names an earlier hook whose cached value is enough to restart the
  forward pass there (``run_from``), so a patched run does not recompute the layers below the site;
* **wiring** (:class:`Wiring`, for the BIMT-family regimes): neuron groups with 2-D coordinates (a hidden
  layer, a conv channel group, the residual stream) and the weight matrices (:class:`Wire`) that read one
  group and write another. A group lists every tensor dimension a permutation of it must move
  (:class:`PermSite`), so a residual stream read and written by many matrices is one group.

``patch_each`` (all single-candidate patches of a site, for every pair) has a generic implementation here;
a model may override it with an exact shortcut (the MLP does: each patched row differs from the corrupted
run in one neuron, a rank-1 change of the next layer's input). Tests check shortcut == generic.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

import torch
from jaxtyping import Float, Int
from torch import Tensor
from transformer_lens.hook_points import HookedRootModule


CandidateKind = Literal["neuron", "channel", "head"]


@dataclass(frozen=True)
class Site:
    """Candidates at one hook: ``size`` of them along ``axis`` of the hook's activation (batch is axis 0).

    ``group`` names the wiring's neuron group the candidates belong to (None if none); each candidate
    covers ``group size / size`` consecutive neurons of it (a head covers its d_head dimensions).
    ``layer`` orders sites from input to output.
    """

    name: str
    kind: CandidateKind
    size: int
    axis: int
    layer: int
    group: str | None = None

    def __post_init__(self) -> None:
        if self.size < 1 or self.axis < 1:
            raise ValueError(f"site {self.name}: size must be >= 1 and axis >= 1 (0 is the batch)")


@dataclass(frozen=True)
class PermSite:
    """The tensor dimension(s) that a permutation of a neuron group moves. Several ``dim`` are flattened
    row-major (W_Q's (head, d_head) dims 0 and 2 index one group of n_heads * d_head neurons). ``view``
    reshapes the tensor first (an fc weight (out, channels * h * w) seen as (out, channels, h * w))."""

    tensor: Tensor
    dim: int | tuple[int, ...]
    view: tuple[int, ...] | None = None

    def viewed(self, tensor: Tensor | None = None) -> Tensor:
        tensor = self.tensor if tensor is None else tensor
        return tensor if self.view is None else tensor.view(self.view)

    def permute_(self, perm: Tensor, tensor: Tensor | None = None) -> None:
        """Reorder ``tensor`` (default: the site's own; e.g. an optimizer moment shaped like it) in place:
        new index s along the (flattened) dims holds old index ``perm[s]``."""
        view = self.viewed(tensor)
        dims = (self.dim,) if isinstance(self.dim, int) else self.dim
        rest = [d for d in range(view.dim()) if d not in dims]
        moved = view.permute(*dims, *rest)
        flat = moved.reshape(-1, *moved.shape[len(dims):]).index_select(0, perm.to(view.device))
        moved.copy_(flat.view(moved.shape))


@dataclass(frozen=True)
class NeuronGroup:
    """Neurons placed at ``coords`` (n, 2). ``permutable`` groups may be swapped (BIMT); ``sites`` are
    every tensor dimension that must move with them. ``block`` > 0 restricts permutations to within
    consecutive blocks of that size (a head's d_head query/key dimensions can be reordered together, but
    not moved to another head on their own)."""

    name: str
    coords: Float[Tensor, "n 2"]
    permutable: bool
    sites: tuple[PermSite, ...] = ()
    block: int = 0

    def __post_init__(self) -> None:
        if self.block < 0 or (self.block and self.size % self.block):
            raise ValueError(f"group {self.name}: block {self.block} does not divide its {self.size} neurons")

    @property
    def size(self) -> int:
        return int(self.coords.shape[0])

    def check_permutation(self, perm: Tensor) -> None:
        """A permutation this group allows (within its blocks, if any), else ValueError."""
        n = self.size
        if perm.shape != (n,) or not torch.equal(perm.sort().values.cpu(), torch.arange(n)):
            raise ValueError(f"group {self.name}: not a permutation of its {n} neurons")
        if self.block and not torch.equal(perm.cpu() // self.block, torch.arange(n) // self.block):
            raise ValueError(f"group {self.name}: a permutation must stay within blocks of {self.block}")


@dataclass(frozen=True)
class TiedBlocks:
    """Whole blocks of several groups moved as one: block b of every member group (its neurons
    b * block .. (b + 1) * block - 1) goes to the same new place, e.g. an attention head's query/key
    dimensions (one group) and its value/output dimensions (another) swapped with another head's."""

    name: str
    members: tuple[str, ...]
    block: int

    def expand(self, block_perm: Int[Tensor, " blocks"]) -> Int[Tensor, " n"]:
        """The neuron permutation of each member group for a permutation of its blocks."""
        offsets = torch.arange(self.block, device=block_perm.device)
        return (block_perm[:, None] * self.block + offsets).flatten()


@dataclass(frozen=True)
class Wire:
    """A weight (a parameter, or a view of one: ``view``) that reads group ``reads`` and writes ``writes``.

    In the (possibly viewed) weight, ``out_dims`` index the written group's neurons and ``in_dims`` the read
    group's (several dims are flattened row-major, e.g. heads x d_head); other dims (a conv kernel) are
    summed over. ``bias`` (optional) is indexed by the written group. ``is_last`` marks the read-out.
    """

    name: str
    param: Tensor
    reads: str
    writes: str
    out_dims: tuple[int, ...] = (0,)
    in_dims: tuple[int, ...] = (1,)
    view: tuple[int, ...] | None = None
    bias: Tensor | None = None
    is_last: bool = False

    @property
    def weight(self) -> Tensor:
        return self.param if self.view is None else self.param.view(self.view)

    def _order(self) -> tuple[list[int], list[int]]:
        extra = [d for d in range(self.weight.dim()) if d not in self.out_dims + self.in_dims]
        return [*self.out_dims, *self.in_dims, *extra], extra

    def matrix(self, tensor: Tensor | None = None) -> Float[Tensor, "n_out n_in"]:
        """|weight| as an (out, in) matrix, summed over extra dims (magnitudes, for costs and swaps)."""
        weight = self.weight if tensor is None else tensor
        order, extra = self._order()
        moved = weight.detach().abs().permute(order)
        n_out = int(torch.tensor([weight.shape[d] for d in self.out_dims]).prod())
        n_in = int(torch.tensor([weight.shape[d] for d in self.in_dims]).prod())
        return moved.reshape(n_out, n_in, -1).sum(-1) if extra else moved.reshape(n_out, n_in)

    def spread(self, per_pair: Float[Tensor, "n_out n_in"]) -> Tensor:
        """An (out, in) matrix laid out like ``param`` (broadcast over extra dims): per-entry costs."""
        order, extra = self._order()
        shape = self.weight.shape
        target = [shape[d] for d in self.out_dims] + [shape[d] for d in self.in_dims] + [1] * len(extra)
        laid = per_pair.reshape(target).permute([order.index(d) for d in range(len(order))])
        return laid.expand(shape).reshape(self.param.shape)


@dataclass(frozen=True)
class Wiring:
    groups: dict[str, NeuronGroup]
    wires: tuple[Wire, ...]
    tied: tuple[TiedBlocks, ...] = ()

    def touching(self, group: str) -> tuple[list[Wire], list[Wire]]:
        """(wires writing ``group``, wires reading it)."""
        return ([w for w in self.wires if w.writes == group], [w for w in self.wires if w.reads == group])


def class_order(output_order: Tensor) -> Tensor:
    """Index that puts output slots back in class order (``output_order[s]`` is the class in slot s)."""
    inverse = torch.empty_like(output_order)
    inverse[output_order] = torch.arange(len(inverse), device=inverse.device)
    return inverse


@runtime_checkable
class OptimizerState(Protocol):
    """What a swap needs of an optimizer: ``state[param]``, the buffers (Adam's moments) kept per parameter.
    A ``torch.optim.Optimizer`` is one; a packed trainer passes a view of one model's slice."""

    state: Mapping[Tensor, Mapping[str, Any]]


def permute_group(group: NeuronGroup, perm: Tensor, optimizer: OptimizerState | None = None) -> None:
    """Apply ``perm`` (new slot s holds old neuron perm[s]) to every site of ``group``; with ``optimizer``,
    Adam-style moment buffers of the permuted parameters move too."""
    group.check_permutation(perm)
    _move(group, perm, optimizer)


def permute_blocks(wiring: Wiring, tied: TiedBlocks, block_perm: Tensor,
                   optimizer: OptimizerState | None = None) -> None:
    """Move whole blocks of every member group of ``tied`` together (new place b holds old block
    ``block_perm[b]``), e.g. attention heads."""
    members = [wiring.groups[name] for name in tied.members]
    blocks = members[0].size // tied.block
    if block_perm.shape != (blocks,) or not torch.equal(block_perm.sort().values.cpu(), torch.arange(blocks)):
        raise ValueError(f"{tied.name}: not a permutation of its {blocks} blocks")
    for group in members:
        _move(group, tied.expand(block_perm), optimizer)


def _move(group: NeuronGroup, perm: Tensor, optimizer: OptimizerState | None) -> None:
    with torch.no_grad():
        for site in group.sites:
            site.permute_(perm)
            state = optimizer.state.get(site.tensor, {}) if optimizer is not None else {}
            for value in state.values():
                if isinstance(value, Tensor) and value.shape == site.tensor.shape:
                    site.permute_(perm, value)


class ModelAdapter(HookedRootModule):
    """Base class of every modbench model (see the module docstring for the protocol)."""

    def sites(self) -> tuple[Site, ...]:
        raise NotImplementedError

    def resume_hook(self, site: Site) -> str:
        raise NotImplementedError

    def run_from(self, hook: str, value: Tensor) -> Tensor:
        """Continue the forward pass from ``hook``'s value; hooks at ``hook`` and after it fire."""
        raise NotImplementedError

    def wiring(self) -> Wiring:
        raise NotImplementedError(f"{type(self).__name__} declares no wiring (needed by BIMT-family regimes)")

    def patch_cache_hooks(self, site: Site) -> tuple[str, ...]:
        """Hooks of the corrupted run that ``patch_each`` reads (the site and its resumption point)."""
        return (site.name, self.resume_hook(site))

    def site(self, name: str) -> Site:
        for site in self.sites():
            if site.name == name:
                return site
        raise KeyError(f"{type(self).__name__} has no candidate site {name!r}")

    def patch_each(
        self, site: Site, clean: Tensor, corrupted: dict[str, Tensor]
    ) -> Float[Tensor, "pairs candidates *out"]:
        """Outputs of the corrupted run with each candidate of ``site`` in turn set to its clean value.

        ``clean`` is the site's clean activation (pairs, ...); ``corrupted`` holds the corrupted run's
        activations at ``site.name`` and at ``resume_hook(site)``. Generic: repeat each pair's resumption
        value once per candidate and patch candidate c of row (pair, c) with a mask, in one forward.
        """
        resume = corrupted[self.resume_hook(site)]
        pairs, n = clean.shape[0], site.size
        rows = resume.repeat_interleave(n, dim=0)
        with self.hooks(fwd_hooks=[(site.name, one_hot_patch(clean, site))]):
            out = self.run_from(self.resume_hook(site), rows)
        return out.reshape(pairs, n, *out.shape[1:])  # reshape: a view, also under torch.vmap


def one_hot_patch(clean: Tensor, site: Site) -> Callable[..., Tensor]:
    """Hook for activations laid out as (pairs * n, ...): row (p, c) gets candidate c from ``clean[p]``."""

    def hook(activation: Tensor, hook: Any = None) -> Tensor:
        pairs, n = clean.shape[0], site.size
        shape = activation.shape[1:]
        mask_shape = [1, n] + [1] * len(shape)
        mask_shape[site.axis + 1] = n
        mask = torch.eye(n, dtype=torch.bool, device=activation.device).view(mask_shape)
        patched = torch.where(mask, clean[:, None], activation.reshape(pairs, n, *shape))
        return patched.reshape(activation.shape)

    return hook

