"""A hooked CNN (Golechha et al. CIFAR model): conv -> activation -> 2x2 max-pool -> MLP head.

Hooks follow TransformerLens: ``blocks.0.conv.hook_pre``/``hook_post`` (conv output, (batch, C, H, W),
before/after the activation; pooling comes after ``hook_post``), then ``blocks.{i}.mlp.hook_pre``/``hook_post``
for the hidden fc layers i = 1..len(hidden), and ``hook_logits``."""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor, nn
from transformer_lens.hook_points import HookPoint

from modbench.models.base import class_order, ModelAdapter, NeuronGroup, PermSite, Site, Wire, Wiring
from modbench.models.catalog import CNNConfig
from modbench.models.edges import OUTPUT, ConvCombiner, EdgeGraph, EdgeSite, LinearCombiner, Slot, Stage
from modbench.models.geometry import layer_coords
from modbench.models.mlp import ACTIVATIONS, Block, MLPLayer


class ConvLayer(nn.Module):
    """conv2d (same padding) -> hook_pre -> activation -> hook_post -> 2x2 max-pool."""

    def __init__(self, c_in: int, c_out: int, kernel: int, activation: str, bias: bool) -> None:
        super().__init__()
        self.conv2d = nn.Conv2d(c_in, c_out, kernel, stride=1, padding=kernel // 2, bias=bias)
        self.hook_pre = HookPoint()
        self.act = ACTIVATIONS[activation]()
        self.hook_post = HookPoint()
        self.pool = nn.MaxPool2d(2)


class ConvBlock(nn.Module):
    """Wrapper so that hook names read ``blocks.0.conv.hook_*``."""

    def __init__(self, conv: ConvLayer) -> None:
        super().__init__()
        self.conv = conv


class HookedCNN(ModelAdapter):
    """CNN whose channels and neurons carry BIMT coordinates (buffers). ``output_order[s]`` is the class held
    by output slot s; the forward pass undoes output permutations, so logits come out in class order."""

    def __init__(self, cfg: CNNConfig) -> None:
        super().__init__()
        self.cfg = cfg
        fc_widths = (cfg.flat_features, *cfg.hidden)
        self.blocks = nn.ModuleList([
            ConvBlock(ConvLayer(cfg.in_channels, cfg.channels, cfg.kernel, cfg.activation, cfg.bias)),
            *(Block(MLPLayer(d_in, d_out, cfg.activation, cfg.bias)) for d_in, d_out in zip(fc_widths, cfg.hidden)),
        ])
        self.unembed = nn.Linear(cfg.hidden[-1], cfg.n_classes, bias=cfg.bias)
        self.hook_logits = HookPoint()
        widths = self.group_widths()
        for index, width in enumerate(widths):
            self.register_buffer(f"coords_{index}", layer_coords(width, is_output=index == len(widths) - 1))
        self.register_buffer("output_order", torch.arange(cfg.n_classes))
        self.setup()

    def group_widths(self) -> tuple[int, ...]:
        """Sizes of the wiring groups: input channels, conv channels, hidden fc layers, classes."""
        return (self.cfg.in_channels, self.cfg.channels, *self.cfg.hidden, self.cfg.n_classes)

    def group_names(self) -> list[str]:
        hidden = [f"blocks.{i}.mlp" for i in range(1, len(self.cfg.hidden) + 1)]
        return ["input", "blocks.0.conv", *hidden, "logits"]

    def coords(self, index: int) -> Tensor:
        return getattr(self, f"coords_{index}")

    def spatial(self) -> int:
        return (self.cfg.image_size // 2) ** 2

    def forward(self, x: Float[Tensor, "batch *image"]) -> Float[Tensor, "batch n_classes"]:
        size = self.cfg.image_size
        images = x.reshape(x.shape[0], self.cfg.in_channels, size, size)
        return self.run_from("blocks.0.conv.hook_pre", self.blocks[0].conv.conv2d(images))

    def run_from(self, hook: str, value: Tensor) -> Tensor:
        """Continue from ``blocks.0.conv.hook_pre`` or ``blocks.{i}.mlp.hook_pre``."""
        start = self._block_of(hook, "hook_pre")
        h = value
        if start == 0:
            conv = self.blocks[0].conv
            h = conv.pool(conv.hook_post(conv.act(conv.hook_pre(h)))).flatten(1)
        for index in range(max(start, 1), len(self.blocks)):
            mlp = self.blocks[index].mlp
            h = mlp.hook_post(mlp.act(mlp.hook_pre(h if index == start else mlp.linear(h))))
        return self.hook_logits(self.unembed(h)[:, class_order(self.output_order)])

    def _block_of(self, hook: str, kind: str) -> int:
        parts = hook.split(".")
        if len(parts) == 4 and parts[0] == "blocks" and parts[1].isdigit() and parts[3] == kind:
            index = int(parts[1])
            if (index == 0 and parts[2] == "conv") or (1 <= index < len(self.blocks) and parts[2] == "mlp"):
                return index
        raise KeyError(f"cannot resume the CNN from {hook!r} (expected blocks.0.conv.{kind} or "
                       f"blocks.L.mlp.{kind}, 1 <= L <= {len(self.blocks) - 1})")

    def sites(self) -> tuple[Site, ...]:
        conv = Site("blocks.0.conv.hook_post", "channel", self.cfg.channels, axis=1, layer=0, group="blocks.0.conv")
        return (conv, *(
            Site(f"blocks.{i}.mlp.hook_post", "neuron", width, axis=1, layer=i, group=f"blocks.{i}.mlp")
            for i, width in enumerate(self.cfg.hidden, start=1)
        ))

    def resume_hook(self, site: Site) -> str:
        index = self._block_of(site.name, "hook_post")
        return "blocks.0.conv.hook_pre" if index == 0 else f"blocks.{index}.mlp.hook_pre"

    def wiring(self) -> Wiring:
        """Groups input -> blocks.0.conv -> blocks.{i}.mlp -> logits; input channels are never permuted."""
        conv = self.blocks[0].conv.conv2d
        linears = [block.mlp.linear for block in self.blocks[1:]] + [self.unembed]
        fc1_view = (self.cfg.hidden[0], self.cfg.channels, self.spatial())
        names = self.group_names()

        def incoming(layer: nn.Module) -> list[PermSite]:
            return [PermSite(layer.weight, 0)] + ([PermSite(layer.bias, 0)] if layer.bias is not None else [])

        groups = {"input": NeuronGroup("input", self.coords(0), permutable=False)}
        conv_sites = [*incoming(conv), PermSite(linears[0].weight, 1, view=fc1_view)]
        groups[names[1]] = NeuronGroup(names[1], self.coords(1), permutable=True, sites=tuple(conv_sites))
        for index, layer in enumerate(linears):
            last = index == len(linears) - 1
            after = PermSite(self.output_order, 0) if last else PermSite(linears[index + 1].weight, 1)
            name = names[index + 2]
            groups[name] = NeuronGroup(name, self.coords(index + 2), permutable=True,
                                       sites=(*incoming(layer), after))
        wires = [
            Wire("blocks.0.conv.conv2d", conv.weight, reads="input", writes=names[1], bias=conv.bias),
            Wire("blocks.1.mlp.linear", linears[0].weight, reads=names[1], writes=names[2], out_dims=(0,),
                 in_dims=(1,), view=fc1_view, bias=linears[0].bias),
        ]
        wires += [
            Wire(f"{names[i + 2]}.linear" if i + 1 < len(linears) else "unembed", layer.weight, reads=names[i + 1],
                 writes=names[i + 2], bias=layer.bias, is_last=i + 1 == len(linears))
            for i, layer in enumerate(linears) if i > 0
        ]
        return Wiring(groups, tuple(wires))

    # --- edge graph: a kernel between two channels is one edge, as is a pooled channel's map into a neuron

    def edge_graph(self) -> EdgeGraph:
        """Stages: the conv layer (slot: its pre-activation maps), each hidden fc layer, the read-out. A conv
        channel sends its pooled map; its edge into an fc neuron is the neuron's weights on that map."""
        cfg, names = self.cfg, self.group_names()
        conv = self.blocks[0].conv.conv2d
        linears = [block.mlp.linear for block in self.blocks[1:]] + [self.unembed]
        groups = dict(zip(names[:-1], self.group_widths()[:-1], strict=True))
        first = EdgeSite("blocks.0.conv.conv2d", "input", names[1], cfg.channels, cfg.in_channels,
                         wire="blocks.0.conv.conv2d")
        stages = [Stage((Slot(names[1], names[1], cfg.channels, (first,),
                              ConvCombiner(conv.weight, conv.bias, cfg.image_size, cfg.image_size)),), (names[1],),
                        per_node=True)]
        for index, linear in enumerate(linears):
            last = index == len(linears) - 1
            reads, writes = names[index + 1], names[index + 2]
            slot_name, node = ("logits", OUTPUT) if last else (writes, writes)
            wire = "unembed" if last else f"{writes}.linear"
            weight = linear.weight.view(linear.out_features, cfg.channels, -1) if index == 0 else linear.weight
            site = EdgeSite(wire, reads, slot_name, linear.out_features, groups[reads], wire=wire)
            stages.append(Stage((Slot(slot_name, node, linear.out_features, (site,),
                                      LinearCombiner(weight, linear.bias)),), () if last else (node,), per_node=not last))
        return EdgeGraph(groups, ("input",), tuple(stages))

    def edge_inputs(self, inputs: Tensor) -> dict[str, Tensor]:
        return {"input": inputs.reshape(*inputs.shape[:2], self.cfg.in_channels, -1)}

    def edge_stage(self, index: int, composed: dict[str, Tensor]) -> dict[str, Tensor]:
        names = self.group_names()
        if index == 0:
            conv = self.blocks[0].conv
            pre = composed[names[1]]
            post = conv.pool(conv.hook_post(conv.act(conv.hook_pre(pre.flatten(0, 1)))))
            return {names[1]: post.reshape(*pre.shape[:3], -1)}
        if index == len(self.blocks):
            return {OUTPUT: self.hook_logits(composed["logits"][..., class_order(self.output_order)])}
        mlp = self.blocks[index].mlp
        return {names[index + 1]: mlp.hook_post(mlp.act(mlp.hook_pre(composed[names[index + 1]])))}

