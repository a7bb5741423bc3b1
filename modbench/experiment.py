"""The one experiment entry point, used by the CLI, the reproduction scripts and sweeps:
task data -> train (or load) -> discover on resamples of one part of the pairs -> choose circuits ->
score them on resamples of the other (held-out) part -> a frozen :class:`ResultRecord`."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from modbench.errors import TrainingFailed, UserError
from modbench.provenance import config_hash, device_name, git_commit, to_plain, versions
from modbench.registries import DISCOVERERS, INTERVENTIONS, METHODS, MODELS, SELECTIONS, TASKS
from modbench.results.record import ResultRecord

SPARSITY_DEFINITION = ("1 - active circuit edges / all edges; edge active when |w| >= {tau} * max|W| of its wire; "
                       "non-candidate neurons (inputs, outputs, residual) always inside, candidates when kept")


@dataclass(frozen=True)
class DiscoveryConfig:
    """How circuits are discovered and scored. Pairs are split once (``pair_seed``) into a discovery part
    and a held-out part (``holdout`` of them); each of ``boots`` resamples draws ``pairs_per_boot`` pairs
    with replacement from each part (``boot_seed``): the circuit is chosen on the first, scored on the second."""

    boots: int = 50  # Nainani: N = 50 resamples
    pairs_per_boot: int = 500  # of 500 pairs each
    selection: str = ""  # "" = the task's (``selection`` of its config; top_k when it declares none)
    intervention: str = "mean"
    holdout: float = 0.5
    pair_seed: int = 0
    boot_seed: int = 0
    edge_threshold: float = 0.01

    def __post_init__(self) -> None:
        if self.boots < 2 or self.pairs_per_boot < 1:
            raise ValueError("boots must be >= 2 and pairs_per_boot >= 1")
        if not 0 < self.holdout < 1:
            raise ValueError(f"holdout must be in (0, 1), got {self.holdout}")
        if self.pair_seed < 0 or self.boot_seed < 0:
            raise ValueError("seeds must be >= 0")
        if not 0 <= self.edge_threshold < 1:
            raise ValueError("edge_threshold must be in [0, 1)")


@dataclass(frozen=True)
class ExperimentSpec:
    """Everything a run depends on. ``steps`` None = the task's budget for the data source found;
    ``model``/``*_config`` None = the registered defaults."""

    task: str
    method: str
    method_config: Any = None
    model: str | None = None
    model_config: Any = None
    train_seed: int = 1
    steps: int | None = None
    discoverer: str | None = None
    discoverer_config: Any = None
    discovery: DiscoveryConfig = DiscoveryConfig()
    selection_config: Any = None
    intervention_config: Any = None

    def resolved(self) -> ExperimentSpec:
        """Defaults filled in from the registries; every name checked (unknown -> one-line UserError)."""
        task = TASKS.get(self.task)
        model = self.model or task.config.model
        discoverer = self.discoverer or task.config.discoverer
        if task.traits.get("reads") == "classes" and DISCOVERERS.get(discoverer).traits.get("reads") != "classes":
            raise UserError(f"task {self.task!r} is read per class: pair discoverers such as {discoverer!r} do not "
                            "apply (use a per-class one, e.g. on_off)")
        discovery = self.discovery
        selection_config = self.selection_config
        if not discovery.selection and selection_config is not None:  # named by its config's type
            matching = [k for k in SELECTIONS.keys() if type(SELECTIONS.get(k).config) is type(selection_config)]
            if len(matching) != 1:
                raise UserError(f"cannot tell which selection {type(selection_config).__name__} configures")
            discovery = dataclasses.replace(discovery, selection=matching[0])
        if not discovery.selection:  # the task's selection and its config
            discovery = dataclasses.replace(discovery, selection=getattr(task.config, "selection", "top_k"))
            selection_config = getattr(task.config, "selection_config", None)
        SELECTIONS.get(discovery.selection)
        INTERVENTIONS.get(discovery.intervention)
        return dataclasses.replace(
            self, model=model, discoverer=discoverer, discovery=discovery,
            method_config=_default(self.method_config, METHODS.get(self.method).config),
            model_config=_default(self.model_config, MODELS.get(model).config),
            discoverer_config=_default(self.discoverer_config, DISCOVERERS.get(discoverer).config),
            selection_config=_default(selection_config, SELECTIONS.get(discovery.selection).config),
            intervention_config=_default(self.intervention_config,
                                         INTERVENTIONS.get(self.discovery.intervention).config),
        )


def experiment_spec(task: str, method: str, method_config: Any, discoverer: str, discoverer_config: Any, *,
                    model: str | None, seed: int, steps: int | None, boots: int, pairs: int, pair_seed: int,
                    boot_seed: int, top_k: int | None, ablation: str) -> ExperimentSpec:
    """The resolved spec of ``modbench run``'s flags; sweeps build their runs with it too, so a row made by
    either is recognised by the other. ``top_k`` None = the task's own selection. Bad values -> UserError."""
    from modbench.discovery.catalog import TopKConfig

    try:
        discovery = DiscoveryConfig(boots=boots, pairs_per_boot=pairs, intervention=ablation, pair_seed=pair_seed,
                                    boot_seed=boot_seed, selection="" if top_k is None else "top_k")
        selection = None if top_k is None else TopKConfig(k=top_k)
    except ValueError as error:
        raise UserError(str(error)) from None
    return ExperimentSpec(task=task, method=method, method_config=method_config, model=model, train_seed=seed,
                          steps=steps, discoverer=discoverer, discovery=discovery,
                          discoverer_config=discoverer_config, selection_config=selection).resolved()


def _default(value: Any, default: Any) -> Any:
    return default if value is None else value


@dataclass(frozen=True)
class RecordIdentity:
    """What names a run's record, known before it trains: ``config_hash`` (the resolved spec, its training
    config and training hash, the data source), ``cell`` (the same without the training seed), the plain
    ``config`` stored with the record and the ``training`` spec that names its checkpoint."""

    config_hash: str
    cell: str
    config: dict[str, Any]
    training: Any  # pipeline.TrainingSpec


def record_identity(spec: ExperimentSpec, source: str, task_config: Any = None) -> RecordIdentity:
    """The identity of the record ``run_experiment`` makes for the resolved ``spec`` on data ``source``
    (``task_config``: the built task's config; None = build the task), without training: sweeps skip runs
    whose ``config_hash`` already has a row."""
    from modbench.pipeline import build_task, task_training_spec

    if task_config is None:
        task_config = build_task(spec.task, spec.model_config).config
    training = task_training_spec(spec.method, spec.method_config, spec.model, spec.model_config, task_config,
                                  source, spec.steps, spec.train_seed)
    plain = to_plain(spec) | {"train": to_plain(training.train), "training_hash": training.hash}
    # A cell is the config without the training seed (the training hash contains the seed too).
    cell_config = ({k: v for k, v in plain.items() if k not in ("train_seed", "training_hash")}
                   | {"train": to_plain(training.train) | {"seed": None}})
    return RecordIdentity(config_hash=config_hash(plain | {"data": source}),
                          cell=config_hash(cell_config | {"data": source}), config=plain, training=training)


def variant_label(spec: ExperimentSpec, steps: int, default_steps: int) -> str:
    """What differs from the registered defaults, e.g. ``lam=0.02, steps=200``; ``default`` if nothing."""
    task = TASKS.get(spec.task).config
    # The discoverer is part of a row's identity (a column), not a variant: compare with its own defaults.
    canonical = ExperimentSpec(spec.task, spec.method, train_seed=spec.train_seed,
                               discoverer=spec.discoverer).resolved()
    changes = []
    for name in ("method_config", "model_config", "discoverer_config", "selection_config", "intervention_config"):
        ours, theirs = to_plain(getattr(spec, name)), to_plain(getattr(canonical, name))
        if isinstance(ours, dict) and isinstance(theirs, dict):
            changes += [f"{k}={ours[k]}" for k in ours if ours[k] != theirs.get(k)]
    if spec.model != task.model:
        changes.append(f"model={spec.model}")
    base = canonical.discovery
    changes += [f"{f.name}={getattr(spec.discovery, f.name)}" for f in dataclasses.fields(base)
                if getattr(spec.discovery, f.name) != getattr(base, f.name)]
    if steps != default_steps:
        changes.append(f"steps={steps}")
    return ", ".join(changes) or "default"


def run_experiment(spec: ExperimentSpec, device: torch.device, data_dir: Path | None = None,
                   show_progress: bool = True, data: Any = None) -> tuple[ResultRecord, Any]:
    """Run one experiment; returns the record and the outcome (model, circuit, scores) for figures.
    ``data`` injects a task's data (tests, notebooks) instead of loading it."""
    from modbench.discovery.modularity import bsgc_clusterability, contiguous_clusterability
    from modbench.pipeline import build_task, trained_model
    from modbench.scoring import analyse_classes, discover_and_score
    from modbench.stats import summarize

    spec = spec.resolved()
    task = build_task(spec.task, spec.model_config)
    discoverer = DISCOVERERS.get(spec.discoverer)
    reads_classes = discoverer.traits.get("reads") == "classes"
    selection = SELECTIONS.get(spec.discovery.selection).build(spec.selection_config)
    if not reads_classes:  # before any training: K must fit every site
        selection.check(MODELS.get(spec.model).build(spec.model_config).sites())
    data = task.load(data_dir) if data is None else data
    default_steps = task.config.steps_for(data.source)
    identity = record_identity(spec, data.source, task.config)
    training_spec = identity.training
    train_cfg = training_spec.train
    steps = train_cfg.steps
    try:
        model, training = trained_model(training_spec, task, data, device, show_progress=show_progress)
    except TrainingFailed as error:
        raise TrainingFailed(f"{spec.method} on {spec.task}: {error}") from None
    found = discoverer.build(spec.discoverer_config)
    if reads_classes:
        outcome = analyse_classes(model, task, data, found)
        n_pairs = 0
    else:
        pairs = task.contrast(data, spec.discovery.pair_seed)
        if len(pairs) < 4:
            raise UserError(f"task {spec.task!r} found only {len(pairs)} pairs in the {data.source} test split")
        intervention = INTERVENTIONS.get(spec.discovery.intervention).build(spec.intervention_config)
        outcome = discover_and_score(model, task, pairs, found, selection, intervention, spec.discovery, device)
        n_pairs = len(pairs)
    if hasattr(task, "evaluate"):  # a task's own held-out metrics (e.g. perplexity), as summaries
        outcome.metrics.update(task.evaluate(model, data))
    modularity = bsgc_clusterability(model)  # empty for a model without hidden-to-hidden matrices
    if modularity:
        outcome.metrics["clusterability"] = summarize(torch.tensor(list(modularity.values())))
    info = training["training"]
    floor = task.config.quality_floor
    failed = info["test_accuracy"] < floor
    x_test = data.x_test[: getattr(task, "eval_batch_size", 1000)].to(device)
    peak = info["peak_memory_bytes"]
    record = ResultRecord(
        task=spec.task, method=spec.method, model=spec.model, discoverer=spec.discoverer, dataset=data.source,
        variant=variant_label(spec, steps, default_steps), cell=identity.cell,
        config_hash=identity.config_hash, train_seed=spec.train_seed,
        pair_seed=spec.discovery.pair_seed, boot_seed=spec.discovery.boot_seed,
        status="failed" if failed else "ok",
        failure=f"test accuracy {info['test_accuracy']:.4f} below the task's quality floor {floor}" if failed else "",
        faithfulness_metric=task.config.metric, metrics=outcome.metrics,
        sparsity_per_wire=outcome.sparsity_per_wire, circuit_size=outcome.circuit_size,
        details=outcome.details | {"bsgc_clusterability_k4": modularity,
                                   "contiguous_clusterability_k4": contiguous_clusterability(model),
                                   "training_last_eval": info["history"][-1] if info.get("history") else {}},
        test_accuracy=info["test_accuracy"], best_test_accuracy=info["best_test_accuracy"],
        best_step=info["best_step"],
        costs={"train_steps": steps, "train_time_s": info["train_time_s"],
               "peak_train_memory_mb": peak / 2**20, "peak_train_memory_kind": info["peak_memory_kind"],
               "inference_us_per_sample": inference_us_per_sample(model, x_test),
               "checkpoint_kb": training["checkpoint_bytes"] / 1024, "n_pairs": n_pairs,
               "train_cached": training["cached"], "packed_with": info.get("packed_with", 1),
               "resumed_from_step": info.get("resumed_from_step", 0)},
        discovery_cost_depends_on_weights=bool(discoverer.traits.get("cost_depends_on_weights", True)),
        config=identity.config,
        definitions={"sparsity": SPARSITY_DEFINITION.format(tau=spec.discovery.edge_threshold),
                     "faithfulness": f"{task.config.metric} between the circuit's and the model's outputs on clean "
                                     f"inputs, non-circuit candidates {spec.discovery.intervention}-ablated",
                     "scoring": "circuit chosen on a resample of the discovery pairs, scored on a resample of "
                                f"the held-out pairs ({spec.discovery.holdout:.0%} of them)"},
        provenance={"versions": versions(), "git_commit": git_commit(), "device": device_name(device),
                    "train_device": training["provenance"]["device"], "data_note": data.note,
                    "checkpoint": training["checkpoint_path"]},
    )
    outcome.task = task
    return record, outcome


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
