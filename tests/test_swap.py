"""BIMT swaps: they preserve the function, the cost change is the predicted Delta, and the vectorised
search picks the same swaps as a straightforward loop over full cost evaluations."""

from __future__ import annotations

import copy

import torch
from conftest import tiny_model

from modbench.methods.connection_cost import add_weighted_l1_grad, cost_terms, slot_costs, weighted_l1
from modbench.methods.swap import greedy_swaps, importance, placement_costs, relocate
from modbench.models.base import permute_group
from modbench.models.geometry import l1_distance


def reference_cost(model, weight_factor=2.0, y_star=0.5, penalize_last=True) -> float:
    """The authors' get_cc written plainly: per-layer means of |W|(A d + y*), plus mean |b| y*."""
    total = 0.0
    wiring = model.wiring()
    for wire in wiring.wires:
        factor = weight_factor if (penalize_last or not wire.is_last) else 0.0
        distance = l1_distance(wiring.groups[wire.writes].coords, wiring.groups[wire.reads].coords)
        total += float((wire.weight.detach().abs() * (factor * distance.to(wire.weight.dtype) + y_star)).mean())
        total += float(wire.bias.detach().abs().mean() * y_star)
    return total


def layers(model):
    return [g for g in model.wiring().groups.values() if g.permutable]


def swap(model, layer_index: int, j: int, k: int) -> None:
    layer = layers(model)[layer_index]
    perm = torch.arange(layer.size)
    perm[[j, k]] = torch.tensor([k, j])
    permute_group(layer, perm)


def test_random_swaps_in_every_layer_preserve_logits_float64():
    model = tiny_model(torch.float64)
    x = torch.rand(32, 16, dtype=torch.float64)
    before = model(x)
    generator = torch.Generator().manual_seed(1)
    for index, layer in enumerate(layers(model)):
        for _ in range(5):
            j, k = torch.randint(layer.size, (2,), generator=generator).tolist()
            swap(model, index, j, k)
        permute_group(layer, torch.roll(torch.arange(layer.size), 1))  # a cycle moves every neuron
    assert torch.allclose(model(x), before, atol=1e-12, rtol=0)
    assert not torch.equal(model.output_order, torch.arange(4))  # the output layer really moved


def test_relocation_preserves_logits_float32_and_lowers_cost():
    model = tiny_model()
    x = torch.rand(32, 16)
    before, cost_before = model(x), reference_cost(model)
    assert relocate(model.wiring(), slot_costs(model.wiring(), 2.0, 0.5, True), top_k=9) > 0
    assert torch.allclose(model(x), before, atol=1e-5)
    assert reference_cost(model) < cost_before


def test_cost_change_equals_predicted_delta():
    model = tiny_model(torch.float64)
    costs = [c.double() for c in slot_costs(model.wiring(), 2.0, 0.5, True)]
    for index, layer in enumerate(layers(model)):
        placement = placement_costs(model.wiring(), layer, costs)
        for j, k in [(0, 3), (2, 1), (layer.size - 1, 0)]:
            predicted = placement[j, k] + placement[k, j] - placement[j, j] - placement[k, k]
            before = reference_cost(model)
            swap(model, index, j, k)
            assert abs((reference_cost(model) - before) - float(predicted)) < 1e-12
            swap(model, index, j, k)


def loop_relocate(model, top_k: int) -> list[tuple[int, int, int]]:
    """Straightforward reference: try every partner with a full cost evaluation, keep the argmin."""
    chosen = []
    for index, layer in enumerate(layers(model)):
        positions = importance(model.wiring(), layer).argsort(descending=True, stable=True)[: min(top_k, layer.size)]
        for j in positions.tolist():
            trial_costs = []
            for k in range(layer.size):
                swap(model, index, j, k)
                trial_costs.append(reference_cost(model))
                swap(model, index, j, k)
            best = min(range(layer.size), key=trial_costs.__getitem__)
            if best != j and trial_costs[best] < trial_costs[j]:
                swap(model, index, j, best)
                chosen.append((index, j, best))
    return chosen


def test_vectorised_search_matches_loop_on_random_layers():
    for seed in range(4):
        model = tiny_model(torch.float64, seed=seed)
        looped = copy.deepcopy(model)
        expected = loop_relocate(looped, top_k=5)
        chosen = []
        costs = [c.double() for c in slot_costs(model.wiring(), 2.0, 0.5, True)]
        for index, layer in enumerate(layers(model)):
            positions = importance(model.wiring(), layer).argsort(descending=True, stable=True)[:5]
            perm, swaps = greedy_swaps(placement_costs(model.wiring(), layer, costs), positions)
            permute_group(layer, perm)
            chosen += [(index, j, k) for j, k, _ in swaps]
        assert chosen == expected and len(expected) > 0
        for a, b in zip(model.parameters(), looped.parameters(), strict=True):
            assert torch.equal(a, b)


def test_weighted_l1_value_and_direct_gradient_match_autograd():
    model = tiny_model(torch.float64)
    params, costs = cost_terms(model.wiring(), slot_costs(model.wiring(), 2.0, 0.5, False), 0.5)
    costs = [c.double() for c in costs]
    assert abs(float(weighted_l1(params, costs)) - reference_cost(model, penalize_last=False)) < 1e-12
    x = torch.rand(8, 16, dtype=torch.float64)
    model(x).square().sum().backward()
    add_weighted_l1_grad(params, costs, 0.3)
    direct = [p.grad.clone() for p in params]
    model.zero_grad()
    (model(x).square().sum() + 0.3 * sum((p.abs() * c).sum() for p, c in zip(params, costs, strict=True))).backward()
    for got, p in zip(direct, params, strict=True):
        assert torch.allclose(got, p.grad, atol=1e-14)
