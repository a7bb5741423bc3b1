"""ON/OFF cluster interventions: keeping every cluster is the intact model; clusters map to classes."""

from __future__ import annotations

import torch
from conftest import tiny_data

from modbench.discovery.catalog import OnOffConfig
from modbench.discovery.on_off import OnOff, cluster_labels
from modbench.models.catalog import MLPConfig
from modbench.models.mlp import HookedMLP
from modbench.registries import MODELS, TASKS

TASK = TASKS.get("toy_mlp").build()


def block_model() -> HookedMLP:
    """16 -> 8 -> 8 -> 4, ReLU, no bias, hidden-to-hidden weights block-diagonal in 2 contiguous blocks."""
    torch.manual_seed(0)
    model = HookedMLP(MLPConfig(widths=(16, 8, 8, 4), activation="relu", bias=False)).double()
    with torch.no_grad():
        mask = torch.zeros(8, 8)
        mask[:4, :4] = mask[4:, 4:] = 1
        model.blocks[1].mlp.linear.weight.mul_(mask)
    return model


def test_keeping_every_cluster_is_the_intact_model_and_needs_are_a_distribution():
    model, data = block_model(), tiny_data(n_test=64)
    data = type(data)(data.source, data.x_train.double(), data.y_train, data.x_test.double(), data.y_test)
    result = OnOff(OnOffConfig(k=2, clusters="contiguous")).analyse(model, TASK, data)
    assert abs(sum(result["needs_clusters"]) - 1) < 1e-9  # every intact-correct sample needs 1..k clusters
    assert len(result["on_accuracy"]) == 2 and len(result["on_accuracy"][0]) == len(result["classes"])
    intact = (model(data.x_test).argmax(-1) == data.y_test).double().mean()
    assert abs(result["summary"]["intact_accuracy"] - float(intact)) < 1e-12


def test_bsgc_finds_the_planted_blocks_of_the_clustered_wire():
    wire, labels = cluster_labels(block_model(), OnOffConfig(k=2))
    assert wire == "blocks.1.mlp.linear"
    for group_labels in labels.values():
        assert len(set(group_labels[:4].tolist())) == 1 and len(set(group_labels[4:].tolist())) == 1
        assert group_labels[0] != group_labels[4]


def test_contiguous_clusters_on_a_transformer_cover_heads_and_mlp_blocks_aligned():
    task = TASKS.get("toy_transformer").build()
    torch.manual_seed(0)
    model = MODELS.get("tiny_transformer").build().double()
    wire, labels = cluster_labels(model, OnOffConfig(k=2, clusters="contiguous"))
    n_heads = model.cfg.n_heads
    heads = labels["blocks.0.attn.vo"].view(n_heads, -1)
    assert torch.equal(heads, heads[:, :1].expand_as(heads))  # a head lies in one cluster
    assert heads[:, 0].tolist() == sorted(heads[:, 0].tolist()) and set(heads[:, 0].tolist()) == {0, 1}
    assert {"resid", "blocks.0.attn.qk", "blocks.0.mlp"} <= set(labels)
    data = task.load(None)
    result = OnOff(OnOffConfig(k=2, clusters="contiguous")).analyse(model, task, data)
    intact = (task.readout(model(data.x_test)).argmax(-1) == data.y_test).double().mean()
    assert abs(result["summary"]["intact_accuracy"] - float(intact)) < 1e-12
    assert float(intact) > 0 and abs(sum(result["needs_clusters"]) - 1) < 1e-9

    def off_other(activation, hook):  # ON cluster 0 by hand: head 1 and MLP neurons 4..7 zeroed
        activation = activation.clone()
        activation[:, :, 1 if "hook_z" in hook.name else slice(4, 8)] = 0
        return activation

    logits = model.run_with_hooks(data.x_test, fwd_hooks=[(lambda name: name.endswith(("hook_z", "hook_post")),
                                                            off_other)])
    right = task.readout(logits).argmax(-1) == data.y_test
    per_class = [float(right[data.y_test == c].double().mean()) for c in result["classes"]]
    assert result["on_accuracy"][0] == per_class


def test_results_do_not_depend_on_how_many_inputs_share_a_forward(monkeypatch):
    """Pretrained models need small evaluation batches: chunked forwards give the one-forward result."""
    task = TASKS.get("toy_transformer").build()
    torch.manual_seed(0)
    model, data = MODELS.get("tiny_transformer").build().double(), task.load(None)
    config = OnOffConfig(k=2, clusters="contiguous")
    whole = OnOff(config).analyse(model, task, data)
    monkeypatch.setattr(type(task), "eval_batch_size", 7, raising=False)
    assert OnOff(config).analyse(model, task, data) == whole
