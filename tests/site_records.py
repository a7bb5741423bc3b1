"""Records of quick real runs for the site's tests: regimes trained on a toy MLP wide enough for the task's
default circuit (K = 15 per layer) and BIMT's swaps, scored with the registered defaults (canonical rows), by a
second discoverer, as a variant (fewer resamples), by ON/OFF and by ACDC (a circuit of edges); a tiny modular
addition transformer; one cell marked failed. Shared by test_site.py and
test_site_browser.py; the models' checkpoints live in a folder of the test session."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from modbench.experiment import DiscoveryConfig, ExperimentSpec, run_experiment
from modbench.models.catalog import MLPConfig, TransformerConfig
from modbench.registries import MODELS, TASKS, register_model, register_task
from modbench.results.record import ResultRecord
from modbench.tasks.configs import ModularAdditionConfig, PairTaskConfig
from modbench.training.config import TrainConfig

SITE_TASK = "site_toy"
MODADD_TASK = "site_modular_addition"  # a transformer, and a task with figures of its own (Fourier norms)


def _register() -> None:
    if SITE_TASK in TASKS:
        return
    from conftest import ToyImageTask

    register_model("site_mlp", MLPConfig(widths=(16, 32, 32, 4), activation="silu", bias=True), "site test MLP",
                   factory="modbench.models.mlp:HookedMLP")
    config = PairTaskConfig(pairs=((0, 1), (2, 3)), dataset="toy", model="site_mlp", quality_floor=0.0,
                            train=TrainConfig(steps=30, batch_size=16, eval_every=15, loss="cross_entropy"),
                            steps_by_source=())
    register_task(SITE_TASK, config, "toy task of the site tests", factory=ToyImageTask)
    register_model("site_transformer", TransformerConfig(n_layers=1, d_model=8, n_heads=2, d_head=4, d_mlp=8,
                                                         d_vocab=8, d_vocab_out=7, n_ctx=3), "site test transformer",
                   factory="modbench.models.transformer:ModularTransformer")
    modadd = ModularAdditionConfig(p=7, train_fraction=0.6, model="site_transformer", quality_floor=0.0,
                                   train=dataclasses.replace(ModularAdditionConfig().train, steps=20, eval_every=10))
    register_task(MODADD_TASK, modadd, "tiny modular addition of the site tests",
                  factory="modbench.tasks.modular_addition_impl:ModularAdditionTask")


def site_records(home: Path) -> list[ResultRecord]:
    """Real runs (models cached under ``home``), each record with the node circuit its run chose (the
``node_circuit`` details ``modbench.site.circuits`` reads)."""
    _register()
    quick = DiscoveryConfig(boots=4, pairs_per_boot=32)
    specs = [ExperimentSpec(task=SITE_TASK, method=method) for method in ("vanilla", "bimt")]
    specs += [ExperimentSpec(task=SITE_TASK, method="bimt", discoverer="attribution_patching"),
              ExperimentSpec(task=SITE_TASK, method="l1", discovery=quick),
              ExperimentSpec(task=SITE_TASK, method="vanilla", discoverer="on_off"),
              ExperimentSpec(task=SITE_TASK, method="bimt", discoverer="acdc", discovery=quick),  # edges
              ExperimentSpec(task=MODADD_TASK, method="cluster", discovery=DiscoveryConfig(boots=2, pairs_per_boot=6))]
    records = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MODBENCH_HOME", str(home))
        for spec in specs:
            record, outcome = run_experiment(spec, torch.device("cpu"), show_progress=False)
            if outcome.circuit.keep and "node_circuit" not in record.details:  # as records will store it
                kept = {site: torch.nonzero(mask[0]).flatten().tolist() for site, mask in outcome.circuit.keep.items()}
                record = dataclasses.replace(record, details=record.details | {"node_circuit": kept})
            records.append(dataclasses.replace(record, id=len(records) + 1))
    failed = dataclasses.replace(records[0], status="failed", cell="failed-cell", config_hash="f" * 16,
                                 id=len(records) + 1, failure="test accuracy 0.1000 below the task's quality floor 0.9")
    return [*records, failed]


assert MODELS  # registries import their built-ins before the toys are added
