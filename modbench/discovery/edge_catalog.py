"""Edge discoverers: frozen configs and registrations (no torch). They score the edges of a model's edge graph
(``modbench.models.edges``: weights between neurons or channels, the residual graph of heads and MLP blocks),
each edge cut alone carrying the run's intervention value (``--ablation``); circuits are sets of edges.

Scores are the loss rise a cut causes (loss = the task's metric between the circuit's and the model's outputs,
or ``metric``, negated when higher is better): higher = more important. ACDC decides its circuit itself (its
scores are its decisions, 1 kept / 0 cut; its default selection keeps edges kept in most resamples); the
others are chosen from by a selection afterwards, by default every edge whose score reaches ``threshold`` in
the loss's units, as ACDC's tau.
"""

from __future__ import annotations

from dataclasses import dataclass

from modbench.discovery.catalog import ThresholdConfig
from modbench.registries import register_discoverer
from modbench.registry import check_int, check_number


def _check_metric(metric: object) -> None:
    from modbench.metrics import METRICS

    if not isinstance(metric, str) or (metric and (metric not in METRICS or METRICS.get(metric).fn is None)):
        known = [key for key in METRICS.keys() if METRICS.get(key).fn is not None]
        raise ValueError(f"metric must be empty (the task's) or one of {', '.join(known)}, got {metric!r}")


TAU = 0.01  # default threshold of edge circuits, in the loss's units (MNIST logit difference: ~1 % of its range)


@dataclass(frozen=True)
class ACDCConfig:
    """``threshold``: tau, the largest loss rise an edge may cause and still be cut (> 0: at 0 rounding noise
    would decide). ``metric``: the loss ("" = the task's metric; e.g. kl_divergence). ``max_rows``: pair rows
    per batched pass (bounds memory)."""

    threshold: float = TAU
    metric: str = ""
    max_rows: int = 1 << 16

    def __post_init__(self) -> None:
        check_number(self, "threshold", 0, low_open=True)
        _check_metric(self.metric)
        check_int(self, "max_rows", 1)


@dataclass(frozen=True)
class EAPConfig:
    """EAP: the gradient of the loss with respect to every edge's mask at the circuit with every edge cut (at
    the full model the task's distance metrics have zero gradient)."""

    metric: str = ""
    max_rows: int = 4096

    def __post_init__(self) -> None:
        _check_metric(self.metric)
        check_int(self, "max_rows", 1)


@dataclass(frozen=True)
class EAPIGConfig:
    """EAP-IG: the edge-mask gradients averaged at the midpoints of ``steps`` equal parts of the straight path
    from every edge cut to none (integrated gradients; their sum over edges approximates the loss of the
    all-cut circuit minus the full model's)."""

    steps: int = 5
    metric: str = ""
    max_rows: int = 4096

    def __post_init__(self) -> None:
        check_int(self, "steps", 1, 1000)
        _check_metric(self.metric)
        check_int(self, "max_rows", 1)


@dataclass(frozen=True)
class EdgePatchingConfig:
    """Exact edge patching: every edge cut alone from the full model, the loss rise measured."""

    metric: str = ""
    max_rows: int = 1 << 16

    def __post_init__(self) -> None:
        _check_metric(self.metric)
        check_int(self, "max_rows", 1)


EDGES = {"candidates": "edges", "packable": False}
BY_THRESHOLD = {"selection": "threshold", "selection_config": ThresholdConfig(TAU)}

register_discoverer("acdc", ACDCConfig(), "ACDC (Conmy et al. 2023): edges pruned recursively from the output back, "
                    "each cut kept when the loss rises by less than tau; batched, the sequential decisions exactly",
                    factory="modbench.discovery.acdc:ACDC", cost_depends_on_weights=True, **EDGES,
                    selection="threshold", selection_config=ThresholdConfig(0.5))
register_discoverer("eap", EAPConfig(), "edge attribution patching (Syed et al. 2023): every "
                    "edge's loss rise to first order, from one forward and one backward pass",
                    factory="modbench.discovery.edge_attribution:EdgeAttribution", cost_depends_on_weights=False,
                    exact=False, **EDGES, **BY_THRESHOLD)
register_discoverer("eap_ig", EAPIGConfig(), "EAP with integrated gradients (Hanna et al. 2024): "
                    "edge-mask gradients averaged along the path from every edge cut to none",
                    factory="modbench.discovery.edge_attribution:EdgeAttribution", cost_depends_on_weights=False,
                    exact=False, **EDGES, **BY_THRESHOLD)
register_discoverer("edge_patching", EdgePatchingConfig(), "exact edge patching: every edge cut alone from the "
                    "full model, its loss rise measured (batched, resuming at the edge's receiver)",
                    factory="modbench.discovery.edge_attribution:EdgePatching", cost_depends_on_weights=False,
                    **EDGES, **BY_THRESHOLD)
