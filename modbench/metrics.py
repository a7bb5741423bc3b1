"""Metrics: pure functions of tensors. Aggregation and direction are declared once, here."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from jaxtyping import Float, Int
from torch import Tensor

from modbench.registry import Registry


def logit_difference(logits: Float[Tensor, "*#b c"], reference: Float[Tensor, "*#b c"]) -> Float[Tensor, "*#b"]:
    """Nainani's LogitDifference: the L2 norm of the gap between two full logit vectors."""
    return (logits - reference).norm(dim=-1)


def correct(logits: Float[Tensor, "*b c"], labels: Int[Tensor, "*b"]) -> Float[Tensor, "*b"]:
    return (logits.argmax(-1) == labels).float()


@dataclass(frozen=True)
class MetricSpec:
    key: str
    label: str
    higher_is_better: bool
    aggregate: str = "mean"  # over examples, then bootstrap over resamples
    fn: Callable[..., Tensor] | None = None


METRICS: Registry[MetricSpec] = Registry("metric")
for _spec in (
    MetricSpec("logit_difference", "logit difference", False, fn=logit_difference),
    MetricSpec("circuit_accuracy", "circuit accuracy", True, fn=correct),
    MetricSpec("sparsity", "circuit sparsity", True),
    MetricSpec("discovery_time_s", "discovery time (s)", False),
):
    METRICS.add(_spec.key, _spec)
