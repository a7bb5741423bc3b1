"""The clusterability regime and per-class discoverers through the one trainer and run_experiment."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from conftest import tiny_data, tiny_model

from modbench.discovery.catalog import OnOffConfig, TopKConfig
from modbench.errors import UserError
from modbench.experiment import ExperimentSpec, run_experiment
from modbench.methods.catalog import ClusterConfig
from modbench.methods.cluster import ClusterMethod
from modbench.registries import METHODS, TASKS
from modbench.training.config import TrainConfig
from modbench.training.trainer import train

CPU = torch.device("cpu")


def test_cluster_regime_makes_the_hidden_matrix_block_diagonal_and_logs_c():
    model = tiny_model()
    cfg = TrainConfig(steps=400, batch_size=16, eval_every=50, loss="cross_entropy")
    result = train(model, ClusterMethod(ClusterConfig(k=3)), TASKS.get("toy_mlp").build(), tiny_data(), cfg, CPU,
                   show_progress=False)
    assert result.history[-1]["clusterability"] > 0.95 > 1 / 3 + 0.3
    assert "C[blocks.1.mlp.linear]" in result.history[-1]


def test_warm_up_steps_train_plainly_and_bad_configs_are_refused():
    method = ClusterMethod(ClusterConfig(warmup_steps=10))
    method.setup(tiny_model(), 100)
    assert method.regularizers(tiny_model(), 9) == {} and "clusterability" in method.regularizers(tiny_model(), 10)
    for bad in ({"k": 1}, {"lam": float("nan")}, {"warmup_steps": -1}):
        with pytest.raises(ValueError):
            ClusterConfig(**bad)
    with pytest.raises(UserError, match="no wire named"):
        ClusterMethod(ClusterConfig(wires=("nope",))).setup(tiny_model(), 10)
    with pytest.raises(UserError, match="larger than wire"):
        ClusterMethod(ClusterConfig(k=20)).setup(tiny_model(), 10)


def test_on_off_runs_through_run_experiment_and_every_record_carries_clusterability():
    spec = ExperimentSpec(task="toy_mlp", method="cluster", method_config=ClusterConfig(k=2),
                          discoverer="on_off", discoverer_config=OnOffConfig(k=2, clusters="contiguous"))
    record, _ = run_experiment(spec, CPU, show_progress=False)
    assert {"on_accuracy", "off_accuracy", "needs_1_cluster", "clusterability"} <= set(record.metrics)
    assert len(record.details["needs_clusters"]) == 2 and record.variant.startswith("k=2")
    assert record.details["bsgc_clusterability_k4"]
    bimt = dataclasses.replace(METHODS.get("bimt").config, swap_top_k=3)
    patched, _ = run_experiment(ExperimentSpec(task="toy_mlp", method="bimt", method_config=bimt,
                                               selection_config=TopKConfig(3)), CPU, show_progress=False)
    assert "clusterability" in patched.metrics


def test_ecs_runs_through_run_experiment_on_a_per_class_task():
    from modbench.discovery.catalog import ECSConfig

    spec = ExperimentSpec(task="toy_mlp", method="vanilla", discoverer="ecs", discoverer_config=ECSConfig(max_images=4))
    record, _ = run_experiment(spec, CPU, show_progress=False)
    per_class = record.details["ecs_per_class"]
    present = len(set(TASKS.get("toy_mlp").build().load(None).y_test.tolist()))
    assert len(per_class) == present and all(0 <= v <= 1 for v in per_class)
    assert abs(record.metrics["ecs"]["mean"] - sum(per_class) / present) < 1e-12
    assert record.discovery_cost_depends_on_weights
