"""The modular-addition task: split, pairs, metric, and a tiny transformer trained through run_experiment
with the cluster regime (every attention and MLP matrix clustered, clusters aligned)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from modbench.discovery.catalog import TopKConfig
from modbench.discovery.metric_fns import logit_margin
from modbench.experiment import DiscoveryConfig, ExperimentSpec, run_experiment
from modbench.methods.cluster import clustered_wires
from modbench.models.catalog import TransformerConfig
from modbench.registries import MODELS, TASKS, register_model, register_task
from modbench.tasks.configs import ModularAdditionConfig
from modbench.tasks.modular_addition_impl import ModularAdditionTask

P = 7
SMALL = ModularAdditionConfig(p=P, train_fraction=0.6, model="tiny_modadd", quality_floor=0.0,
                              train=dataclasses.replace(ModularAdditionConfig().train, steps=30, eval_every=10))
if "tiny_modadd" not in MODELS:
    register_model("tiny_modadd", TransformerConfig(n_layers=1, d_model=8, n_heads=2, d_head=4, d_mlp=8,
                                                    d_vocab=P + 1, d_vocab_out=P, n_ctx=3),
                   "test", factory="modbench.models.transformer:ModularTransformer")
    register_task("tiny_modular_addition", SMALL, "test", factory="modbench.tasks.modular_addition_impl:ModularAdditionTask")


def test_split_covers_every_pair_once_and_is_seeded():
    data = ModularAdditionTask(SMALL).load(None)
    x = torch.cat([data.x_train, data.x_test])
    assert len(data.x_train) == round(0.6 * P * P) and len(x) == P * P
    assert len({tuple(row) for row in x.tolist()}) == P * P and (x[:, 2] == P).all()
    assert torch.equal(torch.cat([data.y_train, data.y_test]), (x[:, 0] + x[:, 1]) % P)
    assert torch.equal(ModularAdditionTask(SMALL).load(None).x_train, data.x_train)
    other = ModularAdditionTask(dataclasses.replace(SMALL, split_seed=1)).load(None)
    assert not torch.equal(other.x_train, data.x_train) and other.source != data.source


def test_pairs_keep_a_change_b_and_the_answer():
    task = ModularAdditionTask(SMALL)
    data = task.load(None)
    pairs = task.contrast(data, seed=3)
    assert torch.equal(pairs.clean, data.x_test) and torch.equal(pairs.clean[:, 0], pairs.corrupted[:, 0])
    assert (pairs.clean[:, 1] != pairs.corrupted[:, 1]).all() and (pairs.clean_labels != pairs.corrupted_labels).all()
    assert torch.equal(pairs.corrupted_labels, (pairs.corrupted[:, 0] + pairs.corrupted[:, 1]) % P)
    assert torch.equal(task.contrast(data, seed=3).corrupted, pairs.corrupted)


def test_logit_margin_is_correct_minus_mean_of_the_others():
    logits = torch.tensor([[3.0, 1.0, -1.0, 0.0]])
    assert float(logit_margin(logits, None, torch.tensor([0]))) == pytest.approx(3.0)
    assert float(logit_margin(logits, None, torch.tensor([2]))) == pytest.approx(-1.0 - 4.0 / 3)


def test_default_declaration_matches_golechha_and_the_model():
    config = TASKS.get("modular_addition").config
    model = MODELS.get(config.model).config
    assert (config.p, config.train.weight_decay, config.train.betas) == (113, 1.0, (0.9, 0.98))
    assert (config.train_fraction, config.train.lr) == (0.4, 3e-3)  # the documented deviation
    assert (model.d_vocab, model.d_vocab_out, model.n_ctx, model.n_layers) == (114, 113, 3, 1)
    assert config.train.batch_size >= config.p ** 2  # full batch


def test_cluster_regime_on_the_tiny_transformer_clusters_every_matrix_aligned():
    spec = ExperimentSpec(task="tiny_modular_addition", method="cluster",
                          discovery=DiscoveryConfig(boots=3, pairs_per_boot=6), selection_config=TopKConfig(1))
    record, outcome = run_experiment(spec, torch.device("cpu"), show_progress=False)
    assert record.status == "ok" and "logit_margin" in record.metrics
    assert set(record.circuit_size) == {"blocks.0.attn.hook_z", "blocks.0.mlp.hook_post"}
    names = [w.name for w in clustered_wires(outcome.model.wiring(), ())]
    assert names == [f"blocks.0.{m}" for m in ("attn.W_Q", "attn.W_K", "attn.W_V", "attn.W_O", "mlp.W_in",
                                                "mlp.W_out")]
    trained = record.details["contiguous_clusterability_k4"]
    assert set(trained) == set(names) and record.details["training_last_eval"]["step"] == 30
    assert record.details["training_last_eval"]["clusterability"] == pytest.approx(
        sum(trained.values()) / len(trained), abs=1e-6)


def test_cli_run_on_a_sequence_task_saves_its_figures(tmp_path, monkeypatch, capsys):
    from modbench.cli.app import main

    monkeypatch.setenv("MODBENCH_HOME", str(tmp_path / "home"))
    main(["run", "--method", "bimt", "--task", "tiny_modular_addition", "--steps", "20", "--boots", "2",
          "--pairs", "6", "--quiet", "--set", "swap_top_k=4", "--set", "swap_every=5", "--figures", str(tmp_path / "figures"), "--results", str(tmp_path / "r.sqlite")])
    made = sorted(p.name.rsplit("-", 1)[-1] for p in (tmp_path / "figures").iterdir())
    assert made == ["circuit.png", "fourier.png", "sparsity.png", "weights.png"]
    assert "record 1" in capsys.readouterr().out
