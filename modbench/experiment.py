"""The one experiment entry point, used by the CLI, the reproduction scripts and sweeps:
task data -> train (or load) -> discover on resamples of one part of the pairs -> choose circuits ->
score them on resamples of the other (held-out) part -> a frozen :class:`ResultRecord`."""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from modbench.errors import TrainingFailed, UserError, one_line
from modbench.provenance import config_hash, to_plain
from modbench.registries import DISCOVERERS, INTERVENTIONS, METHODS, MODELS, SELECTIONS, TASKS
from modbench.registry import check_int, check_number
from modbench.results.record import ResultRecord


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
        check_int(self, "boots", 2)
        check_int(self, "pairs_per_boot", 1)
        check_int(self, "pair_seed", 0)
        check_int(self, "boot_seed", 0)
        check_number(self, "holdout", 0, 1, low_open=True, high_open=True)
        check_number(self, "edge_threshold", 0, 1, high_open=True)


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
        if task.traits.get("reads") == "classes" and not reads_classes(discoverer):
            raise UserError(f"task {self.task!r} is read per class: pair discoverers such as {discoverer!r} do not "
                            "apply (use a per-class one, e.g. on_off)")
        discovery = self.discovery
        selection_config = self.selection_config
        if not discovery.selection and selection_config is not None:  # named by its config's type
            matching = [k for k in SELECTIONS.keys() if type(SELECTIONS.get(k).config) is type(selection_config)]
            if len(matching) != 1:
                raise UserError(f"cannot tell which selection {type(selection_config).__name__} configures")
            discovery = dataclasses.replace(discovery, selection=matching[0])
        if not discovery.selection:  # the discoverer's own selection (edge discoverers), else the task's
            owner = DISCOVERERS.get(discoverer).traits
            if "selection" in owner:
                selection, selection_config = owner["selection"], owner.get("selection_config")
            else:
                selection = getattr(task.config, "selection", "top_k")
                selection_config = getattr(task.config, "selection_config", None)
            discovery = dataclasses.replace(discovery, selection=selection)
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


def reads_classes(discoverer: str) -> bool:
    """A per-class discoverer (ECS, ON/OFF: ``analyse`` a model) rather than a pair one (``score`` pairs)."""
    return DISCOVERERS.get(discoverer).traits.get("reads") == "classes"


def check_selection(spec: ExperimentSpec) -> None:
    """Before any training: the resolved spec's selection must fit every site of its model (K <= width)."""
    if not reads_classes(spec.discoverer):
        selection = SELECTIONS.get(spec.discovery.selection).build(spec.selection_config)
        model = MODELS.get(spec.model).build(spec.model_config)
        selection.check(model.edge_graph().sites if reads_edges(spec.discoverer) else model.sites())


def reads_edges(discoverer: str) -> bool:
    """An edge discoverer (ACDC, EAP, ...): its circuits are sets of edges of the model's edge graph."""
    return DISCOVERERS.get(discoverer).traits.get("candidates") == "edges"


def scoring_key(spec: ExperimentSpec, source: str) -> str:
    """Runs with the same key differ only in their model (method, its config, seed, budget): the same task,
    data, pairs, resamples, discoverer, selection and intervention. "" when the discoverer cannot score
    several models in one pass (not declared ``packable``)."""
    if not DISCOVERERS.get(spec.discoverer).traits.get("packable"):
        return ""
    plain = to_plain(spec)
    return config_hash({k: v for k, v in plain.items() if k not in ("method", "method_config", "train_seed", "steps")}
                       | {"data": source})


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
    """A run between its steps: resolved, its task built (``key``: per task and model config) and its data
    loaded, its identity known."""

    spec: ExperimentSpec
    key: str
    task: Any
    data: Any
    identity: RecordIdentity


def run_experiments(specs: list[ExperimentSpec], device: torch.device, data_dir: Path | None = None,
                    show_progress: bool = True, data: Any = None, pack: bool = True,
                    trained: dict[str, Any] | None = None, built: dict[str, Any] | None = None,
                    ) -> list[tuple[ResultRecord, Any] | Exception]:
    """Several runs in one process. With ``pack``, the models not yet trained are trained in packs where they
    share an architecture (``pipeline.trained_models``), and runs with the same :func:`scoring_key` are
    scored in one batched pass (``scoring.discover_and_score_pack``). Per spec, its record and outcome, or
    the exception of its own failure (bad spec, model diverged, too few pairs). An error of a training pack
    as a whole (a member's bad config, out of memory) is raised: the caller may retry the runs one by one.
    ``trained``: models this process already has (:func:`train_runs`), by training hash; ``built``: the tasks
    and data it already has (:func:`prepare_runs`)."""
    results: list[Any] = [None] * len(specs)
    runs: dict[int, _Run] = {}
    built = {} if built is None else built  # tasks and their data, per (task, model config)
    for index, spec in enumerate(specs):
        try:
            runs[index] = _prepare(spec, data_dir, data, built)
        except Exception as error:  # noqa: BLE001 (the run's own failure, raised again for one run)
            results[index] = error
    models = dict(trained or {})
    models.update(train_runs([run for run in runs.values() if run.identity.training.hash not in models], device,
                             show_progress, pack))
    scoring: dict[str, list[int]] = {}
    for index, run in runs.items():
        model = models[run.identity.training.hash]
        if isinstance(model, TrainingFailed):
            results[index] = TrainingFailed(f"{run.spec.method} on {run.spec.task}: {model}")
            continue
        key = scoring_key(run.spec, run.data.source) if pack else ""
        scoring.setdefault(key or str(index), []).append(index)
    _score_and_record(scoring, runs, models, device, results)
    return results


def _score_and_record(scoring: dict[str, list[int]], runs: dict[int, _Run], models: dict[str, Any],
                      device: torch.device, results: list[Any]) -> None:
    from modbench.run_record import make_record

    trained_before: set[str] = set()  # a model trained here is "cached" for its runs after the first
    for indices in scoring.values():
        group = [runs[i] for i in indices]
        trained = [models[run.identity.training.hash] for run in group]
        for index, run, (_, training), outcome in zip(indices, group, trained, _score_group(group, trained, device),
                                                      strict=True):
            if isinstance(outcome, Exception):
                results[index] = outcome
                continue
            training_hash = run.identity.training.hash
            if training_hash in trained_before:
                training = training | {"cached": True}
            trained_before.add(training_hash)
            try:
                results[index] = (make_record(run.spec, run.task, run.data, run.identity, training, outcome, device),
                                  outcome)
            except Exception as error:  # noqa: BLE001 (the run's own failure)
                results[index] = error


def train_runs(runs: list[_Run], device: torch.device, show_progress: bool = True,
               pack: bool = True) -> dict[str, Any]:
    """The runs' models by training hash: loaded, or trained (``pack``: in packs where they share an
    architecture), each with its task and data; a model that diverged maps to its TrainingFailed."""
    from modbench.pipeline import trained_models

    groups: dict[str, dict[str, _Run]] = {}  # per task and model config, one run per model
    for run in runs:
        groups.setdefault(run.key, {}).setdefault(run.identity.training.hash, run)
    models: dict[str, Any] = {}
    for group in groups.values():
        todo = {training_hash: run for training_hash, run in group.items() if training_hash not in models}
        if todo:
            first = next(iter(todo.values()))
            models.update(zip(todo, trained_models([run.identity.training for run in todo.values()], first.task,
                                                   first.data, device, show_progress=show_progress, pack=pack),
                              strict=True))
    return models


def prepare_runs(specs: list[ExperimentSpec], data_dir: Path | None = None,
                 built: dict[str, Any] | None = None) -> list[_Run]:
    """The specs resolved, checked, with their tasks built and data loaded (once each, kept in ``built``);
    errors raised."""
    built = {} if built is None else built
    return [_prepare(spec, data_dir, None, built) for spec in specs]


def _prepare(spec: ExperimentSpec, data_dir: Path | None, data: Any, built: dict[str, Any]) -> _Run:
    """Resolve the spec, check its selection against the model's sites (before any training), build its task
    and load its data (each once per process: ``built``), and name its record."""
    from modbench.pipeline import build_task

    spec = spec.resolved()
    key = config_hash([spec.task, spec.model_config])
    task = built[key][0] if key in built else build_task(spec.task, spec.model_config)
    check_selection(spec)  # before loading any data
    if key not in built:
        built[key] = (task, task.load(data_dir) if data is None else data)
    loaded = built[key][1]
    return _Run(spec, key, task, loaded, record_identity(spec, loaded.source, task.config))


def pair_scoring(spec: ExperimentSpec, task: Any, data: Any) -> tuple[Any, ...]:
    """What pair discoverers score a model with: (pairs, discoverer, selection, intervention); too few pairs
    in the data is a UserError."""
    pairs = task.contrast(data, spec.discovery.pair_seed)
    if len(pairs) < 4:
        raise UserError(f"task {spec.task!r} found only {len(pairs)} pairs in the {data.source} test split")
    return (pairs, DISCOVERERS.get(spec.discoverer).build(spec.discoverer_config),
            SELECTIONS.get(spec.discovery.selection).build(spec.selection_config),
            INTERVENTIONS.get(spec.discovery.intervention).build(spec.intervention_config))


def _score_group(group: list[_Run], trained: list[Any], device: torch.device) -> list[Any]:
    """Outcomes (or each run's exception) of runs sharing a scoring key: one run, or a pack scored in one
    batched pass; a pack whose pass fails (a model ``torch.vmap`` cannot run, out of memory) is scored one model
    at a time, with a warning."""
    from modbench.models.pack import ModelPack
    from modbench.scoring import analyse_classes, discover_and_score_pack

    spec, task, data = group[0].spec, group[0].task, group[0].data
    models = [model for model, _ in trained]
    try:
        if reads_classes(spec.discoverer):
            found = DISCOVERERS.get(spec.discoverer).build(spec.discoverer_config)
            return [analyse_classes(model, task, data, found) for model in models]
        pairs, found, selection, intervention = pair_scoring(spec, task, data)
        return discover_and_score_pack(ModelPack(models), task, pairs, found, selection, intervention,
                                       spec.discovery, device)
    except Exception as error:  # noqa: BLE001 (one run: its failure; a pack: retried one by one)
        if len(group) == 1 or isinstance(error, UserError):  # too few pairs: every run's own failure
            return [error] * len(group)
        warnings.warn(f"scoring {len(group)} models in one pass failed ({one_line(error)}); scoring them one by one",
                      stacklevel=2)
    return [_score_group([run], [pair], device)[0] for run, pair in zip(group, trained, strict=True)]
