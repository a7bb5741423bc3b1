"""Train-or-load: the one place that turns (method, model, training config, data) into a trained model."""

from __future__ import annotations

import dataclasses
import json
import typing
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from modbench.data.dataset import TaskData
from modbench.errors import TrainingFailed, UserError
from modbench.paths import modbench_home
from modbench.provenance import config_hash, device_name, git_commit, to_plain, versions
from modbench.registries import METHODS, MODELS
from modbench.registry import coerce
from modbench.tasks.base import Task
from modbench.training.checkpoint import CheckpointStore
from modbench.training.config import TrainConfig

# Part of every checkpoint hash: bump when a change to the training code changes what a config trains.
TRAINING_CODE_VERSION = 3  # 3: generic wiring, task read-out, memory probe (numerics as 2)


def override(config: Any, assignments: list[str] | tuple[str, ...]) -> Any:
    """Apply ``key=value`` strings to a frozen config (values parsed as JSON, else kept as text, then
    checked against the field's type) and validate the result."""
    if not assignments:
        return config
    owner = type(config).__name__
    fields = {f.name: f for f in dataclasses.fields(config)}
    hints = typing.get_type_hints(type(config))
    changes: dict[str, Any] = {}
    for item in assignments:
        key, sep, text = item.partition("=")
        if not sep:
            raise UserError(f"--set expects KEY=VALUE, got {item!r}")
        if key not in fields:
            raise UserError(f"{owner} has no field {key!r} (fields: {', '.join(fields)})")
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text
        try:
            changes[key] = coerce(value, hints.get(key), f"{owner}.{key}")
        except ValueError as error:
            raise UserError(str(error)) from None
    try:
        return dataclasses.replace(config, **changes)
    except (ValueError, TypeError) as error:
        raise UserError(f"invalid {owner}: {error}") from None


@dataclass(frozen=True)
class TrainingSpec:
    """Everything that determines a trained model; its hash names the checkpoint. ``data`` says what the
    model is trained on (a dataset, shared by the tasks that read it), ``data_source`` which copy of it."""

    method: str
    method_config: Any
    model: str
    model_config: Any
    train: TrainConfig
    data: str
    data_source: str
    code_version: int = TRAINING_CODE_VERSION

    @property
    def hash(self) -> str:
        return config_hash(self)

    @property
    def checkpoint_name(self) -> str:
        return f"{self.method}-{self.model}-{self.data_source}-{self.hash}"


def task_training_spec(method: str, method_config: Any, model: str, model_config: Any, task_config: Any,
                       source: str, steps: int | None, seed: int) -> TrainingSpec:
    """What a task trains for a data source: its training config with the run's step budget (None: the
    task's budget for that source) and seed."""
    steps = steps or task_config.steps_for(source)
    train_cfg = dataclasses.replace(task_config.train, steps=steps, seed=seed,
                                    eval_every=min(task_config.train.eval_every, steps))
    return TrainingSpec(method, method_config, model, model_config, train_cfg, task_config.dataset, source)


def build_task(task: str, model_config: Any) -> Task:
    """The task ``task`` as the model of ``model_config`` needs it: a task with ``for_model`` adapts to the
    model (e.g. takes a pretrained model's tokenizer, which changes its data and so its config)."""
    from modbench.registries import TASKS

    built = TASKS.get(task).build()
    for_model = getattr(built, "for_model", None)
    return for_model(model_config) if for_model is not None else built


def build_model(spec: TrainingSpec) -> nn.Module:
    torch.manual_seed(spec.train.seed)
    return MODELS.get(spec.model).build(spec.model_config)


def pack_key(spec: TrainingSpec) -> str:
    """Specs with the same key can be trained in one pack: one architecture, data and training config, any
    regimes and seeds (``modbench.training.packed``)."""
    return config_hash([spec.model, spec.model_config, dataclasses.replace(spec.train, seed=0), spec.data,
                        spec.data_source, spec.code_version])


def _save_trained(spec: TrainingSpec, model: nn.Module, result: Any, device: torch.device,
                  store: CheckpointStore) -> dict[str, Any]:
    info = {
        "config_hash": spec.hash,
        "training": to_plain(result),
        "provenance": {"versions": versions(), "git_commit": git_commit(), "device": device_name(device)},
    }
    store.save(spec.checkpoint_name, model, to_plain(spec), info)
    return {"config": to_plain(spec), **info, "cached": False}


def _with_file_facts(model: nn.Module, meta: dict[str, Any], spec: TrainingSpec, store: CheckpointStore,
                     device: torch.device) -> tuple[nn.Module, dict[str, Any]]:
    weights, _ = store.paths(spec.checkpoint_name)
    meta["checkpoint_path"] = str(weights)
    meta["checkpoint_bytes"] = weights.stat().st_size
    return model.to(device), meta


def trained_model(
    spec: TrainingSpec,
    task: Task,
    data: TaskData,
    device: torch.device,
    store: CheckpointStore | None = None,
    show_progress: bool = True,
) -> tuple[nn.Module, dict[str, Any]]:
    """Load the cached model for ``spec``, or train and cache it (resuming a killed training from its periodic
    progress). Returns the model and its record."""
    store = store or CheckpointStore(modbench_home() / "models")
    with store.lock(spec.checkpoint_name):
        if store.exists(spec.checkpoint_name):
            model = build_model(spec)
            meta = store.load(spec.checkpoint_name, model, to_plain(spec)) | {"cached": True}
        else:
            model, meta = _train_and_save(spec, task, data, device, store, show_progress)
    return _with_file_facts(model, meta, spec, store, device)


def _train_and_save(spec: TrainingSpec, task: Task, data: TaskData, device: torch.device, store: CheckpointStore,
                    show_progress: bool) -> tuple[nn.Module, dict[str, Any]]:
    """Train one model (resuming its periodic progress if any) and cache it; the caller holds its lock."""
    from modbench.training.trainer import train

    model = build_model(spec)
    method = METHODS.get(spec.method).build(spec.method_config)
    progress = store.progress(spec.checkpoint_name, spec.hash, spec.train.steps)
    try:
        result = train(model, method, task, data, spec.train, device, show_progress, progress)
    except TrainingFailed:
        progress.discard()  # a diverged run diverges again: nothing worth resuming
        raise
    meta = _save_trained(spec, model, result, device, store)
    progress.discard()
    return model, meta


def trained_models(
    specs: list[TrainingSpec],
    task: Task,
    data: TaskData,
    device: torch.device,
    store: CheckpointStore | None = None,
    show_progress: bool = True,
    pack: bool = True,
) -> list[tuple[nn.Module, dict[str, Any]] | TrainingFailed]:
    """Several models of one task: cached ones loaded, the others trained, those sharing a :func:`pack_key`
    together in packs (``pack``; one by one otherwise, or when alone). Per spec, its model and record, or the
    TrainingFailed of a model that diverged (the others are unaffected). Checkpoints, records and cache keys
    are those of :func:`trained_model`. A pack saves its progress under the hash of its members (in order), so
    a killed pack resumes when the same models are asked for again."""
    from modbench.training.packed import Member, train_packed

    store = store or CheckpointStore(modbench_home() / "models")
    by_name = {spec.checkpoint_name: spec for spec in specs}
    failed: dict[str, TrainingFailed] = {}
    pending = sorted(name for name in by_name if not store.exists(name))  # complete checkpoints need no lock
    with ExitStack() as locks:
        for name in pending:  # one global order: no deadlock with another process taking several
            locks.enter_context(store.lock(name))
        todo = [by_name[name] for name in pending if not store.exists(name)]  # another process may have saved it
        groups: dict[str, list[TrainingSpec]] = {}
        for spec in todo:  # a model with saved progress of its own resumes alone
            resumable = store.progress(spec.checkpoint_name, spec.hash, spec.train.steps).path.exists()
            groups.setdefault(pack_key(spec) if pack and not resumable else spec.hash, []).append(spec)
        for group in groups.values():
            if len(group) == 1:
                try:
                    _train_and_save(group[0], task, data, device, store, show_progress)
                except TrainingFailed as error:
                    failed[group[0].checkpoint_name] = error
                continue
            members = [Member(build_model(spec), METHODS.get(spec.method).build(spec.method_config), spec.train.seed)
                       for spec in group]
            pack_hash = config_hash([spec.hash for spec in group])
            progress = store.progress(f"pack-{pack_hash}", pack_hash, group[0].train.steps)
            results = train_packed(members, task, data, group[0].train, device, show_progress, progress=progress)
            for spec, member, result in zip(group, members, results, strict=True):
                if isinstance(result, TrainingFailed):
                    failed[spec.checkpoint_name] = result
                else:
                    _save_trained(spec, member.model, result, device, store)
                    store.progress(spec.checkpoint_name, spec.hash, spec.train.steps).discard()
            progress.discard()
    fresh = {spec.checkpoint_name for spec in todo}
    out: list[tuple[nn.Module, dict[str, Any]] | TrainingFailed] = []
    for spec in specs:
        if spec.checkpoint_name in failed:
            out.append(failed[spec.checkpoint_name])
            continue
        model = build_model(spec)
        meta = store.load(spec.checkpoint_name, model, to_plain(spec)) | {"cached": spec.checkpoint_name not in fresh}
        out.append(_with_file_facts(model, meta, spec, store, device))
    return out
