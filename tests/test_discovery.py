"""Activation patching and circuit scoring on a tiny model."""

from __future__ import annotations

import torch
from conftest import tiny_data, tiny_model

from modbench.discovery.activation_patching import ActivationPatching, ActivationPatchingConfig, score_per_sample
from modbench.discovery.circuit import Circuits, edge_sparsity
from modbench.discovery.evaluate import ablation_values, evaluate_circuits, run_circuits
from modbench.discovery.patching import keep_or_replace
from modbench.runner import DiscoveryConfig, discover_and_score
from modbench.stats import resample_indices
from modbench.tasks import TASKS
from modbench.tasks.base import ContrastivePairs, PairTask


def tiny_pairs(n: int = 12, seed: int = 0, dtype: torch.dtype = torch.float32) -> ContrastivePairs:
    generator = torch.Generator().manual_seed(seed)
    clean = torch.rand(n, 16, generator=generator, dtype=dtype)
    corrupted = torch.rand(n, 16, generator=generator, dtype=dtype)
    return ContrastivePairs(clean, corrupted, torch.zeros(n, dtype=torch.long), torch.ones(n, dtype=torch.long))


def test_patching_clean_into_clean_changes_nothing():
    model, pairs = tiny_model(torch.float64), tiny_pairs(dtype=torch.float64)
    same = ContrastivePairs(pairs.clean, pairs.clean, pairs.clean_labels, pairs.clean_labels)
    scores = ActivationPatching(ActivationPatchingConfig()).score(model, same)
    for value in scores.scores.values():  # exact up to batch-size-dependent GEMM rounding
        assert float(value.abs().max()) < 1e-12


def test_patching_every_neuron_of_the_last_hidden_layer_gives_the_clean_logits_exactly():
    model, pairs = tiny_model(), tiny_pairs()
    last = model.hidden_hook_names("post")[-1]
    clean_logits, cache = model.run_with_cache(pairs.clean, names_filter=[last])
    everything = torch.ones(len(pairs), 9, dtype=torch.bool)
    with model.hooks(fwd_hooks=[(last, keep_or_replace(~everything, cache[last]))]):
        patched = model(pairs.corrupted)
    assert torch.equal(patched, clean_logits)


def test_batched_scores_equal_the_per_sample_loop():
    model, pairs = tiny_model(torch.float64), tiny_pairs(dtype=torch.float64)
    batched = ActivationPatching(ActivationPatchingConfig(max_rows=20)).score(model, pairs)  # forces chunking
    looped = score_per_sample(model, pairs)
    for hook, value in looped.scores.items():
        assert torch.allclose(batched.scores[hook], value, atol=1e-12)


def test_top_k_picks_the_lowest_scores_per_layer():
    scores = {"a": torch.tensor([[0.3, 0.1, 0.2, 0.9]]), "b": torch.tensor([[1.0, 0.0, 0.5, 0.2]])}
    circuits = Circuits.top_k(scores, 2, lower_is_better=True)
    assert circuits.keep["a"].tolist() == [[False, True, True, False]]
    assert circuits.keep["b"].tolist() == [[False, True, False, True]]


def test_ablating_nothing_changes_nothing_and_full_circuit_is_dense_sparsity():
    model, pairs = tiny_model(), tiny_pairs()
    names = model.hidden_hook_names("post")
    keep = {name: torch.ones(1, 9, dtype=torch.bool) for name in names}
    values = ablation_values(model, pairs, "mean")
    index = torch.arange(len(pairs))[None]
    measured = evaluate_circuits(model, pairs, index, Circuits(keep), values)
    assert float(measured["logit_difference"][0]) == 0.0
    rows_keep = {name: mask.expand(len(pairs), -1) for name, mask in keep.items()}
    assert torch.equal(run_circuits(model, pairs.clean, rows_keep, values), model(pairs.clean))
    active = sum(int((w.weight.abs() >= 0.01 * w.weight.abs().max()).sum()) for w in model.wiring())
    total = sum(w.weight.numel() for w in model.wiring())
    assert torch.isclose(edge_sparsity(model, Circuits(keep))[0], torch.tensor(1 - active / total))


def test_batched_circuit_evaluation_equals_one_resample_at_a_time():
    model, pairs = tiny_model(), tiny_pairs()
    index = resample_indices(len(pairs), 4, 6, seed=3)
    scores = {name: torch.rand(4, 9) for name in model.hidden_hook_names("post")}
    circuits = Circuits.top_k(scores, 3, lower_is_better=True)
    values = ablation_values(model, pairs, "zero")
    together = evaluate_circuits(model, pairs, index, circuits, values, max_rows=24)  # chunks of 2 resamples
    for b in range(4):
        alone = evaluate_circuits(model, pairs, index[b : b + 1],
                                  Circuits({k: v[b : b + 1] for k, v in circuits.keep.items()}), values)
        for metric, value in alone.items():
            assert torch.allclose(together[metric][b], value[0])


def test_discover_and_score_reports_every_metric_with_intervals():
    model = tiny_model()
    outcome = discover_and_score(model, tiny_pairs(20), ActivationPatching(ActivationPatchingConfig()),
                                 DiscoveryConfig(boots=5, pairs_per_boot=8, top_k=3), torch.device("cpu"))
    assert set(outcome.metrics) == {"logit_difference", "circuit_accuracy", "sparsity", "discovery_time_s"}
    for summary in outcome.metrics.values():
        assert summary["ci_low"] <= summary["mean"] <= summary["ci_high"]
    assert all(int(mask.sum()) == 3 for mask in outcome.circuit.keep.values())


def test_pairs_are_deterministic_given_the_seed_and_follow_the_rules():
    data = tiny_data(n_test=200)
    task = PairTask(key="toy", summary="", pairs=((0, 1), (2, 3)))
    first, again, other = task.make_pairs(data, 1), task.make_pairs(data, 1), task.make_pairs(data, 2)
    assert torch.equal(first.clean, again.clean) and not torch.equal(first.clean, other.clean)
    rules = set(zip(first.clean_labels.tolist(), first.corrupted_labels.tolist(), strict=True))
    assert rules <= {(0, 1), (2, 3)}


def test_builtin_tasks_declare_nainanis_pairs():
    assert TASKS.get("circle_detection").pairs == ((8, 3), (6, 5))
    assert TASKS.get("line_detection").pairs == ((4, 9), (1, 3), (7, 9))
