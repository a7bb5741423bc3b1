"""Edge graphs and circuits of edges: the edge forward pass against the models' own forward and against
TransformerLens's split q/k/v inputs, cutting edges, batched scoring of edge circuits, sparsity."""

from __future__ import annotations

import pytest
import torch
from conftest import TOY_TASKS

from modbench.discovery.base import Circuits
from modbench.discovery.edges import edge_forward, flat_keep, sender_values
from modbench.discovery.evaluate import evaluate_circuits
from modbench.discovery.interventions import MeanAblation, ResampleAblation
from modbench.discovery.catalog import NoConfig
from modbench.discovery.metric_fns import logit_difference
from modbench.discovery.sparsity import edge_circuit_sparsity, edge_sparsity
from modbench.registries import MODELS, TASKS
from modbench.tasks.base import ContrastivePairs


def toy(task_key: str, n: int = 6, seed: int = 0):
    task = TASKS.get(task_key).build()
    torch.manual_seed(seed)
    model = MODELS.get(task.config.model).build().double().eval()
    pairs = task.contrast(task.load(None), 0).select(torch.arange(n))
    if pairs.clean.is_floating_point():
        pairs = ContrastivePairs(pairs.clean.double(), pairs.corrupted.double(), pairs.clean_labels,
                                 pairs.corrupted_labels)
    return task, model, pairs


def masks(graph, value: bool, groups: int = 1) -> dict[str, torch.Tensor]:
    return {site.name: torch.full((groups, site.n_receivers, site.n_senders), value) for site in graph.sites}


@pytest.mark.parametrize("task_key", TOY_TASKS)
def test_the_edge_pass_is_the_model_and_cutting_nothing_changes_nothing(task_key):
    _, model, pairs = toy(task_key)
    graph = model.edge_graph()
    expected = model(pairs.clean)
    plain, _ = edge_forward(model, graph, pairs.clean[None])
    assert torch.allclose(plain[0], expected, atol=1e-12)  # the transformer sums heads in another order
    mean = MeanAblation(NoConfig()).values(model, pairs, edges=True).values
    kept, _ = edge_forward(model, graph, pairs.clean[None], masks(graph, True), mean)
    assert torch.allclose(kept[0], expected, atol=1e-12)


@pytest.mark.parametrize("task_key", TOY_TASKS)
def test_cutting_every_edge_to_corrupted_values_is_the_corrupted_run(task_key):
    _, model, pairs = toy(task_key)
    graph = model.edge_graph()
    corrupted = ResampleAblation(NoConfig()).values(model, pairs, edges=True).values
    out, _ = edge_forward(model, graph, pairs.clean[None], masks(graph, False), corrupted)
    assert torch.allclose(out[0], model(pairs.corrupted), atol=1e-12)


def test_cutting_one_mlp_edge_replaces_one_input_of_one_neuron():
    _, model, pairs = toy("toy_mlp")
    graph = model.edge_graph()
    mean = sender_values(model, torch.cat([pairs.clean, pairs.corrupted]))
    mean = {group: value.mean(0) for group, value in mean.items()}
    keep = masks(graph, True)
    keep["blocks.1.mlp.linear"][0, 3, 5] = False  # hidden-1 neuron 5 -> hidden-2 neuron 3
    out, _ = edge_forward(model, graph, pairs.clean[None], keep, mean)
    weight = model.blocks[1].mlp.linear.weight
    _, cache = model.run_with_cache(pairs.clean, names_filter=["blocks.0.mlp.hook_post"])
    sender = cache["blocks.0.mlp.hook_post"][:, 5]

    def cut(activation: torch.Tensor, hook: object) -> torch.Tensor:
        activation = activation.clone()
        activation[:, 3] += weight[3, 5] * (mean["blocks.0.mlp"][5] - sender)
        return activation

    expected = model.run_with_hooks(pairs.clean, fwd_hooks=[("blocks.1.mlp.hook_pre", cut)])
    assert torch.allclose(out[0], expected, atol=1e-12)


def test_a_transformer_edge_is_one_heads_input_from_one_sender_as_transformer_lens_splits_it():
    """Cutting embed -> head 1's key input equals TransformerLens with ``use_split_qkv_input``, head 1's key
    input shifted by (replacement - embedding)."""
    _, model, pairs = toy("toy_transformer")
    graph = model.edge_graph()
    mean = {g: v.mean(0) for g, v in sender_values(model, torch.cat([pairs.clean, pairs.corrupted])).items()}
    keep = masks(graph, True)
    keep["embed->blocks.0.attn.k"][0, 1, 0] = False
    out, _ = edge_forward(model, graph, pairs.clean[None], keep, mean)
    embedded = model.embed(pairs.clean) + model.pos_embed(pairs.clean)

    def shift(activation: torch.Tensor, hook: object) -> torch.Tensor:
        activation = activation.clone()
        activation[:, :, 1] += mean["embed"][0] - embedded
        return activation

    model.cfg.use_split_qkv_input = True
    try:
        expected = model.run_with_hooks(pairs.clean, fwd_hooks=[("blocks.0.hook_k_input", shift)])
    finally:
        model.cfg.use_split_qkv_input = False
    assert torch.allclose(out[0], expected, atol=1e-12)


@pytest.mark.parametrize("task_key", TOY_TASKS)
def test_batched_edge_circuits_score_as_each_alone(task_key):
    task, model, pairs = toy(task_key, n=8)
    graph = model.edge_graph()
    generator = torch.Generator().manual_seed(3)
    keep = {site.name: torch.rand(4, site.size, generator=generator) < 0.5 for site in graph.sites}
    index = torch.randint(0, len(pairs), (4, 5), generator=generator)
    for intervention in (MeanAblation(NoConfig()), ResampleAblation(NoConfig())):
        values = intervention.values(model, pairs, edges=True)
        together = evaluate_circuits(model, task, pairs, index, Circuits(keep), values, logit_difference, edges=True)
        for b in range(4):
            alone = evaluate_circuits(model, task, pairs, index[b : b + 1], Circuits(keep).select(slice(b, b + 1)),
                                      values, logit_difference, edges=True)
            for key in together:
                assert torch.allclose(together[key][b], alone[key][0], atol=1e-12)


def test_a_full_edge_circuit_has_the_sparsity_of_a_full_node_circuit():
    _, model, _ = toy("toy_mlp")
    graph = model.edge_graph()
    every_edge = Circuits({site.name: torch.ones(1, site.size, dtype=torch.bool) for site in graph.sites})
    every_node = Circuits({site.name: torch.ones(1, site.size, dtype=torch.bool) for site in model.sites()})
    by_edges, per_site, kept = edge_circuit_sparsity(model, every_edge)
    by_nodes, per_wire = edge_sparsity(model, every_node)
    assert torch.allclose(by_edges, by_nodes) and set(per_site) == set(per_wire)
    assert kept[0] == sum(int((w.matrix() >= 0.01 * w.matrix().max()).sum()) for w in model.wiring().wires)
    empty = Circuits({name: torch.zeros_like(mask) for name, mask in every_edge.keep.items()})
    assert float(edge_circuit_sparsity(model, empty)[0][0]) == 1.0


def test_flat_masks_index_receiver_then_sender():
    _, model, _ = toy("toy_cnn")
    graph = model.edge_graph()
    site = graph.sites[1]
    flat = torch.zeros(1, site.size, dtype=torch.bool)
    flat[0, 2 * site.n_senders + 1] = True
    assert flat_keep(graph, {site.name: flat})[site.name][0, 2, 1]
