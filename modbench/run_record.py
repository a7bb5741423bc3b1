"""A run's :class:`ResultRecord`: identity, metrics, costs, definitions and provenance, from a run's parts."""

from __future__ import annotations

import time
from typing import Any

import torch

from modbench.discovery.modularity import bsgc_clusterability, contiguous_clusterability
from modbench.experiment import ExperimentSpec, RecordIdentity, variant_label
from modbench.provenance import device_name, git_commit, versions
from modbench.registries import DISCOVERERS
from modbench.results.record import ResultRecord
from modbench.stats import summarize

SPARSITY_DEFINITION = ("1 - active circuit edges / all edges; edge active when |w| >= {tau} * max|W| of its wire; "
                       "non-candidate neurons (inputs, outputs, residual) always inside, candidates when kept")
EDGE_SPARSITY_DEFINITION = ("1 - active circuit edges / all edges of the edge graph; a weight edge (MLP, CNN) active "
                            "when |w| >= {tau} * max|W| of its wire, a residual edge (transformer) always; inside "
                            "when the circuit keeps it")


def circuit_details(outcome: Any) -> dict[str, Any]:
    """What the circuit is made of, and the consensus circuit itself: per site the kept candidates, or per edge
    site the kept (receiver, sender) pairs (kept in most resamples for ACDC; chosen from the mean scores
    otherwise)."""
    if not outcome.circuit.keep:  # per-class discoverers report their own tables
        return {}
    if not outcome.edges:
        return {"circuit_kind": "nodes", "node_circuit": {name: torch.nonzero(mask[0]).flatten().tolist()
                                                          for name, mask in outcome.circuit.keep.items()}}
    kept = {}
    graph_sites = {site.name: site for site in outcome.model.edge_graph().sites}
    for name, mask in outcome.circuit.keep.items():
        flat = torch.nonzero(mask[0]).flatten().tolist()
        kept[name] = [divmod(index, graph_sites[name].n_senders) for index in flat]
    return {"circuit_kind": "edges", "edge_circuit": kept}


def make_record(spec: ExperimentSpec, task: Any, data: Any, identity: RecordIdentity, training: dict[str, Any],
                outcome: Any, device: torch.device) -> ResultRecord:
    """A run's record from its resolved spec, its task and data, its identity, its trained model's record
    (``pipeline.trained_models``) and its scoring outcome; adds the task's own metrics and the model's
    clusterability to the outcome."""
    model = outcome.model
    if hasattr(task, "evaluate"):  # a task's own held-out metrics (e.g. perplexity), as summaries
        outcome.metrics.update(task.evaluate(model, data))
    modularity = bsgc_clusterability(model)  # empty for a model without hidden-to-hidden matrices
    if modularity:
        outcome.metrics["clusterability"] = summarize(torch.tensor(list(modularity.values())))
    info = training["training"]
    steps = identity.training.train.steps
    floor = task.config.quality_floor
    failed = info["test_accuracy"] < floor
    x_test = data.x_test[: getattr(task, "eval_batch_size", 1000)].to(device)
    peak = info["peak_memory_bytes"]
    outcome.task = task
    return ResultRecord(
        task=spec.task, method=spec.method, model=spec.model, discoverer=spec.discoverer, dataset=data.source,
        variant=variant_label(spec, steps, task.config.steps_for(data.source)), cell=identity.cell,
        config_hash=identity.config_hash, train_seed=spec.train_seed,
        pair_seed=spec.discovery.pair_seed, boot_seed=spec.discovery.boot_seed,
        status="failed" if failed else "ok",
        failure=f"test accuracy {info['test_accuracy']:.4f} below the task's quality floor {floor}" if failed else "",
        faithfulness_metric=task.config.metric, metrics=outcome.metrics,
        sparsity_per_wire=outcome.sparsity_per_wire, circuit_size=outcome.circuit_size,
        details=outcome.details | circuit_details(outcome) | {"bsgc_clusterability_k4": modularity,
                                   "contiguous_clusterability_k4": contiguous_clusterability(model),
                                   "training_last_eval": info["history"][-1] if info.get("history") else {}},
        test_accuracy=info["test_accuracy"], best_test_accuracy=info["best_test_accuracy"],
        best_step=info["best_step"],
        costs={"train_steps": steps, "train_time_s": info["train_time_s"],
               "peak_train_memory_mb": peak / 2**20, "peak_train_memory_kind": info["peak_memory_kind"],
               "inference_us_per_sample": inference_us_per_sample(model, x_test),
               "checkpoint_kb": training["checkpoint_bytes"] / 1024, "n_pairs": outcome.n_pairs,
               "train_cached": training["cached"], "packed_with": info.get("packed_with", 1),
               "resumed_from_step": info.get("resumed_from_step", 0),
               "discovery_packed_with": outcome.packed_with},
        discovery_cost_depends_on_weights=bool(DISCOVERERS.get(spec.discoverer).traits.get("cost_depends_on_weights",
                                                                                            True)),
        config=identity.config,
        definitions={"sparsity": (EDGE_SPARSITY_DEFINITION if outcome.edges else SPARSITY_DEFINITION).format(
                         tau=spec.discovery.edge_threshold),
                     "faithfulness": f"{task.config.metric} between the circuit's and the model's outputs on clean "
                                     f"inputs, non-circuit candidates {spec.discovery.intervention}-ablated",
                     "scoring": "circuit chosen on a resample of the discovery pairs, scored on a resample of "
                                f"the held-out pairs ({spec.discovery.holdout:.0%} of them)"},
        provenance={"versions": versions(), "git_commit": git_commit(), "device": device_name(device),
                    "train_device": training["provenance"]["device"], "data_note": data.note,
                    "checkpoint": training["checkpoint_path"]},
    )


@torch.no_grad()
def inference_us_per_sample(model: torch.nn.Module, x: torch.Tensor, repeats: int = 5) -> float:
    model(x)
    if x.device.type == "cuda":
        torch.cuda.synchronize(x.device)
    start = time.perf_counter()
    for _ in range(repeats):
        model(x)
    if x.device.type == "cuda":
        torch.cuda.synchronize(x.device)
    return (time.perf_counter() - start) / (repeats * len(x)) * 1e6
