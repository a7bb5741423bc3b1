from __future__ import annotations

import dataclasses
import os

import pytest
import torch
from conftest import TINY, tiny_data, tiny_model

from modbench.errors import CheckpointError, TrainingFailed, UserError
from modbench.methods import METHODS, MethodBase
from modbench.methods.catalog import LocalCostConfig
from modbench.methods.local_cost import LocalCostMethod
from modbench.pipeline import TrainingSpec, override, trained_model
from modbench.registries import TASKS
from modbench.training.checkpoint import CheckpointStore
from modbench.training.config import TrainConfig
from modbench.training.trainer import train

CPU = torch.device("cpu")
SHORT = TrainConfig(steps=60, batch_size=16, eval_every=30)


def toy_task():
    return TASKS.get("toy_mlp").build()


def run(method_key: str, seed: int = 0, cfg: TrainConfig = SHORT, **changes):
    model = tiny_model(seed=seed)
    method = LocalCostMethod(dataclasses.replace(METHODS.get(method_key).config, swap_top_k=9, **changes))
    result = train(model, method, toy_task(), tiny_data(), cfg, CPU, show_progress=False)
    return model, result


def test_same_seed_gives_identical_weights():
    a, _ = run("bimt", swap_every=20)
    b, _ = run("bimt", swap_every=20)
    for p, q in zip(a.state_dict().values(), b.state_dict().values(), strict=True):
        assert torch.equal(p, q)


def test_different_batch_seed_gives_different_weights():
    a, _ = run("vanilla")
    b, _ = run("vanilla", cfg=dataclasses.replace(SHORT, seed=2))
    assert not torch.equal(a.unembed.weight, b.unembed.weight)


def test_bimt_swaps_happen_and_connection_cost_is_logged():
    _, result = run("bimt", swap_every=20, lam=0.1)
    assert any(row.get("swaps", 0) > 0 for row in result.history)
    assert all(row["connection_cost"] > 0 for row in result.history)


def test_connection_cost_shrinks_weights_relative_to_vanilla():
    vanilla, _ = run("vanilla", cfg=dataclasses.replace(SHORT, steps=200))
    l1, _ = run("l1", cfg=dataclasses.replace(SHORT, steps=200), lam=0.5)
    assert l1.blocks[0].mlp.linear.weight.abs().sum() < 0.8 * vanilla.blocks[0].mlp.linear.weight.abs().sum()


def test_lambda_schedule_follows_the_code():
    cfg = LocalCostConfig()
    assert [cfg.lam_at(s, 40_000) for s in (0, 9_999, 10_000, 19_999, 20_000, 39_999)] == pytest.approx(
        [0.01, 0.01, 0.1, 0.1, 1.0, 1.0]
    )


@pytest.mark.parametrize(
    "changes", [{"lam": -1.0}, {"schedule": "cosine"}, {"swap_top_k": 0}, {"weight_factor": -2.0}]
)
def test_bad_regime_configs_are_rejected(changes):
    with pytest.raises(ValueError):
        LocalCostConfig(**changes)


def test_bimt_regime_trains_a_cnn_and_a_transformer_through_the_same_wiring_protocol():
    from conftest import TINY_CNN, TINY_TRANSFORMER

    from modbench.registries import MODELS

    for task_key, model_config, model_key in (("toy_cnn", TINY_CNN, "tiny_cnn"),
                                              ("toy_transformer", TINY_TRANSFORMER, "tiny_transformer")):
        task = TASKS.get(task_key).build()
        torch.manual_seed(0)
        model = MODELS.get(model_key).build(model_config)
        before = {k: v.clone() for k, v in model.state_dict().items()}
        method = LocalCostMethod(dataclasses.replace(METHODS.get("bimt").config, swap_every=10, swap_top_k=3, lam=0.1))
        every_swap_logged = dataclasses.replace(SHORT, eval_every=10)
        result = train(model, method, task, task.load(None), every_swap_logged, CPU, show_progress=False)
        assert any(row.get("swaps", 0) > 0 for row in result.history), task_key
        assert all(row["connection_cost"] > 0 for row in result.history)
        assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_top_k_larger_than_every_layer_is_a_user_error():
    method = LocalCostMethod(LocalCostConfig(swap_every=10, swap_top_k=50))
    with pytest.raises(UserError, match="larger than every"):
        method.setup(tiny_model(), 100)


def test_nan_loss_stops_the_run():
    class Exploding(MethodBase):
        def regularizers(self, model, step):
            return {"boom": torch.tensor(float("nan")) * next(model.parameters()).sum()}

    with pytest.raises(TrainingFailed, match="nan"):
        train(tiny_model(), Exploding(None), toy_task(), tiny_data(), SHORT, CPU, show_progress=False)


def test_override_parses_values_and_rejects_unknown_fields():
    assert override(LocalCostConfig(), ["lam=0.5", "swap_every=100"]).swap_every == 100
    assert override(LocalCostConfig(), ["lam=1"]).lam == 1.0
    with pytest.raises(UserError, match="no field"):
        override(LocalCostConfig(), ["lamda=1"])
    with pytest.raises(UserError, match="lam must be a finite number >= 0"):
        override(LocalCostConfig(), ["lam=-1"])


@pytest.mark.parametrize("assignment", ["permute_optimizer_state=yes", "swap_every=1.5", "lam=abc", "lam=NaN",
                                        "lam=Infinity", "swap_top_k=true"])
def test_override_rejects_values_of_the_wrong_type_or_non_finite(assignment):
    with pytest.raises(UserError):
        override(LocalCostConfig(), [assignment])


def test_training_memory_is_measured_over_training_steps_and_bimt_adds_its_cost_matrices():
    vanilla = run("vanilla")[1].peak_memory_bytes
    bimt = run("bimt", swap_every=20)[1].peak_memory_bytes
    assert vanilla > 0 and bimt > vanilla


def spec_for(steps: int = 30) -> TrainingSpec:
    method_config = dataclasses.replace(METHODS.get("bimt").config, swap_top_k=9, swap_every=10)
    return TrainingSpec("bimt", method_config, "tiny_mlp", TINY, TrainConfig(steps=steps), "toy", "toy")


def test_checkpoint_cache_trains_once_then_loads(tmp_path, monkeypatch):
    store = CheckpointStore(tmp_path / "models")
    model, first = trained_model(spec_for(), toy_task(), tiny_data(), CPU, store, show_progress=False)
    monkeypatch.setattr("modbench.training.trainer.train", lambda *a, **k: pytest.fail("retrained a cached config"))
    again, second = trained_model(spec_for(), toy_task(), tiny_data(), CPU, store, show_progress=False)
    assert not first["cached"] and second["cached"]
    assert torch.equal(model.unembed.weight, again.unembed.weight)
    assert second["checkpoint_bytes"] > 0


def test_corrupted_or_mismatched_checkpoint_is_an_error_not_a_retrain(tmp_path):
    store = CheckpointStore(tmp_path / "models")
    spec = spec_for()
    trained_model(spec, toy_task(), tiny_data(), CPU, store, show_progress=False)
    weights, sidecar = store.paths(spec.checkpoint_name)
    original = weights.read_bytes()
    weights.write_bytes(original[:-10] + b"0123456789")
    with pytest.raises(CheckpointError, match="corrupted"):
        trained_model(spec, toy_task(), tiny_data(), CPU, store, show_progress=False)
    weights.write_bytes(original)
    sidecar.write_text(sidecar.read_text().replace('"steps": 30', '"steps": 31'))
    with pytest.raises(CheckpointError, match="different config"):
        trained_model(spec, toy_task(), tiny_data(), CPU, store, show_progress=False)
    assert weights.read_bytes() == original


class _Exploit:
    def __reduce__(self):  # noqa: ANN204
        return (os.system, ("touch pwned",))


@pytest.mark.parametrize("damage", ["sidecar_list", "sidecar_not_utf8", "sidecar_not_json", "truncated",
                                    "malicious_pickle"])
def test_a_damaged_checkpoint_is_a_one_line_error_never_executed_nor_retrained(tmp_path, monkeypatch, damage):
    import hashlib
    import json
    import pickle

    monkeypatch.chdir(tmp_path)
    store = CheckpointStore(tmp_path / "models")
    spec = spec_for()
    trained_model(spec, toy_task(), tiny_data(), CPU, store, show_progress=False)
    weights, sidecar = store.paths(spec.checkpoint_name)
    expected = "not a JSON object" if damage.startswith("sidecar") else "corrupted"
    if damage == "sidecar_list":
        sidecar.write_text("[1, 2]")
    elif damage == "sidecar_not_utf8":
        sidecar.write_bytes(b"\xff\xfe{}")
    elif damage == "sidecar_not_json":
        sidecar.write_text("{not json")
    elif damage == "truncated":
        weights.write_bytes(weights.read_bytes()[:100])
    else:  # a pickle that runs code when unpickled, with a sidecar vouching for it
        weights.write_bytes(pickle.dumps({"x": _Exploit()}, protocol=4))
        meta = json.loads(sidecar.read_text())
        meta["sha256"] = hashlib.sha256(weights.read_bytes()).hexdigest()
        sidecar.write_text(json.dumps(meta))
        expected = "cannot be loaded"
    damaged = weights.read_bytes()
    with pytest.raises(CheckpointError, match=expected) as error:
        trained_model(spec, toy_task(), tiny_data(), CPU, store, show_progress=False)
    assert "\n" not in str(error.value) and "delete" in str(error.value)
    assert not (tmp_path / "pwned").exists() and weights.read_bytes() == damaged  # refused, never retrained


def test_weights_left_without_their_sidecar_by_a_kill_are_retrained_over(tmp_path):
    store = CheckpointStore(tmp_path / "models")
    spec = spec_for()
    weights, sidecar = store.paths(spec.checkpoint_name)
    weights.parent.mkdir(parents=True)
    weights.write_bytes(b"half a checkpoint")
    _, first = trained_model(spec, toy_task(), tiny_data(), CPU, store, show_progress=False)
    assert not first["cached"] and sidecar.exists()
    _, again = trained_model(spec, toy_task(), tiny_data(), CPU, store, show_progress=False)
    assert again["cached"]
    weights.unlink()
    with pytest.raises(CheckpointError, match="incomplete"):
        trained_model(spec, toy_task(), tiny_data(), CPU, store, show_progress=False)


def test_the_same_seeds_twice_give_identical_result_rows_timings_aside(tmp_path, monkeypatch):
    """Two runs in separate homes (so the second trains again rather than loading the first's checkpoint)."""
    from modbench.discovery.catalog import TopKConfig
    from modbench.experiment import DiscoveryConfig, ExperimentSpec, run_experiment

    def row(home: str):
        monkeypatch.setenv("MODBENCH_HOME", str(tmp_path / home))
        spec = ExperimentSpec(task="toy_mlp", method="bimt",
                              method_config=dataclasses.replace(METHODS.get("bimt").config, swap_top_k=3),
                              discovery=DiscoveryConfig(boots=3, pairs_per_boot=8), selection_config=TopKConfig(3))
        record, _ = run_experiment(spec, CPU, show_progress=False)
        assert not record.costs["train_cached"]
        metrics = {k: v for k, v in record.metrics.items() if k != "discovery_time_s"}
        return record.config_hash, record.cell, metrics, record.sparsity_per_wire, record.test_accuracy

    assert row("a") == row("b")


def test_training_seeds_of_one_config_share_a_cell_and_differ_in_config_hash():
    from modbench.discovery.catalog import TopKConfig
    from modbench.experiment import DiscoveryConfig, ExperimentSpec, run_experiment

    def record(seed: int):
        spec = ExperimentSpec(task="toy_mlp", method="l1", train_seed=seed, selection_config=TopKConfig(3),
                              discovery=DiscoveryConfig(boots=2, pairs_per_boot=4))
        return run_experiment(spec, CPU, show_progress=False)[0]

    one, two = record(1), record(2)
    assert one.cell == two.cell and one.config_hash != two.config_hash and one.variant == two.variant


def test_checkpoint_lock_makes_processes_take_turns(tmp_path):
    """Two holders of one model's lock never overlap (flock works across processes and open files)."""
    import threading
    import time as clock

    from modbench.training.checkpoint import CheckpointStore

    store, events = CheckpointStore(tmp_path), []

    def hold(tag: str) -> None:
        with store.lock("model-x"):
            events.append(f"{tag} in")
            clock.sleep(0.2)
            events.append(f"{tag} out")

    threads = [threading.Thread(target=hold, args=(tag,)) for tag in "ab"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert events in (["a in", "a out", "b in", "b out"], ["b in", "b out", "a in", "a out"])
