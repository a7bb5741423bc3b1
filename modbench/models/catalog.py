"""Built-in model declarations: frozen configs and registrations, no torch (implementations load on build)."""

from __future__ import annotations

from dataclasses import dataclass

from modbench.registries import register_model
from modbench.registry import check_flag, check_int

ACTIVATIONS = ("silu", "relu", "gelu", "tanh")
TRANSFORMER_ACTIVATIONS = ("relu", "gelu", "silu")  # what TransformerLens offers


def check_widths(config: object, name: str) -> None:
    """``config.<name>`` is a tuple of layer widths, each an integer >= 1."""
    widths = getattr(config, name)
    if not isinstance(widths, tuple) or any(not isinstance(v, int) or isinstance(v, bool) or v < 1 for v in widths):
        raise ValueError(f"{name} must be integers >= 1, got {widths!r}")


@dataclass(frozen=True)
class MLPConfig:
    widths: tuple[int, ...] = (784, 100, 100, 10)
    activation: str = "silu"
    bias: bool = True

    def __post_init__(self) -> None:
        check_widths(self, "widths")
        if len(self.widths) < 3:
            raise ValueError("widths must hold an input, at least one hidden layer and an output")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {self.activation!r}")
        check_flag(self, "bias")

    @property
    def n_hidden(self) -> int:
        return len(self.widths) - 2


@dataclass(frozen=True)
class CNNConfig:
    """conv (k x k, stride 1, same padding) -> activation -> 2x2 max-pool, then an MLP head."""

    in_channels: int = 3
    image_size: int = 32
    channels: int = 16
    kernel: int = 3
    hidden: tuple[int, ...] = (64, 64)
    n_classes: int = 10
    activation: str = "relu"
    bias: bool = False

    def __post_init__(self) -> None:
        for name in ("in_channels", "image_size", "channels", "kernel", "n_classes"):
            check_int(self, name, 1)
        check_widths(self, "hidden")
        if self.kernel % 2 == 0:
            raise ValueError(f"kernel must be odd (same padding), got {self.kernel}")
        if self.image_size % 2:
            raise ValueError(f"image_size must be even (2x2 pooling), got {self.image_size}")
        if not self.hidden:
            raise ValueError("hidden must hold at least one layer (the head's)")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {self.activation!r}")
        check_flag(self, "bias")

    @property
    def flat_features(self) -> int:
        return self.channels * (self.image_size // 2) ** 2


@dataclass(frozen=True)
class TransformerConfig:
    """The fields of TransformerLens's ``HookedTransformerConfig`` that modbench varies."""

    n_layers: int = 1
    d_model: int = 128
    n_heads: int = 4
    d_head: int = 32
    d_mlp: int = 128
    d_vocab: int = 114
    d_vocab_out: int = 113
    n_ctx: int = 3
    act_fn: str = "relu"
    normalization_type: str | None = None

    def __post_init__(self) -> None:
        for name in ("n_layers", "d_model", "n_heads", "d_head", "d_mlp", "d_vocab", "d_vocab_out", "n_ctx"):
            check_int(self, name, 1)
        if self.act_fn not in TRANSFORMER_ACTIVATIONS:
            raise ValueError(f"act_fn must be one of {TRANSFORMER_ACTIVATIONS}, got {self.act_fn!r}")
        if self.normalization_type not in (None, "LN", "LNPre"):
            raise ValueError("normalization_type must be None, 'LN' or 'LNPre'")


register_model("mnist_mlp", MLPConfig(), "784-100-100-10 SiLU MLP with BIMT geometry (Liu et al. MNIST code)",
               factory="modbench.models.mlp:HookedMLP")
register_model("mnist_mlp_relu", MLPConfig(widths=(784, 64, 64, 10), activation="relu", bias=False),
               "784-64-64-10 ReLU MLP without bias (Golechha et al. Table 1)", factory="modbench.models.mlp:HookedMLP")
register_model("cifar_cnn", CNNConfig(), "conv 3->16 k3 + 2x2 pool, fc 4096-64-64-10, ReLU, no bias "
               "(Golechha et al. Table 1)", factory="modbench.models.cnn:HookedCNN")
register_model("mnist_cnn", CNNConfig(in_channels=1, image_size=28), "the Golechha CNN on 28x28 grey images "
               "(conv 1->16, fc 3136-64-64-10)", factory="modbench.models.cnn:HookedCNN")
register_model("modadd_transformer", TransformerConfig(), "1-layer HookedTransformer, d_model 128, 4 heads x 32, "
               "d_mlp 128, ReLU, no LayerNorm (Golechha et al. modular addition)",
               factory="modbench.models.transformer:ModularTransformer")
register_model("wiki_transformer", TransformerConfig(n_layers=2, d_model=128, n_heads=4, d_head=32, d_mlp=512,
                                                     d_vocab=4096, d_vocab_out=4096, n_ctx=64, act_fn="gelu",
                                                     normalization_type="LN"),
               "2-layer HookedTransformer language model, d_model 128, 4 heads x 32, d_mlp 512, GELU, pre-LN, "
               "4,096-word vocabulary (wiki_tokens)", factory="modbench.models.transformer:ModularTransformer")


@dataclass(frozen=True)
class PretrainedConfig:
    """A pretrained TransformerLens model, by its name (a TransformerLens alias or a Hugging Face repository),
    weights fetched from Hugging Face (or its cache) when built. ``tokenizer``: the name of the Hugging Face
    tokenizer a text task must use with it."""

    name: str

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ValueError(f"name must be a model name, got {self.name!r}")

    @property
    def tokenizer(self) -> str:
        return self.name


register_model("gpt2", PretrainedConfig("gpt2"), "GPT-2 small (124M), pretrained weights from Hugging Face, LayerNorm "
               "kept unfolded", factory="modbench.models.pretrained:build_pretrained")
register_model("pythia-70m", PretrainedConfig("EleutherAI/pythia-70m"), "Pythia-70m, pretrained weights from "
               "Hugging Face, LayerNorm kept unfolded", factory="modbench.models.pretrained:build_pretrained")
