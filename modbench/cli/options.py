"""Validation shared by the commands: names against registries, values against ranges, then data."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from modbench.data import DATASETS
from modbench.data.dataset import ImageDataset
from modbench.errors import UserError
from modbench.methods import METHODS
from modbench.models import MODELS
from modbench.pipeline import default_steps
from modbench.provenance import resolve_device
from modbench.training.trainer import TrainConfig


@dataclass(frozen=True)
class Common:
    data: ImageDataset
    device: torch.device
    train_config: TrainConfig


def resolve_common(
    method: str,
    model: str,
    steps: int | None,
    seed: int,
    device: str | None,
    data_dir: Path | None,
    dataset: str = "mnist",
) -> Common:
    """Check every cheap thing first, so a bad flag fails before any data is read or anything written."""
    METHODS.get(method)
    MODELS.get(model)
    load = DATASETS.get(dataset)
    if steps is not None and steps < 1:
        raise UserError(f"--steps must be >= 1, got {steps}")
    if seed < 0:
        raise UserError(f"--seed must be >= 0, got {seed}")
    torch_device = resolve_device(device)
    if data_dir is not None and not data_dir.is_dir():
        raise UserError(f"--data-dir {data_dir} is not a directory")
    data = load(data_dir)
    n_steps = steps if steps is not None else default_steps(data.source)
    train_config = TrainConfig(steps=n_steps, seed=seed, eval_every=min(TrainConfig.eval_every, n_steps))
    return Common(data, torch_device, train_config)
