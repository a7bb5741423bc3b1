"""Shared fixtures: tiny seeded models of every kind, toy tasks registered like built-ins, an isolated
modbench home, no network."""

from __future__ import annotations

import pytest
import torch

from modbench.data.dataset import TaskData
from modbench.models.catalog import CNNConfig, MLPConfig, TransformerConfig
from modbench.models.mlp import HookedMLP
from modbench.registries import MODELS, TASKS, register_model, register_task
from modbench.tasks.base import ContrastivePairs
from modbench.tasks.configs import PairTaskConfig
from modbench.tasks.image_pairs import ImagePairTask
from modbench.training.config import TrainConfig

TINY = MLPConfig(widths=(16, 9, 9, 4), activation="silu", bias=True)
TINY_CNN = CNNConfig(in_channels=1, image_size=4, channels=3, kernel=3, hidden=(5,), n_classes=4, bias=True)
TINY_TRANSFORMER = TransformerConfig(n_layers=1, d_model=8, n_heads=2, d_head=4, d_mlp=8, d_vocab=7,
                                     d_vocab_out=4, n_ctx=3)
TOY_TRAIN = TrainConfig(steps=40, batch_size=16, eval_every=20, loss="cross_entropy")


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    torch.manual_seed(0)
    monkeypatch.setenv("MODBENCH_OFFLINE", "1")
    monkeypatch.setenv("MODBENCH_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MODBENCH_DATA_DIR", str(tmp_path / "no-data"))


def tiny_model(dtype: torch.dtype = torch.float32, seed: int = 0, cfg: MLPConfig = TINY) -> HookedMLP:
    torch.manual_seed(seed)
    return HookedMLP(cfg).to(dtype)


def loop_patched(model, site, clean: torch.Tensor, corrupted_input: torch.Tensor, p: int, c: int) -> torch.Tensor:
    """Reference for batched patching: one forward of pair p's corrupted input with candidate c of ``site``
    (a neuron, a channel, a head; at every position) set to its clean activation ``clean[p]``."""

    def patch(activation: torch.Tensor, hook: object = None) -> torch.Tensor:
        activation = activation.clone()
        activation.select(site.axis, c).copy_(clean[p : p + 1].select(site.axis, c))
        return activation

    return model.run_with_hooks(corrupted_input[p : p + 1], fwd_hooks=[(site.name, patch)])[0]


def tiny_data(n_train: int = 64, n_test: int = 32, d: int = 16, classes: int = 4, seed: int = 0) -> TaskData:
    """Linearly separable toy data: the label is the argmax of a fixed projection."""
    generator = torch.Generator().manual_seed(seed)
    projection = torch.randn(d, classes, generator=generator)
    x = torch.rand(n_train + n_test, d, generator=generator)
    y = (x @ projection).argmax(-1)
    return TaskData("toy", x[:n_train], y[:n_train], x[n_train:], y[n_train:])


class ToyImageTask(ImagePairTask):
    def load(self, data_dir):  # noqa: ANN001, ANN201
        return tiny_data(n_train=96, n_test=64)

    def contrast(self, data: TaskData, seed: int) -> ContrastivePairs:  # every test input against the next
        order = torch.roll(torch.arange(len(data.x_test)), 1)
        return ContrastivePairs(data.x_test, data.x_test[order], data.y_test, data.y_test[order])


class ToySequenceTask:
    """Token sequences of length 3; the label (token 0 + token 1) mod 4 is read at the last position."""

    def __init__(self, config: PairTaskConfig) -> None:
        self.config = config

    def load(self, data_dir):  # noqa: ANN001, ANN201
        generator = torch.Generator().manual_seed(0)
        x = torch.randint(0, 6, (160, 3), generator=generator)
        x[:, 2] = 6
        y = (x[:, 0] + x[:, 1]) % 4
        return TaskData("toy-seq", x[:96], y[:96], x[96:], y[96:])

    def readout(self, output: torch.Tensor) -> torch.Tensor:
        return output[:, -1]

    def targets(self, y: torch.Tensor) -> torch.Tensor:
        return y

    def contrast(self, data: TaskData, seed: int) -> ContrastivePairs:  # same first token, other second one
        corrupted = data.x_test.clone()
        corrupted[:, 1] = (corrupted[:, 1] + 1) % 6
        return ContrastivePairs(data.x_test, corrupted, data.y_test, (corrupted[:, 0] + corrupted[:, 1]) % 4)


def _register_toys() -> None:
    if "tiny_mlp" in MODELS:
        return
    register_model("tiny_mlp", TINY, "test MLP", factory="modbench.models.mlp:HookedMLP")
    register_model("tiny_cnn", TINY_CNN, "test CNN", factory="modbench.models.cnn:HookedCNN")
    register_model("tiny_transformer", TINY_TRANSFORMER, "test transformer",
                   factory="modbench.models.transformer:ModularTransformer")
    base = PairTaskConfig(pairs=((0, 1), (2, 3)), dataset="toy", train=TOY_TRAIN, quality_floor=0.0,
                          steps_by_source=())
    register_task("toy_mlp", base.__class__(**{**base.__dict__, "model": "tiny_mlp"}), "toy", factory=ToyImageTask)
    register_task("toy_cnn", base.__class__(**{**base.__dict__, "model": "tiny_cnn"}), "toy", factory=ToyImageTask)
    register_task("toy_transformer", base.__class__(**{**base.__dict__, "model": "tiny_transformer",
                                                      "dataset": "toy-seq"}), "toy", factory=ToySequenceTask)


_register_toys()
TOY_TASKS = ("toy_mlp", "toy_cnn", "toy_transformer")
assert all(key in TASKS for key in TOY_TASKS)


def run_writers(target, path: str, count: int = 8) -> None:  # noqa: ANN001
    """``target(path, worker)`` in ``count`` spawned processes at once; each must exit cleanly."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    writers = [context.Process(target=target, args=(path, w)) for w in range(count)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(120)
        assert writer.exitcode == 0
