"""Discover on resamples of the discovery pairs, choose circuits, score them on held-out resamples."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import torch
from jaxtyping import Int
from torch import Tensor

from modbench.discovery.base import Circuits, Discoverer, Selection
from modbench.discovery.evaluate import evaluate_circuits
from modbench.discovery.sparsity import edge_sparsity
from modbench.metrics import METRICS
from modbench.models.base import ModelAdapter
from modbench.stats import summarize
from modbench.tasks.base import ContrastivePairs, Task


@dataclass
class Outcome:
    metrics: dict[str, dict[str, float]]
    sparsity_per_wire: dict[str, float]
    circuit_size: dict[str, float]
    circuit: Circuits  # chosen from the mean scores over all resamples (for figures)
    mean_scores: dict[str, Tensor]
    model: ModelAdapter | None = None
    details: dict = field(default_factory=dict)
    task: Any = None  # the task as built for the model (for its optional figures)


def split_pairs(n: int, holdout: float, seed: int) -> tuple[Int[Tensor, " d"], Int[Tensor, " h"]]:
    """Indices of the discovery pairs and of the held-out pairs (``holdout`` of ``n``, at least one each)."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    held = min(n - 1, max(1, round(holdout * n)))
    return order[held:], order[:held]


def resample(part: Tensor, boots: int, size: int, generator: torch.Generator) -> Int[Tensor, "boots size"]:
    return part[torch.randint(len(part), (boots, size), generator=generator)]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def discover_and_score(model: ModelAdapter, task: Task, pairs: ContrastivePairs, discoverer: Discoverer,
                       selection: Selection, intervention, cfg, device: torch.device) -> Outcome:  # noqa: ANN001
    model.eval()
    pairs = pairs.to(device)
    discovery_part, held_part = split_pairs(len(pairs), cfg.holdout, cfg.pair_seed)
    generator = torch.Generator().manual_seed(cfg.boot_seed)
    chosen_on = resample(discovery_part, cfg.boots, cfg.pairs_per_boot, generator).to(device)
    scored_on = resample(held_part, cfg.boots, cfg.pairs_per_boot, generator).to(device)
    discoverer.score(model, task, pairs.select(chosen_on[0]))  # warm-up, so the first timing is no outlier
    per_boot: dict[str, list[Tensor]] = {}
    times, lower_is_better = [], True
    for b in range(cfg.boots):
        _sync(device)
        start = time.perf_counter()
        scores = discoverer.score(model, task, pairs.select(chosen_on[b]))
        _sync(device)
        times.append(time.perf_counter() - start)
        lower_is_better = scores.lower_is_better
        for site, value in scores.mean().items():
            per_boot.setdefault(site, []).append(value)
    stacked = {site: torch.stack(values) for site, values in per_boot.items()}
    circuits = selection.select(stacked, lower_is_better)
    metric_key = task.config.metric
    measured = evaluate_circuits(model, task, pairs, scored_on, circuits, intervention.values(model, pairs),
                                 METRICS.get(metric_key).function())
    measured[metric_key] = measured.pop("faithfulness")
    sparsity, per_wire = edge_sparsity(model, circuits, cfg.edge_threshold)
    measured["sparsity"] = sparsity
    measured["discovery_time_s"] = torch.tensor(times)
    mean_scores = {site: value.mean(0) for site, value in stacked.items()}
    consensus = selection.select({s: v[None] for s, v in mean_scores.items()}, lower_is_better)
    return Outcome(
        metrics={k: summarize(v.cpu()) for k, v in measured.items()},
        sparsity_per_wire={k: float(v.mean()) for k, v in per_wire.items()},
        circuit_size={k: float(v.float().mean()) for k, v in circuits.sizes().items()},
        circuit=consensus, mean_scores=mean_scores, model=model,
    )


def analyse_classes(model: ModelAdapter, task: Task, data, discoverer) -> Outcome:  # noqa: ANN001
    """Per-class discoverers (ECS, ON/OFF): their summary numbers become metrics (a per-class list is
    summarised over classes: mean and 2.5-97.5 % range), their tables the record's details."""
    model.eval()
    start = time.perf_counter()
    analysis = discoverer.analyse(model, task, data)
    elapsed = time.perf_counter() - start
    metrics = {}
    for key, value in analysis["summary"].items():
        values = torch.tensor(value if isinstance(value, list) else [value], dtype=torch.float64)
        metrics[key] = summarize(values)
    metrics["discovery_time_s"] = summarize(torch.tensor([elapsed, elapsed]))
    return Outcome(metrics=metrics, sparsity_per_wire={}, circuit_size={}, circuit=Circuits({}), mean_scores={},
                   model=model, details={k: v for k, v in analysis.items() if k != "summary"})
