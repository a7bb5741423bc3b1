"""The one experiment entry point, used by the CLI, the reproduction scripts and sweeps:
task data -> train (or load) -> discover on resamples of one part of the pairs -> choose circuits ->
score them on resamples of the other (held-out) part -> a frozen :class:`ResultRecord`."""

from __future__ import annotations

import dataclasses
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from modbench.errors import TrainingFailed, UserError, one_line
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
    [result] = run_experiments([spec], device, data_dir, show_progress, data)
    if isinstance(result, Exception):
        raise result
    return result


@dataclass
class _Run:
    """A run between its steps: resolved, its task built, its data loaded, its identity known."""

    spec: ExperimentSpec
    task: Any
    data: Any
    identity: RecordIdentity


def run_experiments(specs: list[ExperimentSpec], device: torch.device, data_dir: Path | None = None,
                    show_progress: bool = True, data: Any = None, pack: bool = True,
                    ) -> list[tuple[ResultRecord, Any] | Exception]:
    """Several runs in one process. With ``pack``, the models not yet trained are trained in packs where
    they share an architecture (``pipeline.trained_models``), and the runs that differ only in their model
    (method, its config, seed: same task, discoverer and discovery settings) are scored in one batched pass
    when their discoverer declares it ``packable`` (``scoring.discover_and_score_pack``). Per spec, its
    record and outcome, or the exception :func:`run_experiment` would raise for it alone."""
    from modbench.pipeline import trained_models

    results: list[Any] = [None] * len(specs)
    runs: dict[int, _Run] = {}
    built: dict[str, Any] = {}  # tasks and their data, per (task, model config)
    for index, spec in enumerate(specs):
        try:
            runs[index] = _prepare(spec, data_dir, data, built)
        except Exception as error:  # noqa: BLE001 (the run's own failure, raised again for one run)
            results[index] = error
    by_data: dict[str, dict[str, _Run]] = {}  # per data source, one run per model to train or load
    for run in runs.values():
        by_data.setdefault(run.data.source, {}).setdefault(run.identity.training.hash, run)
    models: dict[str, Any] = {}
    for group in by_data.values():
        first = next(iter(group.values()))  # runs sharing a training hash train the same model, whatever task
        trained = trained_models([run.identity.training for run in group.values()], first.task, first.data, device,
                                 show_progress=show_progress, pack=pack)
        models.update(zip(group, trained, strict=True))
    scoring: dict[str, list[int]] = {}
    for index, run in runs.items():
        model = models[run.identity.training.hash]
        if isinstance(model, TrainingFailed):
            results[index] = TrainingFailed(f"{run.spec.method} on {run.spec.task}: {model}")
            continue
        together = pack and bool(DISCOVERERS.get(run.spec.discoverer).traits.get("packable"))
        scoring.setdefault(_scoring_key(run) if together else str(index), []).append(index)
    for indices in scoring.values():
        group = [runs[i] for i in indices]
        trained = [models[run.identity.training.hash] for run in group]
        for index, run, (_, training), outcome in zip(indices, group, trained, _score_group(group, trained, device),
                                                      strict=True):
            try:
                results[index] = outcome if isinstance(outcome, Exception) else (
                    _record(run, training, outcome, device), outcome)
            except Exception as error:  # noqa: BLE001 (the run's own failure)
                results[index] = error
    return results


def _score_group(group: list[_Run], trained: list[Any], device: torch.device) -> list[Any]:
    """Outcomes (or the exceptions) of runs sharing a scoring key; a pack whose batched pass fails (a model
    or discoverer that ``torch.vmap`` cannot run, out of memory) is scored one model at a time, with a warning."""
    models = [model for model, _ in trained]
    try:
        return _score(group, models, device)
    except Exception as error:  # noqa: BLE001 (one run: its failure; a pack: retried one by one)
        if len(group) == 1 or isinstance(error, UserError):  # e.g. too few pairs: every run's own failure
            return [error] * len(group)
        warnings.warn(f"scoring {len(group)} models in one pass failed ({one_line(error)}); scoring them one by one",
                      stacklevel=2)
    return [_score_group([run], [pair], device)[0] for run, pair in zip(group, trained, strict=True)]


def _prepare(spec: ExperimentSpec, data_dir: Path | None, data: Any, built: dict[str, Any]) -> _Run:
    """Resolve the spec, check its selection against the model's sites (before any training), build its task
    and load its data (each once per process: ``built``), and name its record."""
    from modbench.pipeline import build_task

    spec = spec.resolved()
    if DISCOVERERS.get(spec.discoverer).traits.get("reads") != "classes":  # K must fit every site
        selection = SELECTIONS.get(spec.discovery.selection).build(spec.selection_config)
        selection.check(MODELS.get(spec.model).build(spec.model_config).sites())
    key = config_hash([spec.task, spec.model_config])
    if key not in built:
        task = build_task(spec.task, spec.model_config)
        built[key] = (task, task.load(data_dir) if data is None else data)
    task, loaded = built[key]
    return _Run(spec, task, loaded, record_identity(spec, loaded.source, task.config))


def _scoring_key(run: _Run) -> str:
    """Runs with the same key differ only in their model: one pass of discovery can score them together."""
    plain = to_plain(run.spec)
    return config_hash({k: v for k, v in plain.items() if k not in ("method", "method_config", "train_seed", "steps")}
                       | {"data": run.data.source})


def _score(group: list[_Run], models: list[Any], device: torch.device) -> list[Any]:
    """The outcomes of runs that share a scoring key (one run, or a pack: one batched pass over its models)."""
    from modbench.models.pack import ModelPack
    from modbench.scoring import analyse_classes, discover_and_score_pack

    spec, task, data = group[0].spec, group[0].task, group[0].data
    found = DISCOVERERS.get(spec.discoverer).build(spec.discoverer_config)
    if DISCOVERERS.get(spec.discoverer).traits.get("reads") == "classes":
        return [analyse_classes(model, task, data, found) for model in models]
    pairs = task.contrast(data, spec.discovery.pair_seed)
    if len(pairs) < 4:
        raise UserError(f"task {spec.task!r} found only {len(pairs)} pairs in the {data.source} test split")
    selection = SELECTIONS.get(spec.discovery.selection).build(spec.selection_config)
    intervention = INTERVENTIONS.get(spec.discovery.intervention).build(spec.intervention_config)
    return discover_and_score_pack(ModelPack(models), task, pairs, found, selection, intervention, spec.discovery,
                                   device)


def _record(run: _Run, training: dict[str, Any], outcome: Any, device: torch.device) -> ResultRecord:
    """The run's record from its trained model's record and its scoring outcome."""
    from modbench.discovery.modularity import bsgc_clusterability, contiguous_clusterability
    from modbench.stats import summarize

    spec, task, data, identity = run.spec, run.task, run.data, run.identity
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
        details=outcome.details | {"bsgc_clusterability_k4": modularity,
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
        definitions={"sparsity": SPARSITY_DEFINITION.format(tau=spec.discovery.edge_threshold),
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
