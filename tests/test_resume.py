"""A long training killed midway resumes from its last periodic progress file and ends exactly where the
uninterrupted run ends (same batches, swaps, optimizer moments, history); damaged progress is set aside."""

from __future__ import annotations

import dataclasses
import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from conftest import TINY, tiny_data

from modbench.methods import METHODS
from modbench.pipeline import TrainingSpec, trained_model
from modbench.registries import TASKS
from modbench.training.checkpoint import CheckpointStore, progress_every
from modbench.training.config import TrainConfig
from modbench.training.trainer import Stepper

CPU = torch.device("cpu")
STEPS = 1200  # progress saved at steps 500 and 1000
KILL_AT = 700


def spec() -> TrainingSpec:
    method_config = dataclasses.replace(METHODS.get("bimt").config, swap_top_k=9, swap_every=100)
    return TrainingSpec("bimt", method_config, "tiny_mlp", TINY, TrainConfig(steps=STEPS, batch_size=16), "toy",
                        "toy")


def train_in(root: Path):  # noqa: ANN201
    return trained_model(spec(), TASKS.get("toy_mlp").build(), tiny_data(), CPU, CheckpointStore(root),
                         show_progress=False)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):  # noqa: ANN001, ANN201
    """The uninterrupted run (trained once for the module)."""
    return train_in(tmp_path_factory.mktemp("reference"))


def interrupt_at(monkeypatch, step_to_fail: int, error: BaseException) -> None:
    original = Stepper.__call__

    def failing(self, x, y, step):  # noqa: ANN001, ANN202
        if step == step_to_fail:
            raise error
        return original(self, x, y, step)

    monkeypatch.setattr(Stepper, "__call__", failing)


def assert_same_training(a, b) -> None:  # noqa: ANN001
    (model_a, meta_a), (model_b, meta_b) = a, b
    for (name, value), other in zip(model_a.state_dict().items(), model_b.state_dict().values(), strict=True):
        assert torch.equal(value, other), name
    assert meta_a["training"]["history"] == meta_b["training"]["history"]


def test_progress_is_saved_every_five_percent_and_never_in_short_runs():
    assert progress_every(STEPS) == 500 and progress_every(40_000) == 2000 and progress_every(400) == 500


def test_a_training_interrupted_midway_resumes_from_its_progress_and_ends_as_the_uninterrupted_run(
        tmp_path, monkeypatch, reference):
    assert reference[1]["training"]["resumed_from_step"] == 0
    store = CheckpointStore(tmp_path / "killed")
    progress = store.progress(spec().checkpoint_name, spec().hash, STEPS).path
    interrupt_at(monkeypatch, KILL_AT, KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        train_in(store.root)
    assert progress.exists() and not store.exists(spec().checkpoint_name)
    monkeypatch.undo()
    resumed = train_in(store.root)
    assert resumed[1]["training"]["resumed_from_step"] == 500
    assert_same_training(resumed, reference)
    assert not progress.exists(), "the finished checkpoint replaces the progress file"


def test_a_training_killed_with_sigkill_resumes_in_the_next_process(tmp_path, reference):
    """A real SIGKILL (no Python cleanup) at step 700 of 1,200: the next process starts at step 500."""
    script = textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        import test_resume
        from modbench.training.trainer import Stepper
        original = Stepper.__call__
        def killing(self, x, y, step):
            if step == {KILL_AT}:
                os.kill(os.getpid(), signal.SIGKILL)
            return original(self, x, y, step)
        Stepper.__call__ = killing
        test_resume.train_in(test_resume.Path(sys.argv[1]))
    """)
    killed = subprocess.run([sys.executable, "-c", script, str(tmp_path / "killed")], env=os.environ.copy(),
                            capture_output=True, text=True, timeout=300)
    assert killed.returncode == -9, killed.stderr[-2000:]
    left = sorted(p.name for p in (tmp_path / "killed").iterdir() if not p.name.endswith(".lock"))
    assert left == [f"{spec().checkpoint_name}.progress.pt"], left  # no checkpoint, no stray temporary file
    resumed = train_in(tmp_path / "killed")
    assert resumed[1]["training"]["resumed_from_step"] == 500
    assert_same_training(resumed, reference)


class _Exploit:
    def __reduce__(self):  # noqa: ANN204
        return (os.system, ("touch pwned",))


@pytest.mark.parametrize("damage", ["garbage", "pickle", "other_config", "not_a_dict", "missing_keys",
                                    "other_shapes"])
def test_damaged_progress_is_set_aside_with_a_warning_and_training_starts_again(tmp_path, monkeypatch, damage,
                                                                                 reference):
    monkeypatch.chdir(tmp_path)
    store = CheckpointStore(tmp_path / "models")
    progress = store.progress(spec().checkpoint_name, spec().hash, STEPS)
    store.root.mkdir()
    if damage == "garbage":
        progress.path.write_bytes(b"\x00 half a file")
    elif damage == "pickle":
        progress.path.write_bytes(pickle.dumps({"config_hash": spec().hash, "step": 500, "x": _Exploit()}, protocol=4))
    elif damage == "other_config":
        torch.save({"config_hash": "0" * 16, "step": 500}, progress.path)
    elif damage == "missing_keys":
        torch.save({"config_hash": spec().hash, "step": 500}, progress.path)
    elif damage == "other_shapes":  # e.g. left by an older version of the model's code
        state = {key: 0 for key in ("step", "optimizer", "order", "history", "elapsed", "peak", "peak_kind")}
        torch.save({"config_hash": spec().hash, **state, "step": 500, "model": {"w": torch.zeros(2)}}, progress.path)
    else:
        torch.save([1, 2, 3], progress.path)
    with pytest.warns(UserWarning, match="ignoring training progress"):
        resumed = train_in(store.root)
    assert not (tmp_path / "pwned").exists()
    assert resumed[1]["training"]["resumed_from_step"] == 0
    assert_same_training(resumed, reference)


def test_several_models_at_once_resume_the_one_with_progress_alone_and_pack_none_with_it(tmp_path, monkeypatch,
                                                                                        reference):
    from modbench.pipeline import trained_models

    other = dataclasses.replace(spec(), train=dataclasses.replace(spec().train, seed=2))
    store = CheckpointStore(tmp_path / "several")
    interrupt_at(monkeypatch, KILL_AT, KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        train_in(store.root)
    monkeypatch.undo()
    results = trained_models([spec(), other], TASKS.get("toy_mlp").build(), tiny_data(), CPU, store,
                             show_progress=False)
    assert [meta["training"]["resumed_from_step"] for _, meta in results] == [500, 0]
    assert [meta["training"]["packed_with"] for _, meta in results] == [1, 1]
    assert_same_training(results[0], reference)
    assert not list(store.root.glob("*.progress.pt"))


def pack_specs() -> list:  # noqa: ANN201
    """Two regimes of one architecture and training config: one pack (BIMT swaps permute its slice)."""
    vanilla = dataclasses.replace(spec(), method="vanilla", method_config=METHODS.get("vanilla").config)
    return [spec(), vanilla]


def train_pack_in(root: Path) -> list:  # noqa: ANN201
    from modbench.pipeline import trained_models

    return trained_models(pack_specs(), TASKS.get("toy_mlp").build(), tiny_data(), CPU, CheckpointStore(root),
                          show_progress=False)


def test_a_pack_killed_midway_resumes_from_its_progress_and_ends_as_the_uninterrupted_pack(tmp_path, monkeypatch):
    from modbench.training import packed

    reference = train_pack_in(tmp_path / "reference")
    assert [meta["training"]["packed_with"] for _, meta in reference] == [2, 2]
    original = packed.checkpoints

    def failing(step, cfg):  # noqa: ANN001, ANN202
        if step == KILL_AT:
            raise KeyboardInterrupt
        return original(step, cfg)

    monkeypatch.setattr(packed, "checkpoints", failing)
    store = CheckpointStore(tmp_path / "killed")
    with pytest.raises(KeyboardInterrupt):
        train_pack_in(store.root)
    saved = list(store.root.glob("pack-*.progress.pt"))
    assert len(saved) == 1 and not any(store.exists(s.checkpoint_name) for s in pack_specs())
    monkeypatch.undo()
    resumed = train_pack_in(store.root)
    assert [meta["training"]["resumed_from_step"] for _, meta in resumed] == [500, 500]
    assert [meta["training"]["packed_with"] for _, meta in resumed] == [2, 2]
    for one, other in zip(resumed, reference, strict=True):
        assert_same_training(one, other)
    assert not list(store.root.glob("*.progress.pt")), "the saved members replace the pack's progress"
