"""A hooked MLP: TransformerLens ``HookedRootModule`` with a ``HookPoint`` on every layer's pre- and
post-activation, named like HookedTransformer's MLP hooks (``blocks.{i}.mlp.hook_pre``/``hook_post``),
so ``transformer_lens.utils.get_act_name("post", i)`` addresses hidden layer i."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor, nn
from transformer_lens.hook_points import HookedRootModule, HookPoint

from modbench.models.base import NeuronLayer, WiredLinear, register_model
from modbench.models.geometry import layer_coords

ACTIVATIONS = {"silu": nn.SiLU, "relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh}


@dataclass(frozen=True)
class MLPConfig:
    widths: tuple[int, ...] = (784, 100, 100, 10)
    activation: str = "silu"
    bias: bool = True

    def __post_init__(self) -> None:
        if len(self.widths) < 3:
            raise ValueError("an MLP needs an input, at least one hidden layer and an output")
        if any(not isinstance(w, int) or w < 1 for w in self.widths):
            raise ValueError(f"widths must be positive integers, got {self.widths}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {self.activation!r}")

    @property
    def n_hidden(self) -> int:
        return len(self.widths) - 2


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


class HookedMLP(HookedRootModule):
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

    def forward(self, x: Float[Tensor, "batch d_in"]) -> Float[Tensor, "batch n_classes"]:
        return self.run_from(-1, x.flatten(1))

    def run_from(self, layer: int, pre: Tensor) -> Tensor:
        """Continue the forward pass from hidden layer ``layer``'s pre-activation (-1: from the input).

        Hooks on ``blocks.{layer}.mlp.hook_pre`` and later fire, so patching hooks work as usual while
        the layers before ``layer`` are skipped.
        """
        h = pre
        for index, block in enumerate(self.blocks):
            if index < layer:
                continue
            mlp = block.mlp
            pre_act = mlp.hook_pre(h if index == layer else mlp.linear(h))
            h = mlp.hook_post(mlp.act(pre_act))
        slots = self.unembed(h)
        inverse = torch.empty_like(self.output_order)
        inverse[self.output_order] = torch.arange(len(inverse), device=inverse.device)
        return self.hook_logits(slots[:, inverse])

    def wiring(self) -> list[WiredLinear]:
        linears = self.linears()
        return [
            WiredLinear(lin.weight, lin.bias, self.coords(i), self.coords(i + 1), is_last=i == len(linears) - 1)
            for i, lin in enumerate(linears)
        ]

    def neuron_layers(self) -> list[NeuronLayer]:
        """Hidden layers and the output layer (inputs are not permuted, as in the BIMT code)."""
        linears = self.linears()
        layers = []
        for index in range(1, len(self.cfg.widths)):
            into = linears[index - 1]
            sites: list[tuple[Tensor, int]] = [(into.weight, 0)]
            if into.bias is not None:
                sites.append((into.bias, 0))
            is_output = index == len(linears)
            if is_output:
                sites.append((self.output_order, 0))
            else:
                sites.append((linears[index].weight, 1))
            layers.append(
                NeuronLayer(self.cfg.widths[index], index - 1, None if is_output else index, tuple(sites))
            )
        return layers

    def hidden_hook_names(self, kind: str = "post") -> list[str]:
        return [f"blocks.{i}.mlp.hook_{kind}" for i in range(self.cfg.n_hidden)]


@register_model("mnist_mlp", MLPConfig(), "784-100-100-10 SiLU MLP with BIMT geometry (Liu et al. MNIST code)")
def build_mlp(cfg: MLPConfig) -> HookedMLP:
    return HookedMLP(cfg)


@register_model(
    "mnist_mlp_relu",
    MLPConfig(widths=(784, 64, 64, 10), activation="relu", bias=False),
    "784-64-64-10 ReLU MLP without bias (Golechha et al. Table 1)",
)
def build_relu_mlp(cfg: MLPConfig) -> HookedMLP:
    return HookedMLP(cfg)
