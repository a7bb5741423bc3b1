"""Shared fixtures: tiny seeded models and data, an isolated modbench home, no network."""

from __future__ import annotations

import pytest
import torch

from modbench.data.dataset import ImageDataset
from modbench.models.mlp import HookedMLP, MLPConfig

TINY = MLPConfig(widths=(16, 9, 9, 4), activation="silu", bias=True)


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    torch.manual_seed(0)
    monkeypatch.setenv("MODBENCH_OFFLINE", "1")
    monkeypatch.setenv("MODBENCH_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MODBENCH_DATA_DIR", str(tmp_path / "no-data"))


def tiny_model(dtype: torch.dtype = torch.float32, seed: int = 0, cfg: MLPConfig = TINY) -> HookedMLP:
    torch.manual_seed(seed)
    return HookedMLP(cfg).to(dtype)


def tiny_data(n_train: int = 64, n_test: int = 32, d: int = 16, classes: int = 4, seed: int = 0) -> ImageDataset:
    """Linearly separable toy data: the label is the argmax of a fixed projection."""
    generator = torch.Generator().manual_seed(seed)
    projection = torch.randn(d, classes, generator=generator)
    x = torch.rand(n_train + n_test, d, generator=generator)
    y = (x @ projection).argmax(-1)
    return ImageDataset("toy", x[:n_train], y[:n_train], x[n_train:], y[n_train:])
