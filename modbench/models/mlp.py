"""A hooked MLP: TransformerLens ``HookedRootModule`` with a ``HookPoint`` on every layer's pre- and
post-activation, named like HookedTransformer's MLP hooks (``blocks.{i}.mlp.hook_pre``/``hook_post``),
so ``transformer_lens.utils.get_act_name("post", i)`` addresses hidden layer i."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn
from transformer_lens.hook_points import HookPoint

from modbench.models.base import class_order, ModelAdapter, NeuronGroup, PermSite, Site, Wire, Wiring
from modbench.models.catalog import MLPConfig
from modbench.models.edges import OUTPUT, EdgeGraph, EdgeSite, LinearCombiner, Slot, Stage
from modbench.models.geometry import layer_coords

ACTIVATIONS = {"silu": nn.SiLU, "relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh}
IN_PLACE = {"silu": lambda x: F.silu(x, inplace=True), "relu": torch.relu_, "gelu": F.gelu, "tanh": torch.tanh_}


class MLPLayer(nn.Module):
    """One hidden layer: linear -> hook_pre -> activation -> hook_post."""

    def __init__(self, d_in: int, d_out: int, activation: str, bias: bool) -> None:
        super().__init__()
        self.linear = nn.Linear(d_in, d_out, bias=bias)
        self.hook_pre = HookPoint()
        self.act = ACTIVATIONS[activation]()
        self.hook_post = HookPoint()


class Block(nn.Module):
    """Wrapper so that hook names read ``blocks.{i}.mlp.hook_*`` as in TransformerLens."""

    def __init__(self, mlp: MLPLayer) -> None:
        super().__init__()
        self.mlp = mlp


class HookedMLP(ModelAdapter):
    """MLP whose neurons carry BIMT coordinates (buffers, so ``.to()`` moves them).

    ``output_order[s]`` is the class held by output slot s: BIMT may permute output neurons and the
    forward pass undoes that, so logits always come out in class order.
    """

    def __init__(self, cfg: MLPConfig) -> None:
        super().__init__()
        self.cfg = cfg
        widths = cfg.widths
        self.blocks = nn.ModuleList(
            Block(MLPLayer(widths[i], widths[i + 1], cfg.activation, cfg.bias)) for i in range(cfg.n_hidden)
        )
        self.unembed = nn.Linear(widths[-2], widths[-1], bias=cfg.bias)
        self.hook_logits = HookPoint()
        for index, width in enumerate(widths):
            self.register_buffer(f"coords_{index}", layer_coords(width, is_output=index == len(widths) - 1))
        self.register_buffer("output_order", torch.arange(widths[-1]))
        self.setup()

    def linears(self) -> list[nn.Linear]:
        return [block.mlp.linear for block in self.blocks] + [self.unembed]

    def coords(self, index: int) -> Tensor:
        return getattr(self, f"coords_{index}")

    def forward(self, x: Float[Tensor, "batch *d_in"]) -> Float[Tensor, "batch n_classes"]:
        return self.run_from("blocks.0.mlp.hook_pre", self.blocks[0].mlp.linear(x.flatten(1)))

    def run_from(self, hook: str, value: Tensor, scratch: bool = False) -> Tensor:
        """Continue from hidden layer l's pre-activation (``hook`` = ``blocks.{l}.mlp.hook_pre``).

        ``scratch``: ``value`` is a temporary the caller no longer needs, so while no hook is attached the
        activations are computed in place (same numbers, one large allocation less)."""
        start = self._layer_of(hook, "hook_pre")
        in_place = scratch and not any(point._forward_hooks for point in self.hook_dict.values())
        h = value
        for index in range(start, len(self.blocks)):
            mlp = self.blocks[index].mlp
            pre = mlp.hook_pre(h if index == start else mlp.linear(h))
            h = mlp.hook_post(IN_PLACE[self.cfg.activation](pre) if in_place else mlp.act(pre))
        return self.hook_logits(self._unembed_in_class_order(h))

    def _unembed_in_class_order(self, h: Tensor) -> Tensor:
        """Logits in class order; permuting the read-out's rows costs less than gathering the logits."""
        order = class_order(self.output_order)
        bias = None if self.unembed.bias is None else self.unembed.bias[order]
        return torch.nn.functional.linear(h, self.unembed.weight[order], bias)

    def _layer_of(self, hook: str, kind: str) -> int:
        parts = hook.split(".")
        if len(parts) != 4 or parts[0] != "blocks" or parts[2:] != ["mlp", kind]:
            raise KeyError(f"cannot resume an MLP from {hook!r} (expected blocks.L.mlp.{kind})")
        return int(parts[1])

    def sites(self) -> tuple[Site, ...]:
        return tuple(
            Site(f"blocks.{i}.mlp.hook_post", "neuron", self.cfg.widths[i + 1], axis=1, layer=i,
                 group=f"blocks.{i}.mlp")
            for i in range(self.cfg.n_hidden)
        )

    def resume_hook(self, site: Site) -> str:
        return f"blocks.{self._layer_of(site.name, 'hook_post')}.mlp.hook_pre"

    def patch_cache_hooks(self, site: Site) -> tuple[str, ...]:
        layer = self._layer_of(site.name, "hook_post")
        after = f"blocks.{layer + 1}.mlp.hook_pre" if layer + 1 < len(self.blocks) else "hook_logits"
        return (site.name, after)

    def patch_each(self, site: Site, clean: Tensor, corrupted: dict[str, Tensor]) -> Tensor:
        """Exact shortcut: setting neuron i to its clean value adds W[:, i] * (clean_i - corrupted_i) to the
        next layer's input (rank 1), so the patched layer's matrix product is never recomputed."""
        layer = self._layer_of(site.name, "hook_post")
        delta = clean - corrupted[site.name]  # (pairs, n)
        pairs, n = delta.shape
        if layer + 1 < len(self.blocks):
            after = f"blocks.{layer + 1}.mlp.hook_pre"
            weight = self.blocks[layer + 1].mlp.linear.weight  # (n_next, n)
            # weight.T made contiguous so the (pairs, n, n_next) result is laid out row-major: no copy below.
            rows = torch.addcmul(corrupted[after][:, None, :], delta[:, :, None], weight.T.contiguous()[None])
            return self.run_from(after, rows.reshape(pairs * n, -1), scratch=True).view(pairs, n, -1)
        weight = self.unembed.weight[class_order(self.output_order)]  # rows in class order
        logits = torch.addcmul(corrupted["hook_logits"][:, None, :], delta[:, :, None], weight.T.contiguous()[None])
        return self.hook_logits(logits.reshape(pairs * n, -1)).view(pairs, n, -1)

    def wiring(self) -> Wiring:
        """Groups input -> blocks.{i}.mlp -> logits; inputs are never permuted (as in the BIMT code)."""
        widths, linears = self.cfg.widths, self.linears()
        names = ["input", *[f"blocks.{i}.mlp" for i in range(self.cfg.n_hidden)], "logits"]
        groups = {}
        for index, name in enumerate(names):
            sites: list[PermSite] = []
            if index > 0:
                into = linears[index - 1]
                sites = [PermSite(into.weight, 0)] + ([PermSite(into.bias, 0)] if into.bias is not None else [])
                if index < len(widths) - 1:
                    sites.append(PermSite(linears[index].weight, 1))
                else:
                    sites.append(PermSite(self.output_order, 0))
            groups[name] = NeuronGroup(name, self.coords(index), permutable=index > 0, sites=tuple(sites))
        wires = tuple(
            Wire(f"{names[i + 1]}.linear" if i + 1 < len(linears) else "unembed", lin.weight, reads=names[i],
                 writes=names[i + 1], bias=lin.bias, is_last=i == len(linears) - 1)
            for i, lin in enumerate(linears)
        )
        return Wiring(groups, wires)

    # --- edge graph: every weight is an edge (input pixel -> neuron -> neuron -> output slot)

    def edge_graph(self) -> EdgeGraph:
        """One stage per hidden layer (its pre-activation is the slot) and the read-out; edge sites are the
        wiring's wires, receivers in parameter order (output slots, not classes: see ``edge_stage``)."""
        names = ["input", *[f"blocks.{i}.mlp" for i in range(self.cfg.n_hidden)]]
        groups = dict(zip(names, self.cfg.widths[:-1], strict=True))
        stages = []
        for index, linear in enumerate(self.linears()):
            last = index == len(self.blocks)
            slot_name, node = ("logits", OUTPUT) if last else (names[index + 1], names[index + 1])
            wire = "unembed" if last else f"{names[index + 1]}.linear"
            site = EdgeSite(wire, names[index], slot_name, linear.out_features, linear.in_features, wire=wire)
            slot = Slot(slot_name, node, linear.out_features, (site,), LinearCombiner(linear.weight, linear.bias))
            stages.append(Stage((slot,), () if last else (node,), per_node=not last))
        return EdgeGraph(groups, ("input",), tuple(stages))

    def edge_inputs(self, inputs: Tensor) -> dict[str, Tensor]:
        return {"input": inputs.flatten(2)}

    def edge_stage(self, index: int, composed: dict[str, Tensor]) -> dict[str, Tensor]:
        if index == len(self.blocks):  # output slots back in class order, as ``forward`` does
            return {OUTPUT: self.hook_logits(composed["logits"][..., class_order(self.output_order)])}
        mlp = self.blocks[index].mlp
        return {f"blocks.{index}.mlp": mlp.hook_post(mlp.act(mlp.hook_pre(composed[f"blocks.{index}.mlp"])))}

