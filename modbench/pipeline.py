"""Train-or-load: the one place that turns (method, model, training config, data) into a trained model."""

from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from modbench.data.dataset import ImageDataset
from modbench.errors import UserError
from modbench.methods import METHODS
from modbench.models import MODELS
from modbench.paths import modbench_home
from modbench.provenance import config_hash, device_name, git_commit, to_plain, versions
from modbench.training.checkpoint import CheckpointStore
from modbench.training.trainer import TrainConfig, train

# Part of every checkpoint hash: bump when a change to the training code changes what a config trains.
TRAINING_CODE_VERSION = 2  # 2: connection-cost gradient added directly (not bitwise equal to autograd)
FULL_BUDGET_STEPS = 40_000  # the BIMT MNIST code
EMBEDDED_BUDGET_STEPS = 10_000  # reduced default on the 5k embedded digits (minutes on a laptop CPU)


def default_steps(data_source: str) -> int:
    return FULL_BUDGET_STEPS if data_source == "mnist" else EMBEDDED_BUDGET_STEPS


def override(config: Any, assignments: list[str]) -> Any:
    """Apply ``key=value`` strings to a frozen config (values parsed as JSON, else kept as text)."""
    if not assignments:
        return config
    fields = {f.name: f for f in dataclasses.fields(config)}
    hints = typing.get_type_hints(type(config))
    changes: dict[str, Any] = {}
    for item in assignments:
        key, sep, text = item.partition("=")
        if not sep:
            raise UserError(f"--set expects KEY=VALUE, got {item!r}")
        if key not in fields:
            raise UserError(f"{type(config).__name__} has no field {key!r} (fields: {', '.join(fields)})")
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text
        if hints.get(key) is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        changes[key] = value
    try:
        return dataclasses.replace(config, **changes)
    except (ValueError, TypeError) as error:
        raise UserError(f"invalid {type(config).__name__}: {error}") from None


@dataclass(frozen=True)
class TrainingSpec:
    """Everything that determines a trained model; its hash names the checkpoint."""

    method: str
    method_config: Any
    model: str
    model_config: Any
    train: TrainConfig
    data_source: str
    code_version: int = TRAINING_CODE_VERSION

    @property
    def hash(self) -> str:
        return config_hash(self)

    @property
    def checkpoint_name(self) -> str:
        return f"{self.method}-{self.model}-{self.data_source}-{self.hash}"


def method_config(method: str, overrides: list[str] = ()) -> Any:
    """The method's default config with ``KEY=VALUE`` overrides applied (validated)."""
    return override(METHODS.get(method).config, list(overrides))


def training_spec(
    method: str, model: str, data: ImageDataset, train_cfg: TrainConfig, config: Any | None = None
) -> TrainingSpec:
    config = METHODS.get(method).config if config is None else config
    return TrainingSpec(method, config, model, MODELS.get(model).config, train_cfg, data.source)


def build_model(spec: TrainingSpec) -> nn.Module:
    torch.manual_seed(spec.train.seed)
    return MODELS.get(spec.model).build(spec.model_config)


def trained_model(
    spec: TrainingSpec,
    data: ImageDataset,
    device: torch.device,
    store: CheckpointStore | None = None,
    show_progress: bool = True,
) -> tuple[nn.Module, dict[str, Any]]:
    """Load the cached model for ``spec``, or train and cache it. Returns the model and its record."""
    store = store or CheckpointStore(modbench_home() / "models")
    model = build_model(spec)
    plain = to_plain(spec)
    weights, _ = store.paths(spec.checkpoint_name)
    if store.exists(spec.checkpoint_name):
        meta = store.load(spec.checkpoint_name, model, plain) | {"cached": True}
    else:
        method = METHODS.get(spec.method).build(spec.method_config)
        result = train(model, method, data, spec.train, device, show_progress)
        info = {
            "config_hash": spec.hash,
            "training": to_plain(result),
            "provenance": {"versions": versions(), "git_commit": git_commit(), "device": device_name(device)},
        }
        store.save(spec.checkpoint_name, model, plain, info)
        meta = {"config": plain, **info, "cached": False}
    meta["checkpoint_path"] = str(weights)
    meta["checkpoint_bytes"] = weights.stat().st_size
    return model.to(device), meta
