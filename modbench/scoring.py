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
from modbench.discovery.interventions import Replacement
from modbench.discovery.sparsity import edge_circuit_sparsity, node_circuit_sparsity
from modbench.metrics import METRICS
from modbench.models.base import ModelAdapter
from modbench.models.pack import ModelPack
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
    n_pairs: int = 0  # contrastive pairs the resamples drew from (0 for per-class discoverers)
    packed_with: int = 1  # > 1: scored in a pack of that many models (discovery time is the pack's share)
    edges: bool = False  # circuits of edges (edge sites) rather than of candidate nodes (sites)


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
    """Discover on resamples of the discovery pairs, choose a circuit per resample, score it on the held-out
    resample: one model (a pack of one, called directly)."""
    return discover_and_score_pack(ModelPack([model]), task, pairs, discoverer, selection, intervention, cfg,
                                   device)[0]


def discover_and_score_pack(pack: ModelPack, task: Task, pairs: ContrastivePairs, discoverer: Discoverer,
                            selection: Selection, intervention, cfg, device: torch.device,  # noqa: ANN001
                            ) -> list[Outcome]:
    """:func:`discover_and_score` for every model of ``pack`` on the same pairs and resamples, each discovery
    resample and the held-out scoring one batched pass over the pack (``ModelPack.map``). Per model, the
    outcome it would get alone, except ``discovery_time_s`` (the pack's time per resample divided by its size,
    ``packed_with``) and float rounding: batched products may round differently, so a near-tie in a
    selection can choose another candidate (tested equal in float64; ``scripts/bench_packed.py`` counts
    agreeing circuits in float32)."""
    for model in pack.models:
        model.eval()
    pairs = pairs.to(device)
    discovery_part, held_part = split_pairs(len(pairs), cfg.holdout, cfg.pair_seed)
    generator = torch.Generator().manual_seed(cfg.boot_seed)
    chosen_on = resample(discovery_part, cfg.boots, cfg.pairs_per_boot, generator).to(device)
    scored_on = resample(held_part, cfg.boots, cfg.pairs_per_boot, generator).to(device)
    facts: dict[str, bool] = {}  # Python values from inside the mapped calls
    edges = getattr(discoverer, "candidates", "nodes") == "edges"
    if edges and len(pack) > 1:
        raise ValueError("edge discoverers score one model at a time")
    cut_values = intervention.values(pack.models[0], pairs, edges=True) if edges else None
    costs: list[dict[str, float]] = []

    def mean_scores_of(model: ModelAdapter, chosen: Tensor) -> dict[str, Tensor]:
        if cut_values is None:
            scores = discoverer.score(model, task, pairs.select(chosen))
        else:  # what a cut edge carries, for these pairs
            fed = {k: v[chosen] if cut_values.per_pair else v for k, v in cut_values.values.items()}
            scores = discoverer.score(model, task, pairs.select(chosen), replacement=Replacement(fed,
                                                                                                 cut_values.per_pair))
        facts["lower_is_better"] = scores.lower_is_better
        costs.append(scores.costs)
        return scores.mean()

    pack.map(mean_scores_of, chosen_on[0])  # warm-up, so the first timing is no outlier
    per_boot, times = [], []
    costs.clear()
    for b in range(cfg.boots):
        _sync(device)
        start = time.perf_counter()
        per_boot.append(pack.map(mean_scores_of, chosen_on[b]))
        _sync(device)
        times.append((time.perf_counter() - start) / len(pack))
    # (models, boots, candidates) per site
    stacked = {site: torch.stack([scores[site] for scores in per_boot], 1) for site in per_boot[0]}
    lower_is_better = facts["lower_is_better"]
    circuits = [selection.select({site: value[p] for site, value in stacked.items()}, lower_is_better)
                for p in range(len(pack))]

    def replacement_of(model: ModelAdapter) -> dict[str, Tensor]:
        replacement = cut_values if cut_values is not None else intervention.values(model, pairs)  # edges: one model
        facts["per_pair"] = replacement.per_pair
        return replacement.values

    values = pack.map(replacement_of)
    metric = METRICS.get(task.config.metric).function()

    def measure(model: ModelAdapter, keep: dict[str, Tensor], value: dict[str, Tensor]) -> dict[str, Tensor]:
        return evaluate_circuits(model, task, pairs, scored_on, Circuits(keep), Replacement(value, facts["per_pair"]),
                                 metric, edges=edges)

    keeps = {site: torch.stack([circuit.keep[site] for circuit in circuits]) for site in circuits[0].keep}
    measured = pack.map(measure, each=(keeps, values))
    for name in sorted({key for spent in costs for key in spent}):  # a pack's pass serves every model alike
        measured[name] = torch.tensor([[spent.get(name, 0.0) for spent in costs]] * len(pack), dtype=torch.float64)
    return [_outcome(model, {key: value[p] for key, value in measured.items()}, circuits[p],
                     {site: value[p] for site, value in stacked.items()}, lower_is_better, times, task, selection,
                     cfg, len(pack), len(pairs), edges)
            for p, model in enumerate(pack.models)]


def _outcome(model: ModelAdapter, measured: dict[str, Tensor], circuits: Circuits, stacked: dict[str, Tensor],
             lower_is_better: bool, times: list[float], task: Task, selection: Selection, cfg,  # noqa: ANN001
             packed_with: int, n_pairs: int, edges: bool = False) -> Outcome:
    """One model's outcome from its scores (``stacked``: boots x candidates per site) and measurements."""
    measured[task.config.metric] = measured.pop("faithfulness")
    sparsity, per_wire, kept = (edge_circuit_sparsity if edges else node_circuit_sparsity)(model, circuits,
                                                                                          cfg.edge_threshold)
    measured["sparsity"] = sparsity
    measured["circuit_edges"] = kept
    measured["discovery_time_s"] = torch.tensor(times)
    mean_scores = {site: value.mean(0) for site, value in stacked.items()}
    consensus = selection.select({s: v[None] for s, v in mean_scores.items()}, lower_is_better)
    return Outcome(
        metrics={k: summarize(v.cpu()) for k, v in measured.items()},
        sparsity_per_wire={k: float(v.mean()) for k, v in per_wire.items()},
        circuit_size={k: float(v.float().mean()) for k, v in circuits.sizes().items()},
        circuit=consensus, mean_scores=mean_scores, model=model, n_pairs=n_pairs, packed_with=packed_with,
        edges=edges,
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
