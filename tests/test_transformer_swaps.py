"""BIMT swaps on a HookedTransformer, one test per kind of permutation: residual dimensions, MLP neurons,
query/key dimensions within a head, value/output dimensions within a head, whole heads. Each keeps the
function, changes the connection cost by exactly the predicted Delta, and the vectorised search picks what
a loop over full cost evaluations picks."""

from __future__ import annotations

import pytest
import torch
from test_model_transformer import TINY, TINY_LN, make, tokens
from transformer_lens import HookedTransformerConfig

from modbench.methods.connection_cost import slot_costs
from modbench.methods.swap import block_costs, greedy_swaps, placement_costs, relocate
from modbench.models.base import permute_blocks, permute_group
from modbench.models.geometry import l1_distance
from modbench.models.transformer import ModularTransformer

A, Y_STAR = 2.0, 0.5


def reference_cost(model: ModularTransformer) -> float:
    """get_cc written plainly on the (out, in) matrices: per wire, mean over entries of |W| (A d + y*),
    plus mean |b| y*."""
    wiring, total = model.wiring(), 0.0
    for wire in wiring.wires:
        distance = l1_distance(wiring.groups[wire.writes].coords, wiring.groups[wire.reads].coords)
        total += float((wire.matrix() * (A * distance + Y_STAR)).sum()) / wire.param.numel()
        if wire.bias is not None:
            total += float(wire.bias.detach().abs().mean()) * Y_STAR
    return total


def transposition(n: int, j: int, k: int) -> torch.Tensor:
    perm = torch.arange(n)
    perm[[j, k]] = torch.tensor([k, j])
    return perm


def costs(model: ModularTransformer) -> list[torch.Tensor]:
    return [c.double() for c in slot_costs(model.wiring(), A, Y_STAR, True)]


# (group, swapped neurons): any two residual dims; two MLP neurons; two query/key dims of head 1; two
# value/output dims of head 0
NEURON_SWAPS = [("resid", 0, 4), ("blocks.1.mlp", 2, 7), ("blocks.0.attn.qk", 3, 5), ("blocks.1.attn.vo", 0, 2)]


@pytest.mark.parametrize("group_name, j, k", NEURON_SWAPS, ids=[g for g, _, _ in NEURON_SWAPS])
def test_neuron_swap_keeps_function_and_changes_cost_by_delta(group_name: str, j: int, k: int) -> None:
    model, x = make(TINY), tokens(TINY)
    before, cost_before = model(x), reference_cost(model)
    group = model.wiring().groups[group_name]
    placement = placement_costs(model.wiring(), group, costs(model))
    predicted = float(placement[j, k] + placement[k, j] - placement[j, j] - placement[k, k])
    permute_group(group, transposition(group.size, j, k))
    torch.testing.assert_close(model(x), before, rtol=0, atol=1e-10)
    assert abs(reference_cost(model) - cost_before - predicted) < 1e-12
    assert abs(predicted) > 1e-6  # the swap really moved weights between different places


def test_whole_head_swap_keeps_function_moves_the_head_and_changes_cost_by_delta() -> None:
    model, x = make(TINY), tokens(TINY)
    _, cache = model.run_with_cache(x)
    before, cost_before = model(x), reference_cost(model)
    wiring = model.wiring()
    tied = wiring.tied[1]
    assert tied.name == "blocks.1.attn.heads" and tied.members == ("blocks.1.attn.qk", "blocks.1.attn.vo")
    heads = block_costs(wiring, tied, costs(model))
    predicted = float(heads[0, 1] + heads[1, 0] - heads[0, 0] - heads[1, 1])
    permute_blocks(wiring, tied, torch.tensor([1, 0]))
    logits, after = model.run_with_cache(x)
    torch.testing.assert_close(logits, before, rtol=0, atol=1e-10)
    torch.testing.assert_close(after["blocks.1.attn.hook_z"], cache["blocks.1.attn.hook_z"][:, :, [1, 0]])
    torch.testing.assert_close(after["blocks.1.attn.hook_pattern"], cache["blocks.1.attn.hook_pattern"][:, [1, 0]])
    assert abs(reference_cost(model) - cost_before - predicted) < 1e-12 and abs(predicted) > 1e-6


def test_permutations_that_break_the_function_are_refused() -> None:
    model = make(TINY)
    groups = model.wiring().groups
    with pytest.raises(ValueError, match="within blocks of 3"):  # a query dim moved to another head alone
        permute_group(groups["blocks.0.attn.qk"], transposition(6, 0, 3))
    with pytest.raises(ValueError, match="not a permutation"):
        permute_group(groups["resid"], torch.zeros(6, dtype=torch.long))


def loop_head_swaps(model: ModularTransformer, tied_index: int, positions: list[int]) -> list[tuple[int, int]]:
    """Reference: for each head position, try every partner head with a full cost evaluation."""
    wiring = model.wiring()
    tied = wiring.tied[tied_index]
    n = wiring.groups[tied.members[0]].size // tied.block
    chosen = []

    def swap(j: int, k: int) -> None:
        permute_blocks(wiring, tied, transposition(n, j, k))

    for j in positions:
        trial = []
        for k in range(n):
            swap(j, k)
            trial.append(reference_cost(model))
            swap(j, k)
        best = min(range(n), key=trial.__getitem__)
        if best != j and trial[best] < trial[j]:
            swap(j, best)
            chosen.append((j, best))
    return chosen


def test_vectorised_head_search_matches_a_loop_over_full_costs() -> None:
    cfg = HookedTransformerConfig(n_layers=1, d_model=8, n_heads=5, d_head=2, d_mlp=6, d_vocab=5, d_vocab_out=5,
                                  n_ctx=3, act_fn="relu", normalization_type=None)
    found = 0
    for seed in range(3):
        torch.manual_seed(seed)
        model, looped = ModularTransformer(cfg).double(), ModularTransformer(cfg).double()
        looped.load_state_dict(model.state_dict())
        positions = [4, 0, 2, 1, 3]
        expected = loop_head_swaps(looped, 0, positions)
        wiring = model.wiring()
        tied = wiring.tied[0]
        perm, swaps = greedy_swaps(block_costs(wiring, tied, costs(model)), torch.tensor(positions))
        permute_blocks(wiring, tied, perm)
        assert [(j, k) for j, k, _ in swaps] == expected
        for a, b in zip(model.parameters(), looped.parameters(), strict=True):
            assert torch.equal(a, b)
        found += len(expected)
    assert found > 0


@pytest.mark.parametrize("cfg", [TINY, TINY_LN], ids=["relu", "gelu-LN"])
def test_relocation_keeps_function_lowers_cost_and_swaps_within_heads(cfg) -> None:
    model, x = make(cfg), tokens(cfg)
    before, cost_before = model(x), reference_cost(model)
    q_before = model.blocks[0].attn.W_Q.detach().clone()
    assert relocate(model.wiring(), slot_costs(model.wiring(), A, Y_STAR, True), top_k=30) > 0
    torch.testing.assert_close(model(x), before, rtol=0, atol=1e-10)
    assert reference_cost(model) < cost_before
    # each head's query weights are the old ones of some head, reordered (heads never mix)
    q_after = model.blocks[0].attn.W_Q.detach()
    for head in q_after:
        assert any(torch.equal(head.flatten().sort().values, old.flatten().sort().values) for old in q_before)
