"""The main job: train (or load), discover with bootstrap resamples, score circuits, record the row."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from modbench.data.dataset import ImageDataset
from modbench.discovery.base import Discoverer
from modbench.discovery.circuit import Circuits, edge_sparsity
from modbench.discovery.evaluate import ABLATIONS, ablation_values, evaluate_circuits
from modbench.provenance import config_hash, device_name, git_commit, to_plain, versions
from modbench.stats import resample_indices, summarize
from modbench.tasks.base import ContrastivePairs, PairTask
from modbench.training.trainer import accuracy

SPARSITY_DEFINITION = (
    "1 - active circuit edges / all edges; edge active when |w| >= {tau} * max|W| of its layer; "
    "inputs and outputs always in the circuit, hidden neurons when among the K kept per layer"
)


@dataclass(frozen=True)
class DiscoveryConfig:
    boots: int = 50  # Nainani: N = 50 resamples
    pairs_per_boot: int = 500  # of 500 pairs each
    top_k: int = 15  # neurons kept per hidden layer (K; see circuit.py for why 15)
    ablation: str = "mean"
    edge_threshold: float = 0.01
    seed: int = 0

    def __post_init__(self) -> None:
        if self.boots < 2 or self.pairs_per_boot < 1 or self.top_k < 1:
            raise ValueError("boots must be >= 2, pairs_per_boot and top_k >= 1")
        if self.ablation not in ABLATIONS:
            raise ValueError(f"ablation must be one of {ABLATIONS}, got {self.ablation!r}")
        if not 0 <= self.edge_threshold < 1:
            raise ValueError("edge_threshold must be in [0, 1)")


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class DiscoveryOutcome:
    metrics: dict[str, dict[str, float]]
    circuit: Circuits  # the circuit from the mean scores over all resamples (for figures)
    mean_scores: dict[str, torch.Tensor]


def discover_and_score(
    model: nn.Module, pairs: ContrastivePairs, discoverer: Discoverer, cfg: DiscoveryConfig, device: torch.device
) -> DiscoveryOutcome:
    """Per resample: run the discoverer (timed), keep the K best neurons per layer, score that circuit."""
    model.eval()
    pairs = pairs.to(device)
    index = resample_indices(len(pairs), cfg.boots, cfg.pairs_per_boot, cfg.seed).to(device)
    discoverer.score(model, pairs.select(index[0]))  # warm-up, so the first timing is not an outlier
    per_boot: dict[str, list[torch.Tensor]] = {}
    times = []
    lower_is_better = True
    for b in range(cfg.boots):
        _synchronize(device)
        start = time.perf_counter()
        scores = discoverer.score(model, pairs.select(index[b]))
        _synchronize(device)
        times.append(time.perf_counter() - start)
        lower_is_better = scores.lower_is_better
        for hook, value in scores.mean().items():
            per_boot.setdefault(hook, []).append(value)
    stacked = {hook: torch.stack(values) for hook, values in per_boot.items()}
    circuits = Circuits.top_k(stacked, cfg.top_k, lower_is_better)
    values = ablation_values(model, pairs, cfg.ablation)
    measured = evaluate_circuits(model, pairs, index, circuits, values)
    measured["sparsity"] = edge_sparsity(model, circuits, cfg.edge_threshold)
    measured["discovery_time_s"] = torch.tensor(times)
    mean_scores = {hook: value.mean(0) for hook, value in stacked.items()}
    consensus = Circuits.top_k({h: v[None] for h, v in mean_scores.items()}, cfg.top_k, lower_is_better)
    return DiscoveryOutcome({k: summarize(v.cpu()) for k, v in measured.items()}, consensus, mean_scores)


@torch.no_grad()
def inference_us_per_sample(model: nn.Module, x: torch.Tensor, repeats: int = 5) -> float:
    model(x)
    _synchronize(x.device)
    start = time.perf_counter()
    for _ in range(repeats):
        model(x)
    _synchronize(x.device)
    return (time.perf_counter() - start) / (repeats * len(x)) * 1e6


def build_record(
    *,
    task: PairTask,
    method: str,
    discoverer_key: str,
    discoverer_config: Any,
    cfg: DiscoveryConfig,
    data: ImageDataset,
    model: nn.Module,
    training: dict[str, Any],
    outcome: DiscoveryOutcome,
    n_pairs: int,
    device: torch.device,
) -> dict[str, Any]:
    """One flat record: keys, metric means and CIs, definitions, costs and provenance."""
    train_info = training["training"]
    record: dict[str, Any] = {
        "task": task.key, "method": method, "discoverer": discoverer_key, "model": task.model,
        "dataset": data.source, "seed": training["config"]["train"]["seed"], "top_k": cfg.top_k,
        "ablation": cfg.ablation, "boots": cfg.boots, "pairs_per_boot": cfg.pairs_per_boot, "n_pairs": n_pairs,
        "sparsity_definition": SPARSITY_DEFINITION.format(tau=cfg.edge_threshold),
        "logit_difference_definition": "||L_circuit(clean) - L_model(clean)||_2, non-circuit neurons ablated",
    }
    for metric, summary in outcome.metrics.items():
        for stat, value in summary.items():
            record[f"{metric}_{stat}"] = value
    x_test = data.x_test.to(device)
    peak = train_info["peak_memory_bytes"]
    record.update({
        "test_accuracy": accuracy(model, x_test, data.y_test.to(device)),
        "train_steps": training["config"]["train"]["steps"],
        "train_time_s": train_info["train_time_s"],
        "peak_train_memory_mb": None if peak is None else peak / 2**20,
        "peak_train_memory_kind": train_info["peak_memory_kind"],
        "inference_us_per_sample": inference_us_per_sample(model, x_test),
        "checkpoint_kb": training["checkpoint_bytes"] / 1024,
        "device": device_name(device),
        "train_device": training["provenance"]["device"],
        "train_config_hash": training["config_hash"],
        "discovery_config": to_plain(cfg),
        "discoverer_config": to_plain(discoverer_config),
        "config_hash": config_hash({"train": training["config_hash"], "discovery": cfg, "task": task,
                                    "discoverer": discoverer_config}),
        "versions": versions(),
        "git_commit": git_commit(),
    })
    return record
