"""The opt-in compiled training step (``compile_step``, ``$MODBENCH_COMPILE=1``) trains the models the eager
step trains: in float64 the weights and the logged history agree to rounding, for a regime with swaps that move
the optimizer's moments, one with direct gradient terms and one with autograd terms; alone and in a pack.
Batch rows fetched in chunks are the per-step draws, and a chunk never runs past a progress save.

The compiled runs switch off the test run's jaxtyping shape checks (their beartype checkers cannot be traced by
dynamo, which hands them fake tensors); the eager runs they are compared with are checked as usual."""

from __future__ import annotations

import dataclasses
from contextlib import nullcontext

import jaxtyping
import pytest
import torch
from conftest import tiny_data, tiny_model

from modbench.methods import METHODS
from modbench.registries import TASKS
from modbench.training.config import TrainConfig
from modbench.training.packed import Member, train_packed
from modbench.training.trainer import COMPILE_ENV, PrefetchedRows, batches, compile_requested, train

CPU = torch.device("cpu")
DEVICES = [CPU] + ([torch.device("cuda")] if torch.cuda.is_available() else [])  # CUDA: CUDA graphs
CFG = TrainConfig(steps=40, batch_size=16, eval_every=20, loss="cross_entropy")
REGIMES = {"bimt_moments": ("bimt", {"swap_top_k": 3, "swap_every": 10, "permute_optimizer_state": True}),
           "l1": ("l1", {}), "cluster": ("cluster", {"k": 2})}


def method(key: str):  # noqa: ANN201
    name, changes = REGIMES[key]
    entry = METHODS.get(name)
    return entry.build(dataclasses.replace(entry.config, **changes))


@pytest.fixture
def unchecked(monkeypatch):  # noqa: ANN001, ANN201
    """A context in which jaxtyping's run-time checks are off (see the module docstring)."""
    from contextlib import contextmanager

    @contextmanager
    def off():  # noqa: ANN202
        with monkeypatch.context() as patch:
            patch.setattr(jaxtyping.config, "jaxtyping_disable", True)
            yield

    return off


def float64_data():  # noqa: ANN201
    data = tiny_data()
    return dataclasses.replace(data, x_train=data.x_train.double(), x_test=data.x_test.double())


def assert_same_training(models, others, results, references) -> None:  # noqa: ANN001
    for one, other, result, reference in zip(models, others, results, references, strict=True):
        for (name, value), expected in zip(one.state_dict().items(), other.state_dict().values(), strict=True):
            torch.testing.assert_close(value, expected, rtol=0, atol=1e-10, msg=name)
        assert result.compiled_step and not reference.compiled_step
        for row, expected in zip(result.history, reference.history, strict=True):
            assert row.keys() == expected.keys()
            for key, value in row.items():
                assert value == pytest.approx(expected[key], rel=1e-9, abs=1e-12), key


@pytest.mark.parametrize("device", DEVICES, ids=str)
@pytest.mark.parametrize("key", list(REGIMES))
def test_compiled_step_trains_the_model_the_eager_step_trains(key, device, unchecked):
    task, data = TASKS.get("toy_mlp").build(), float64_data()
    runs = {}
    for compile_step in (True, False):
        model = tiny_model(torch.float64, seed=3)
        with unchecked() if compile_step else nullcontext():
            result = train(model, method(key), task, data, CFG, device, show_progress=False,
                           compile_step=compile_step)
        runs[compile_step] = (model, result)
    assert_same_training([runs[True][0]], [runs[False][0]], [runs[True][1]], [runs[False][1]])


@pytest.mark.parametrize("device", DEVICES, ids=str)
def test_compiled_pack_trains_the_models_the_eager_pack_trains(device, unchecked):
    task, data = TASKS.get("toy_mlp").build(), float64_data()
    grid = [("bimt_moments", 1), ("l1", 2), ("cluster", 3)]
    packs = {}
    for compile_step in (True, False):
        members = [Member(tiny_model(torch.float64, seed=seed), method(key), seed) for key, seed in grid]
        with unchecked() if compile_step else nullcontext():
            results = train_packed(members, task, data, CFG, device, show_progress=False, compile_step=compile_step)
        packs[compile_step] = ([m.model for m in members], results)
    assert_same_training(packs[True][0], packs[False][0], packs[True][1], packs[False][1])


def test_the_environment_switches_compiled_steps_on_and_an_argument_overrides_it(monkeypatch):
    monkeypatch.delenv(COMPILE_ENV, raising=False)
    assert not compile_requested(None) and compile_requested(True)
    monkeypatch.setenv(COMPILE_ENV, "1")
    assert compile_requested(None) and not compile_requested(False)


def test_prefetched_rows_are_the_per_step_draws_and_stop_at_every_save_point():
    n, batch, steps, every = 37, 8, 23, 5
    expected = batches(n, batch, torch.Generator().manual_seed(4))
    order = batches(n, batch, torch.Generator().manual_seed(4))
    rows_at = PrefetchedRows(lambda: next(order), CPU, steps, every)
    for step in range(steps):
        assert torch.equal(rows_at(step), next(expected))
        if (step + 1) % every == 0:  # a progress save here reads the order's state: the per-step run's
            state, wanted = order.state_dict(), expected.state_dict()
            assert state["position"] == wanted["position"] and torch.equal(state["order"], wanted["order"])
            assert torch.equal(state["generator"], wanted["generator"])


def test_the_compile_flag_switches_compiled_steps_on_for_this_process_only(monkeypatch):
    from modbench.cli.options import request_compile

    monkeypatch.setenv(COMPILE_ENV, "0")  # recorded, so the teardown removes what request_compile sets
    request_compile(False)
    assert not compile_requested(None)
    request_compile(True)
    assert compile_requested(None) and not compile_requested(False)
