"""ON/OFF cluster interventions: keeping every cluster is the intact model; clusters map to classes."""

from __future__ import annotations

import torch
from conftest import tiny_data

from modbench.discovery.catalog import OnOffConfig
from modbench.discovery.on_off import OnOff, cluster_labels
from modbench.models.catalog import MLPConfig
from modbench.models.mlp import HookedMLP
from modbench.registries import TASKS

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
