"""Packed training equals training the models one by one: regimes with autograd terms (cluster), direct
gradient terms (L1), swaps with and without the optimizer's moments, several seeds; MLP, CNN, transformer."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from conftest import TINY, TINY_CNN, TINY_TRANSFORMER, tiny_data

from modbench.data.dataset import TaskData
from modbench.errors import TrainingFailed
from modbench.methods import METHODS, MethodBase
from modbench.models.cnn import HookedCNN
from modbench.models.mlp import HookedMLP
from modbench.models.transformer import ModularTransformer
from modbench.registries import TASKS
from modbench.training.config import TrainConfig
from modbench.training.packed import Member, train_packed
from modbench.training.trainer import train

CPU = torch.device("cpu")
CFG = TrainConfig(steps=60, batch_size=16, eval_every=20, loss="cross_entropy")
SWAPS = {"swap_top_k": 3, "swap_every": 10}
REGIMES = {  # key -> (registered method, config changes)
    "vanilla": ("vanilla", {}),
    "l1": ("l1", {}),
    "bimt": ("bimt", SWAPS),
    "bimt_moments": ("bimt", {**SWAPS, "permute_optimizer_state": True}),
    "cluster": ("cluster", {"k": 2}),
}


def method(key: str):  # noqa: ANN201
    name, changes = REGIMES[key]
    entry = METHODS.get(name)
    return entry.build(dataclasses.replace(entry.config, **changes))


def float64(data: TaskData) -> TaskData:
    x = (lambda t: t.double()) if data.x_train.is_floating_point() else (lambda t: t)
    return TaskData(data.source, x(data.x_train), data.y_train, x(data.x_test), data.y_test)


def build(cls, cfg, seed: int) -> torch.nn.Module:  # noqa: ANN001
    torch.manual_seed(seed)
    return cls(cfg).double()


def assert_equal_training(packed, sequential, results, references) -> None:  # noqa: ANN001
    for one, other, result, reference in zip(packed, sequential, results, references, strict=True):
        for (name, value), expected in zip(one.state_dict().items(), other.state_dict().values(), strict=True):
            torch.testing.assert_close(value, expected, rtol=0, atol=1e-10, msg=name)
        assert result.packed_with == len(packed) and reference.packed_with == 1
        for row, expected in zip(result.history, reference.history, strict=True):
            assert row.keys() == expected.keys()
            for key, value in row.items():
                assert value == pytest.approx(expected[key], rel=1e-9, abs=1e-12), key


def run_both(cls, model_cfg, task, data, keys_and_seeds):  # noqa: ANN001, ANN201
    sequential, references = [], []
    for key, seed in keys_and_seeds:
        model = build(cls, model_cfg, seed)
        references.append(train(model, method(key), task, data, dataclasses.replace(CFG, seed=seed), CPU,
                                show_progress=False))
        sequential.append(model)
    members = [Member(build(cls, model_cfg, seed), method(key), seed) for key, seed in keys_and_seeds]
    results = train_packed(members, task, data, CFG, CPU, show_progress=False)
    return [m.model for m in members], sequential, results, references


def test_a_pack_of_regimes_and_seeds_equals_training_them_one_by_one_on_an_mlp():
    grid = [(key, seed) for key in REGIMES for seed in (1, 2)]
    task = TASKS.get("toy_mlp").build()
    assert_equal_training(*run_both(HookedMLP, TINY, task, float64(tiny_data()), grid))


def test_a_pack_equals_one_by_one_on_a_cnn_and_a_transformer():
    cnn_data = float64(tiny_data(d=16))
    cnn_data = TaskData("toy", cnn_data.x_train.view(-1, 1, 4, 4), cnn_data.y_train,
                        cnn_data.x_test.view(-1, 1, 4, 4), cnn_data.y_test)
    task = TASKS.get("toy_mlp").build()
    grid = [("vanilla", 1), ("bimt", 2), ("cluster", 3)]
    assert_equal_training(*run_both(HookedCNN, TINY_CNN, task, cnn_data, grid))
    sequence_task = TASKS.get("toy_transformer").build()
    transformer_grid = [("vanilla", 1), ("bimt_moments", 2)]
    assert_equal_training(*run_both(ModularTransformer, TINY_TRANSFORMER, sequence_task,
                                    sequence_task.load(None), transformer_grid))


def test_a_diverging_member_fails_alone_and_the_others_train_as_if_alone():
    class Diverging(MethodBase):
        def regularizers(self, model, step):  # noqa: ANN001, ANN201
            weight = model.blocks[0].mlp.linear.weight  # a NaN gradient: the weights become NaN too
            return {"bad": weight.sum() * float("nan")} if step >= 30 else {}

    task, data = TASKS.get("toy_mlp").build(), float64(tiny_data())
    alone = build(HookedMLP, TINY, 2)
    reference = train(alone, method("bimt"), task, data, dataclasses.replace(CFG, seed=2), CPU, show_progress=False)
    members = [Member(build(HookedMLP, TINY, 1), Diverging(None), 1), Member(build(HookedMLP, TINY, 2),
                                                                            method("bimt"), 2)]
    failed, ok = train_packed(members, task, data, CFG, CPU, show_progress=False)
    assert members[0].model.blocks[0].mlp.linear.weight.isnan().all()
    assert isinstance(failed, TrainingFailed) and "nan by step 60" in str(failed)
    assert_equal_training([members[1].model], [alone], [dataclasses.replace(ok, packed_with=1)], [reference])


def test_trained_models_packs_what_is_not_cached_under_the_one_by_one_cache_keys(tmp_path, monkeypatch):
    from modbench.pipeline import TrainingSpec, trained_model, trained_models
    from modbench.training.checkpoint import CheckpointStore

    def spec(key: str, seed: int) -> TrainingSpec:
        name, changes = REGIMES[key]
        config = dataclasses.replace(METHODS.get(name).config, **changes)
        return TrainingSpec(name, config, "tiny_mlp", TINY, dataclasses.replace(CFG, seed=seed), "toy", "toy")

    specs = [spec(key, seed) for key in ("vanilla", "l1", "bimt") for seed in (1, 2)]
    task, data = TASKS.get("toy_mlp").build(), tiny_data()
    packed_store, alone_store = CheckpointStore(tmp_path / "packed"), CheckpointStore(tmp_path / "alone")
    trained_model(specs[0], task, data, CPU, packed_store, show_progress=False)  # one already cached
    packed = trained_models(specs, task, data, CPU, packed_store, show_progress=False)
    assert [meta["cached"] for _, meta in packed] == [True] + [False] * 5
    assert [meta["training"]["packed_with"] for _, meta in packed] == [1] + [5] * 5
    for one, (model, meta) in zip(specs, packed, strict=True):
        alone, alone_meta = trained_model(one, task, data, CPU, alone_store, show_progress=False)
        assert meta["checkpoint_path"].replace("packed", "alone") == alone_meta["checkpoint_path"]
        for (name, value), expected in zip(model.state_dict().items(), alone.state_dict().values(), strict=True):
            torch.testing.assert_close(value, expected, rtol=1e-4, atol=1e-5, msg=name)  # float32: rounding only
        history = [row["test_accuracy"] for row in meta["training"]["history"]]
        assert history == [row["test_accuracy"] for row in alone_meta["training"]["history"]]
    checkpoint = Path(packed[1][1]["checkpoint_path"])
    assert checkpoint.stat().st_size == Path(trained_model(specs[1], task, data, CPU, alone_store,
                                                           show_progress=False)[1]["checkpoint_path"]).stat().st_size
    monkeypatch.setattr("modbench.training.packed.train_packed", lambda *a, **k: pytest.fail("retrained"))
    again = trained_models(specs, task, data, CPU, packed_store, show_progress=False)
    assert all(meta["cached"] for _, meta in again)


def test_frozen_and_unused_parameters_stay_as_one_by_one_training_leaves_them():
    task, data = TASKS.get("toy_mlp").build(), float64(tiny_data())
    cfg = dataclasses.replace(CFG, weight_decay=0.1)

    def odd_model(seed: int) -> torch.nn.Module:
        model = build(HookedMLP, TINY, seed)
        model.register_parameter("unused", torch.nn.Parameter(torch.ones(3, dtype=torch.float64)))
        model.unembed.weight.requires_grad_(False)
        return model

    grid = [("vanilla", 1), ("cluster", 2)]
    alone = []
    for key, seed in grid:
        alone.append(odd_model(seed))
        train(alone[-1], method(key), task, data, dataclasses.replace(cfg, seed=seed), CPU, show_progress=False)
    members = [Member(odd_model(seed), method(key), seed) for key, seed in grid]
    train_packed(members, task, data, cfg, CPU, show_progress=False)
    for member, reference in zip(members, alone, strict=True):
        assert torch.equal(member.model.unused, torch.ones(3, dtype=torch.float64))
        assert not member.model.unembed.weight.requires_grad
        for (name, value), expected in zip(member.model.state_dict().items(), reference.state_dict().values(),
                                           strict=True):
            torch.testing.assert_close(value, expected, rtol=0, atol=1e-10, msg=name)
