"""Contract tests, parametrised from the registries: every model kind goes through patching and
``run_experiment`` alike; every discoverer recovers a circuit planted by hand; every config is frozen."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from conftest import TOY_TASKS, loop_patched

from modbench.discovery.base import CandidateScores
from modbench.discovery.catalog import TopKConfig
from modbench.experiment import DiscoveryConfig, ExperimentSpec, run_experiment
from modbench.models.catalog import MLPConfig
from modbench.models.mlp import HookedMLP
from modbench.registries import DISCOVERERS, METHODS, MODELS, PLUGIN_KINDS, SELECTIONS, TASKS
from modbench.tasks.base import ContrastivePairs

CPU = torch.device("cpu")
# Discoverers of candidate nodes; edge discoverers have their own contracts (tests/test_acdc.py, test_edges.py).
PAIR_DISCOVERERS = [k for k in DISCOVERERS.keys() if DISCOVERERS.get(k).traits.get("reads") != "classes"
                    and DISCOVERERS.get(k).traits.get("candidates") != "edges"]
# Approximations of activation patching (registered ``exact=False``) cannot equal the loop; their own tests
# bound how close they come (tests/test_attribution_patching.py).
EXACT_PAIR_DISCOVERERS = [k for k in PAIR_DISCOVERERS if DISCOVERERS.get(k).traits.get("exact", True)]
# A first-order discoverer linearises at the corrupted run, where the planted path is a dead ReLU (zero
# gradient): a documented false negative, kept visible (strict: a fix must remove the mark).
PLANTED_CASES = [k if DISCOVERERS.get(k).traits.get("exact", True) else pytest.param(
    k, marks=pytest.mark.xfail(strict=True, reason="first order: the planted path is dead on the corrupted run"))
    for k in PAIR_DISCOVERERS]


def loop_patching(model, task, pairs: ContrastivePairs) -> dict[str, torch.Tensor]:
    """Reference: one forward per pair and candidate (``conftest.loop_patched``), then the logit difference."""
    scores = {}
    reference = task.readout(model(pairs.clean))
    for site in model.sites():
        _, clean = model.run_with_cache(pairs.clean, names_filter=[site.name])
        table = torch.empty(len(pairs), site.size, dtype=torch.float64)
        for p in range(len(pairs)):
            for c in range(site.size):
                out = loop_patched(model, site, clean[site.name], pairs.corrupted, p, c)
                table[p, c] = (task.readout(out[None])[0] - reference[p]).norm()
        scores[site.name] = table
    return scores


def built(task_key: str):
    task = TASKS.get(task_key).build()
    torch.manual_seed(0)
    model = MODELS.get(task.config.model).build().double().eval()
    data = task.load(None)
    pairs = task.contrast(data, 0).select(torch.arange(6))
    if pairs.clean.is_floating_point():
        pairs = ContrastivePairs(pairs.clean.double(), pairs.corrupted.double(), pairs.clean_labels,
                                 pairs.corrupted_labels)
    return task, model, pairs


@pytest.mark.parametrize("task_key", TOY_TASKS)
@pytest.mark.parametrize("discoverer", EXACT_PAIR_DISCOVERERS)
def test_batched_discovery_equals_the_per_candidate_loop_on_every_model_kind(task_key, discoverer):
    task, model, pairs = built(task_key)
    scores = DISCOVERERS.get(discoverer).build().score(model, task, pairs)
    assert isinstance(scores, CandidateScores)
    assert set(scores.scores) == {site.name for site in model.sites()}
    for name, value in loop_patching(model, task, pairs).items():
        assert torch.allclose(scores.scores[name].double(), value, atol=1e-10)


@pytest.mark.parametrize("task_key", TOY_TASKS)
def test_patching_clean_into_clean_changes_nothing(task_key):
    task, model, pairs = built(task_key)
    same = ContrastivePairs(pairs.clean, pairs.clean, pairs.clean_labels, pairs.clean_labels)
    for discoverer in PAIR_DISCOVERERS:
        for value in DISCOVERERS.get(discoverer).build().score(model, task, same).scores.values():
            assert float(value.abs().max()) < 1e-10


@pytest.mark.parametrize("task_key", TOY_TASKS)
def test_run_experiment_treats_every_model_kind_alike(task_key):
    bimt = dataclasses.replace(METHODS.get("bimt").config, swap_every=10, swap_top_k=2)
    spec = ExperimentSpec(task=task_key, method="bimt", method_config=bimt,
                          discovery=DiscoveryConfig(boots=3, pairs_per_boot=8), selection_config=TopKConfig(2))
    record, outcome = run_experiment(spec, CPU, show_progress=False)
    model = outcome.model
    assert record.status == "ok" and record.task == task_key
    assert {"logit_difference", "circuit_accuracy", "sparsity", "discovery_time_s"} <= set(record.metrics)
    assert set(record.circuit_size) == {site.name for site in model.sites()}
    assert all(size == 2 for size in record.circuit_size.values())
    assert set(record.sparsity_per_wire) == {wire.name for wire in model.wiring().wires}
    assert 0 < record.metrics["sparsity"]["mean"] < 1 and record.costs["peak_train_memory_mb"] > 0


def planted_mlp() -> HookedMLP:
    """4 inputs -> 6 -> 6 -> 2 (ReLU). Only input 0 matters; it reaches the output through hidden-1 neurons
    {1, 4} and hidden-2 neuron {2}; every other hidden neuron has no outgoing weight."""
    model = HookedMLP(MLPConfig(widths=(4, 6, 6, 2), activation="relu", bias=False)).double()
    first, second, out = (lin.weight for lin in model.linears())
    with torch.no_grad():
        for weight in (first, second, out):
            weight.zero_()
        first[:, 1:] = torch.rand(6, 3, dtype=torch.float64)  # distractors read the noise inputs
        first[[1, 4], 0] = torch.tensor([1.0, 2.0], dtype=torch.float64)
        first[[1, 4], 1:] = 0
        second[2, [1, 4]] = 1.0
        second[[0, 5], :] = torch.rand(2, 6, dtype=torch.float64)  # active, but never read
        out[0, 2], out[1, 2] = 1.0, -1.0
    return model


@pytest.mark.parametrize("discoverer", PLANTED_CASES)
def test_every_discoverer_recovers_a_planted_circuit(discoverer):
    model, task = planted_mlp(), TASKS.get("toy_mlp").build()
    generator = torch.Generator().manual_seed(0)
    clean = torch.rand(20, 4, generator=generator, dtype=torch.float64)
    corrupted = clean.clone()
    corrupted[:, 0] = torch.rand(20, generator=generator, dtype=torch.float64) - 2  # only the signal differs
    corrupted[:, 1:] = torch.rand(20, 3, generator=generator, dtype=torch.float64)
    pairs = ContrastivePairs(clean, corrupted, torch.zeros(20, dtype=torch.long), torch.ones(20, dtype=torch.long))
    scores = DISCOVERERS.get(discoverer).build().score(model, task, pairs)
    circuit = SELECTIONS.get("top_k").build(TopKConfig(2)).select(
        {s: v.mean(0, keepdim=True) for s, v in scores.scores.items()}, scores.lower_is_better)
    assert set(torch.nonzero(circuit.keep["blocks.0.mlp.hook_post"][0]).flatten().tolist()) == {1, 4}
    assert bool(circuit.keep["blocks.1.mlp.hook_post"][0, 2])


@pytest.mark.parametrize("kind", PLUGIN_KINDS)
def test_every_registered_config_is_frozen(kind):
    registry = PLUGIN_KINDS[kind]
    for key in registry.keys():
        config = registry.get(key).config
        assert dataclasses.is_dataclass(config), key
        fields = dataclasses.fields(config)
        if fields:
            with pytest.raises(dataclasses.FrozenInstanceError):
                setattr(config, fields[0].name, getattr(config, fields[0].name))
