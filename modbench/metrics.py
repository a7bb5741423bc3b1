"""Metrics: what each measures, how it aggregates and whether higher is better, declared once (no torch
here; the per-example functions live in ``modbench.discovery.metric_fns``)."""

from __future__ import annotations

from dataclasses import dataclass

from modbench.registry import Registry, resolve


@dataclass(frozen=True)
class MetricSpec:
    key: str
    label: str
    higher_is_better: bool
    aggregate: str = "mean"  # over examples, then bootstrap over resamples (or seeds)
    fn: str | None = None  # "module:function" of (logits, reference_logits, labels) -> per-example values

    def function(self):  # noqa: ANN201
        if self.fn is None:
            raise KeyError(f"metric {self.key!r} is not a per-example function")
        return resolve(self.fn)


METRICS: Registry[MetricSpec] = Registry("metric")
for _spec in (
    MetricSpec("logit_difference", "logit difference", False, fn="modbench.discovery.metric_fns:logit_difference"),
    MetricSpec("logit_margin", "logit difference (correct - mean other)", True,
               fn="modbench.discovery.metric_fns:logit_margin"),
    MetricSpec("kl_divergence", "KL(model || circuit)", False, fn="modbench.discovery.metric_fns:kl_divergence"),
    MetricSpec("circuit_accuracy", "circuit accuracy", True, fn="modbench.discovery.metric_fns:correct"),
    MetricSpec("sparsity", "circuit sparsity", True),
    MetricSpec("discovery_time_s", "discovery time (s)", False),
    MetricSpec("circuit_edges", "edges in circuit", False),  # active weight edges (or graph edges) kept
    MetricSpec("forward_passes", "forward passes", False),  # batched passes one discovery resample ran
    MetricSpec("backward_passes", "backward passes", False),
    MetricSpec("edge_tests", "edge tests", False),  # ACDC: edges tested (one forward each when run sequentially)
    MetricSpec("test_accuracy", "test acc", True),
    MetricSpec("clusterability", "clusterability (BSGC, k=4)", True),
    MetricSpec("ecs", "effective circuit size", False),
    MetricSpec("on_accuracy", "ON accuracy", True),
    MetricSpec("off_accuracy", "OFF accuracy", False),
    MetricSpec("needs_1_cluster", "needs 1 cluster", True),
    MetricSpec("needs_all_clusters", "needs all clusters", False),
    MetricSpec("right_without_clusters", "right with no cluster", False),
    MetricSpec("intact_accuracy", "intact accuracy", True),
    MetricSpec("test_perplexity", "test perplexity", False),
):
    METRICS.add(_spec.key, _spec)
