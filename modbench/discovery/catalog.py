"""Built-in discoverers, circuit selections and interventions: frozen configs and registrations (no torch).

Discoverers score every candidate; a selection then chooses circuits from the scores; an intervention
says what replaces the activations of candidates left out of a circuit.
"""

from __future__ import annotations

from dataclasses import dataclass

from modbench.registries import register_discoverer, register_intervention, register_selection
from modbench.registry import check_int, check_number


@dataclass(frozen=True)
class ActivationPatchingConfig:
    max_rows: int = 1 << 16  # patched rows per batched forward pass; bounds memory

    def __post_init__(self) -> None:
        check_int(self, "max_rows", 1)


@dataclass(frozen=True)
class TopKConfig:
    k: int = 15  # candidates kept per site (Nainani's K; see README for why 15)

    def __post_init__(self) -> None:
        check_int(self, "k", 1)


@dataclass(frozen=True)
class TopFractionConfig:
    fraction: float = 0.1  # share of all candidates kept, ranked across sites

    def __post_init__(self) -> None:
        check_number(self, "fraction", 0, 1, low_open=True)


@dataclass(frozen=True)
class ThresholdConfig:
    value: float = 0.1  # keep candidates scoring at or beyond it (below it when lower is better)

    def __post_init__(self) -> None:
        check_number(self, "value")


@dataclass(frozen=True)
class NoConfig:
    """A plugin without settings."""


@dataclass(frozen=True)
class ECSConfig:
    """``threshold``: a removal is undone when it raises the class's mean CE by more than this (the
    authors: 0). ``block``: most candidates per batched pass. ``max_images``: at most this many test
    images per class (the first ones; None: all)."""

    threshold: float = 0.0
    block: int = 256
    max_images: int | None = None

    def __post_init__(self) -> None:
        check_number(self, "threshold")
        check_int(self, "block", 1)
        if self.max_images is not None:
            check_int(self, "max_images", 1)


# ----------------------------------------------------------------------------------------------------------
# shared by the reference and the fast version: the same copy, inputs, loss and decision rule
# ----------------------------------------------------------------------------------------------------------


register_discoverer("ecs", ECSConfig(), "effective circuit size (Golechha 2025): per class, Linear weights zeroed "
                    "greedily from the last layer back while the class loss does not rise; ECS = kept / all",
                    factory="modbench.discovery.ecs:EffectiveCircuitSize", reads="classes",
                    cost_depends_on_weights=True)
register_discoverer("activation_patching", ActivationPatchingConfig(),
                    "Nainani's recursive activation patching: each candidate of each site patched clean into "
                    "the corrupted run, batched", factory="modbench.discovery.activation_patching:ActivationPatching",
                    cost_depends_on_weights=False, packable=True)
register_selection("top_k", TopKConfig(), "the K best-scoring candidates of every site",
                   factory="modbench.discovery.selection:TopK")
register_selection("top_fraction", TopFractionConfig(), "the best-scoring share of all candidates, across sites",
                   factory="modbench.discovery.selection:TopFraction")
register_selection("threshold", ThresholdConfig(), "every candidate whose score passes a fixed threshold",
                   factory="modbench.discovery.selection:Threshold")
register_intervention("mean", NoConfig(), "replace by the mean activation over the task's clean and corrupted "
                      "inputs", factory="modbench.discovery.interventions:MeanAblation")
register_intervention("zero", NoConfig(), "replace by zero", factory="modbench.discovery.interventions:ZeroAblation")
register_intervention("resample", NoConfig(), "replace by the activation on the pair's corrupted input",
                      factory="modbench.discovery.interventions:ResampleAblation")


@dataclass(frozen=True)
class OnOffConfig:
    """Golechha et al.'s cluster interventions: ``k`` clusters of ``wire`` (empty: the last wire between two
    hidden groups; the authors use fc2), found by BSGC on |W| (``clusters="bsgc"``, rows and columns matched)
    or taken as the contiguous blocks the ``cluster`` regime trains (``"contiguous"``)."""

    k: int = 4
    wire: str = ""
    clusters: str = "bsgc"
    max_images: int = 10_000
    seed: int = 0
    max_classes: int = 32  # per-class tables beyond this many classes (next tokens) would be unreadable

    def __post_init__(self) -> None:
        check_int(self, "max_classes", 1)
        try:
            check_int(self, "k", 2, 8)
        except ValueError as error:
            raise ValueError(f"{error} (all 2^k cluster subsets are run)") from None
        if self.clusters not in ("bsgc", "contiguous"):
            raise ValueError(f"clusters must be 'bsgc' or 'contiguous', got {self.clusters!r}")
        if not isinstance(self.wire, str):
            raise ValueError(f"wire must be a wire name (or empty), got {self.wire!r}")
        check_int(self, "max_images", 1)
        check_int(self, "seed", 0)


register_discoverer("on_off", OnOffConfig(), "ON/OFF cluster interventions (Golechha 2025): class-wise accuracy "
                    "with one cluster kept or removed, clusters each sample needs",
                    factory="modbench.discovery.on_off:OnOff", reads="classes", cost_depends_on_weights=False)


@dataclass(frozen=True)
class AttributionPatchingConfig:
    max_rows: int = 4096  # pairs per forward/backward pass; bounds the memory of the autograd graph

    def __post_init__(self) -> None:
        check_int(self, "max_rows", 1)


register_discoverer("attribution_patching", AttributionPatchingConfig(),
                    "attribution patching: activation patching's scores to first order (gradient at the corrupted "
                    "run x clean-minus-corrupted activation), every candidate from one forward/backward",
                    factory="modbench.discovery.attribution_patching:AttributionPatching",
                    cost_depends_on_weights=False, exact=False)
