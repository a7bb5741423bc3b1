"""Activation patching, selections, interventions and circuit scoring on a tiny MLP."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_model

from modbench.discovery.activation_patching import ActivationPatching
from modbench.discovery.base import Circuits, keep_or_replace
from modbench.discovery.catalog import (ActivationPatchingConfig, NoConfig, ThresholdConfig, TopFractionConfig,
                                        TopKConfig)
from modbench.discovery.evaluate import evaluate_circuits, run_circuits
from modbench.discovery.interventions import MeanAblation, ResampleAblation, ZeroAblation
from modbench.discovery.metric_fns import logit_difference
from modbench.discovery.selection import Threshold, TopFraction, TopK
from modbench.discovery.sparsity import edge_sparsity
from modbench.errors import UserError
from modbench.experiment import DiscoveryConfig
from modbench.models.base import ModelAdapter
from modbench.registries import TASKS
from modbench.scoring import discover_and_score, split_pairs
from modbench.stats import resample_indices
from modbench.tasks.base import ContrastivePairs
from modbench.tasks.configs import PairTaskConfig
from modbench.tasks.image_pairs import ImagePairTask

TASK = TASKS.get("toy_mlp").build()


def tiny_pairs(n: int = 12, seed: int = 0, dtype: torch.dtype = torch.float32) -> ContrastivePairs:
    generator = torch.Generator().manual_seed(seed)
    clean = torch.rand(n, 16, generator=generator, dtype=dtype)
    corrupted = torch.rand(n, 16, generator=generator, dtype=dtype)
    return ContrastivePairs(clean, corrupted, torch.zeros(n, dtype=torch.long), torch.ones(n, dtype=torch.long))


def test_mlp_rank_one_shortcut_equals_the_generic_patch():
    model, pairs = tiny_model(torch.float64), tiny_pairs(dtype=torch.float64)
    for site in model.sites():
        _, clean = model.run_with_cache(pairs.clean, names_filter=[site.name])
        hooks = sorted(set(model.patch_cache_hooks(site)) | set(ModelAdapter.patch_cache_hooks(model, site)))
        _, corrupted = model.run_with_cache(pairs.corrupted, names_filter=hooks)
        fast = model.patch_each(site, clean[site.name], dict(corrupted.items()))
        generic = ModelAdapter.patch_each(model, site, clean[site.name], dict(corrupted.items()))
        assert torch.allclose(fast, generic, atol=1e-12, rtol=0)


def test_patching_every_neuron_of_the_last_hidden_layer_gives_the_clean_logits_exactly():
    model, pairs = tiny_model(), tiny_pairs()
    last = model.sites()[-1]
    clean_logits, cache = model.run_with_cache(pairs.clean, names_filter=[last.name])
    nothing = torch.zeros(len(pairs), last.size, dtype=torch.bool)
    with model.hooks(fwd_hooks=[(last.name, keep_or_replace(nothing, cache[last.name], last))]):
        patched = model(pairs.corrupted)
    assert torch.equal(patched, clean_logits)


def test_chunked_scores_equal_unchunked():
    model, pairs = tiny_model(torch.float64), tiny_pairs(dtype=torch.float64)
    small = ActivationPatching(ActivationPatchingConfig(max_rows=20)).score(model, TASK, pairs)  # chunks of 2
    whole = ActivationPatching(ActivationPatchingConfig()).score(model, TASK, pairs)
    for site, value in whole.scores.items():
        assert torch.allclose(small.scores[site], value, atol=1e-12)


def test_top_k_picks_the_lowest_scores_per_site_and_refuses_a_k_larger_than_a_site():
    scores = {"a": torch.tensor([[0.3, 0.1, 0.2, 0.9]]), "b": torch.tensor([[1.0, 0.0, 0.5, 0.2]])}
    circuits = TopK(TopKConfig(2)).select(scores, lower_is_better=True)
    assert circuits.keep["a"].tolist() == [[False, True, True, False]]
    assert circuits.keep["b"].tolist() == [[False, True, False, True]]
    with pytest.raises(UserError, match="larger than"):
        TopK(TopKConfig(5)).select(scores, lower_is_better=True)
    with pytest.raises(UserError, match="larger than"):
        TopK(TopKConfig(10)).check(tiny_model().sites())
    passing = Threshold(ThresholdConfig(0.2)).select(scores, lower_is_better=True)
    assert passing.keep["a"].tolist() == [[False, True, True, False]] and passing.keep["b"].sum() == 2
    across = TopFraction(TopFractionConfig(0.25)).select(scores, lower_is_better=True)
    assert across.keep["a"].sum() + across.keep["b"].sum() == 2 and bool(across.keep["b"][0, 1])


def test_ablating_nothing_changes_nothing_under_every_intervention():
    model, pairs = tiny_model(), tiny_pairs()
    keep = {site.name: torch.ones(1, site.size, dtype=torch.bool) for site in model.sites()}
    index = torch.arange(len(pairs))[None]
    for intervention in (MeanAblation(NoConfig()), ZeroAblation(NoConfig()), ResampleAblation(NoConfig())):
        measured = evaluate_circuits(model, TASK, pairs, index, Circuits(keep), intervention.values(model, pairs),
                                     logit_difference)
        assert float(measured["faithfulness"][0]) == 0.0


def test_resampling_every_neuron_from_the_corrupted_run_gives_the_corrupted_outputs():
    model, pairs = tiny_model(), tiny_pairs()
    values = ResampleAblation(NoConfig()).values(model, pairs).values
    keep = {site.name: torch.zeros(len(pairs), site.size, dtype=torch.bool) for site in model.sites()}
    assert torch.allclose(run_circuits(model, pairs.clean, keep, values), model(pairs.corrupted), atol=1e-6)


def test_full_circuit_sparsity_counts_every_active_edge():
    model = tiny_model()
    keep = {site.name: torch.ones(1, site.size, dtype=torch.bool) for site in model.sites()}
    total, per_wire = edge_sparsity(model, Circuits(keep))
    wires = model.wiring().wires
    active = sum(int((w.weight.abs() >= 0.01 * w.weight.abs().max()).sum()) for w in wires)
    assert torch.isclose(total[0], torch.tensor(1 - active / sum(w.weight.numel() for w in wires)))
    assert set(per_wire) == {w.name for w in wires}


def test_batched_circuit_evaluation_equals_one_resample_at_a_time():
    model, pairs = tiny_model(), tiny_pairs()
    index = resample_indices(len(pairs), 4, 6, seed=3)
    scores = {site.name: torch.rand(4, site.size) for site in model.sites()}
    circuits = TopK(TopKConfig(3)).select(scores, lower_is_better=True)
    values = ZeroAblation(NoConfig()).values(model, pairs)
    together = evaluate_circuits(model, TASK, pairs, index, circuits, values, logit_difference, max_rows=24)
    for b in range(4):
        alone = evaluate_circuits(model, TASK, pairs, index[b : b + 1], circuits.select(slice(b, b + 1)), values,
                                  logit_difference)
        for metric, value in alone.items():
            assert torch.allclose(together[metric][b], value[0])


def test_circuits_are_chosen_and_scored_on_disjoint_pairs():
    discovery, held = split_pairs(40, 0.5, seed=3)
    assert len(set(discovery.tolist()) & set(held.tolist())) == 0
    assert sorted(discovery.tolist() + held.tolist()) == list(range(40))


def test_discover_and_score_reports_every_metric_with_intervals():
    model = tiny_model()
    cfg = DiscoveryConfig(boots=5, pairs_per_boot=8)
    outcome = discover_and_score(model, TASK, tiny_pairs(20), ActivationPatching(ActivationPatchingConfig()),
                                 TopK(TopKConfig(3)), MeanAblation(NoConfig()), cfg, torch.device("cpu"))
    assert set(outcome.metrics) == {"logit_difference", "circuit_accuracy", "sparsity", "circuit_edges",
                                    "discovery_time_s"}
    for summary in outcome.metrics.values():
        assert summary["ci_low"] <= summary["mean"] <= summary["ci_high"]
    assert all(int(mask.sum()) == 3 for mask in outcome.circuit.keep.values())
    assert set(outcome.sparsity_per_wire) == {w.name for w in model.wiring().wires}


def test_pairs_are_deterministic_given_the_seed_and_follow_the_rules():
    from conftest import tiny_data

    data = tiny_data(n_test=200)
    task = ImagePairTask(PairTaskConfig(pairs=((0, 1), (2, 3)), dataset="toy"))
    first, again, other = task.contrast(data, 1), task.contrast(data, 1), task.contrast(data, 2)
    assert torch.equal(first.clean, again.clean) and not torch.equal(first.clean, other.clean)
    rules = set(zip(first.clean_labels.tolist(), first.corrupted_labels.tolist(), strict=True))
    assert rules <= {(0, 1), (2, 3)}


def test_builtin_tasks_declare_nainanis_pairs():
    assert TASKS.get("circle_detection").config.pairs == ((8, 3), (6, 5))
    assert TASKS.get("line_detection").config.pairs == ((4, 9), (1, 3), (7, 9))
