"""Scoring a pack of models in one batched pass equals scoring each alone: discovery scores, chosen circuits,
faithfulness and accuracy on held-out resamples, for every intervention, on an MLP, a CNN and a transformer;
runs of several models through ``run_experiments``; a pack that cannot be batched falls back to one by one."""

from __future__ import annotations

import dataclasses
import warnings

import pytest
import torch
from conftest import TINY, TINY_CNN, TINY_TRANSFORMER

from modbench.discovery.activation_patching import ActivationPatching
from modbench.discovery.catalog import ActivationPatchingConfig, NoConfig, TopKConfig
from modbench.discovery.interventions import MeanAblation, ResampleAblation, ZeroAblation
from modbench.discovery.selection import TopK
from modbench.experiment import DiscoveryConfig, ExperimentSpec, run_experiment, run_experiments
from modbench.models.base import permute_group
from modbench.models.cnn import HookedCNN
from modbench.models.mlp import HookedMLP
from modbench.models.pack import ModelPack
from modbench.models.transformer import ModularTransformer
from modbench.registries import DISCOVERERS, TASKS, register_discoverer
from modbench.scoring import discover_and_score, discover_and_score_pack
from modbench.tasks.base import ContrastivePairs

CPU = torch.device("cpu")
CFG = DiscoveryConfig(boots=4, pairs_per_boot=12)
ARCHITECTURES = {"toy_mlp": (HookedMLP, TINY), "toy_cnn": (HookedCNN, TINY_CNN),
                 "toy_transformer": (ModularTransformer, TINY_TRANSFORMER)}


def models_and_pairs(task_key: str, count: int = 3) -> tuple[list[torch.nn.Module], ContrastivePairs, object]:
    cls, cfg = ARCHITECTURES[task_key]
    models = []
    for seed in range(count):
        torch.manual_seed(seed)
        models.append(cls(cfg).double())
    task = TASKS.get(task_key).build()
    pairs = task.contrast(task.load(None), 0)
    if pairs.clean.is_floating_point():
        pairs = ContrastivePairs(pairs.clean.double(), pairs.corrupted.double(), pairs.clean_labels,
                                 pairs.corrupted_labels)
    return models, pairs, task


def score(models, task, pairs, intervention, packed: bool):  # noqa: ANN001, ANN201
    args = (task, pairs, ActivationPatching(ActivationPatchingConfig()), TopK(TopKConfig(2)), intervention, CFG, CPU)
    if packed:
        return discover_and_score_pack(ModelPack(models), *args)
    return [discover_and_score(model, *args) for model in models]


def assert_same_outcomes(packed, alone, rel: float = 1e-9) -> None:  # noqa: ANN001
    for one, other in zip(packed, alone, strict=True):
        assert (one.packed_with, other.packed_with) == (len(packed), 1)
        assert one.n_pairs == other.n_pairs > 0
        for site, keep in other.circuit.keep.items():
            assert torch.equal(one.circuit.keep[site], keep), site
        for site, value in other.mean_scores.items():
            torch.testing.assert_close(one.mean_scores[site], value, rtol=rel, atol=1e-12)
        assert set(one.metrics) == set(other.metrics)
        for name, summary in other.metrics.items():
            if name != "discovery_time_s":  # the pack's time per resample is shared by its models
                assert one.metrics[name] == pytest.approx(summary, rel=rel, abs=1e-12), name
        assert one.sparsity_per_wire == pytest.approx(other.sparsity_per_wire)
        assert one.circuit_size == other.circuit_size


@pytest.mark.parametrize("task_key", list(ARCHITECTURES))
def test_a_pack_scores_every_model_as_it_is_scored_alone(task_key):
    models, pairs, task = models_and_pairs(task_key)
    packed = score(models, task, pairs, MeanAblation(NoConfig()), packed=True)
    alone = score(models, task, pairs, MeanAblation(NoConfig()), packed=False)
    assert_same_outcomes(packed, alone)
    first = next(iter(alone[0].mean_scores))  # the models differ, so a mix-up between them would show
    assert not torch.allclose(alone[0].mean_scores[first], alone[1].mean_scores[first])


def test_models_whose_neurons_and_classes_were_swapped_differently_are_scored_as_alone():
    """BIMT swaps leave each model with its own permutation of hidden neurons and of output slots (an integer
    buffer the forward pass reads to put logits back in class order): per-model state under vmap."""
    models, pairs, task = models_and_pairs("toy_mlp", count=3)
    for seed, model in enumerate(models):
        generator = torch.Generator().manual_seed(seed)
        groups = model.wiring().groups
        for name in ("blocks.0.mlp", "logits"):
            permute_group(groups[name], torch.randperm(groups[name].size, generator=generator))
    assert len({tuple(model.output_order.tolist()) for model in models}) == 3
    intervention = MeanAblation(NoConfig())
    assert_same_outcomes(score(models, task, pairs, intervention, True), score(models, task, pairs, intervention, False))


@pytest.mark.parametrize("intervention", [ZeroAblation(NoConfig()), ResampleAblation(NoConfig())])
def test_zero_and_resample_ablations_are_packed_per_model(intervention):
    models, pairs, task = models_and_pairs("toy_mlp", count=2)
    assert_same_outcomes(score(models, task, pairs, intervention, True), score(models, task, pairs, intervention, False))


def test_a_pack_of_one_is_called_directly_and_mixed_architectures_are_refused():
    model = HookedMLP(TINY)
    out = ModelPack([model]).map(lambda m, x: {"logits": m(x)}, torch.ones(2, 16))
    assert torch.equal(out["logits"][0], model(torch.ones(2, 16)))
    other = HookedMLP(dataclasses.replace(TINY, widths=(16, 9, 4)))
    with pytest.raises(ValueError, match="model 1 of the pack differs in architecture"):
        ModelPack([model, other])
    with pytest.raises(ValueError, match="model 1 of the pack differs"):
        ModelPack([model, HookedMLP(TINY).double()])


def toy_spec(method: str, seed: int = 1, discoverer: str = "activation_patching") -> ExperimentSpec:
    return ExperimentSpec(task="toy_mlp", method=method, train_seed=seed, discoverer=discoverer,
                          discovery=DiscoveryConfig(boots=3, pairs_per_boot=10),
                          selection_config=TopKConfig(3))


def comparable(record) -> dict:  # noqa: ANN001
    row = record.to_dict() | {"id": None, "created": None}
    row["costs"] = {k: v for k, v in row["costs"].items()
                    if k not in ("train_time_s", "inference_us_per_sample", "discovery_packed_with", "train_cached")}
    row["metrics"] = {k: v for k, v in row["metrics"].items() if k != "discovery_time_s"}
    return row


def test_run_experiments_scores_runs_that_differ_only_in_their_model_together():
    specs = [toy_spec("vanilla"), toy_spec("l1"), toy_spec("vanilla", seed=2),
             toy_spec("l1", discoverer="attribution_patching")]  # attribution uses autograd: never packed
    alone = [run_experiment(spec, CPU, show_progress=False)[0] for spec in specs]  # trains and caches the models
    results = run_experiments(specs, CPU, show_progress=False)
    records = [record for record, _ in results]
    assert [r.costs["discovery_packed_with"] for r in records] == [3, 3, 3, 1]
    assert [r.costs["discovery_packed_with"] for r in alone] == [1, 1, 1, 1]
    for one, other in zip(records, alone, strict=True):
        mine, theirs = comparable(one), comparable(other)
        metrics, expected = mine.pop("metrics"), theirs.pop("metrics")
        assert mine == theirs
        for name, summary in expected.items():  # float32: batched products may round differently
            assert metrics[name] == pytest.approx(summary, rel=1e-5, abs=1e-6), name


def test_run_experiments_without_pack_scores_one_by_one_and_reports_each_runs_failure():
    specs = [toy_spec("vanilla"), toy_spec("no_such_method")]
    results = run_experiments(specs, CPU, show_progress=False, pack=False)
    assert results[0][0].costs["discovery_packed_with"] == 1
    assert "no_such_method" in str(results[1]) and isinstance(results[1], Exception)


class _Unbatchable(ActivationPatching):
    """Declared packable, but reads a Python number from a tensor: ``torch.vmap`` refuses it."""

    def score(self, model, task, pairs):  # noqa: ANN001, ANN201
        float(next(model.parameters()).detach().sum())
        return super().score(model, task, pairs)


def test_a_pack_that_cannot_be_batched_is_scored_one_by_one_with_a_warning():
    if "test_unbatchable" not in DISCOVERERS:
        register_discoverer("test_unbatchable", ActivationPatchingConfig(), "test", factory=_Unbatchable,
                            cost_depends_on_weights=False, packable=True)
    specs = [toy_spec("vanilla", discoverer="test_unbatchable"), toy_spec("l1", discoverer="test_unbatchable")]
    with pytest.warns(UserWarning, match="scoring 2 models in one pass failed .*scoring them one by one"):
        results = run_experiments(specs, CPU, show_progress=False)
    assert [record.costs["discovery_packed_with"] for record, _ in results] == [1, 1]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        alone = run_experiment(specs[1], CPU, show_progress=False)[0]
    assert comparable(alone) == comparable(results[1][0])


def test_a_sweep_pack_job_returns_the_fallback_warning_for_the_driver_to_show():
    from modbench.sweeps.driver import pack_message
    from modbench.sweeps.executors import PackJob, run_pack
    from modbench.sweeps.spec import RunSpec

    if "test_unbatchable" not in DISCOVERERS:
        register_discoverer("test_unbatchable", ActivationPatchingConfig(), "test", factory=_Unbatchable,
                            cost_depends_on_weights=False, packable=True)
    runs = tuple(RunSpec(method, "toy_mlp", "test_unbatchable", 1, None, None, 3, 10, 0, 0, 3, "mean")
                 for method in ("vanilla", "l1"))
    result = run_pack(PackJob(train=runs, runs=runs), "cpu", None, 1)
    assert result["error"] == "" and all(run["error"] == "" for run in result["runs"])
    assert [run["record"]["costs"]["discovery_packed_with"] for run in result["runs"]] == [1, 1]
    message = pack_message(2, result)
    assert message.startswith("a pack of 2 models trained 2 and made 2 runs in ")
    assert "\n  warning: scoring 2 models in one pass failed" in message
