"""``modbench train``: train (or load from cache) one model under one regime."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from modbench.cli.app import app
from modbench.cli.options import resolve_common
from modbench.pipeline import method_config, trained_model, training_spec


@app.command()
def train(
    method: str = typer.Option(..., help="training method (see `modbench list methods`)"),
    model: str = typer.Option("mnist_mlp", help="model architecture (see `modbench list models`)"),
    steps: int | None = typer.Option(None, help="training steps [default: 40000 on full MNIST, 10000 on mnist-5k]"),
    seed: int = typer.Option(1, help="seed for initialisation and batches"),
    device: str | None = typer.Option(None, help="cpu, cuda or cuda:N [default: cuda if available]"),
    data_dir: Path | None = typer.Option(None, help="folder holding mnist/ [env MODBENCH_DATA_DIR]"),
    set_: list[str] = typer.Option([], "--set", help="override a method config field, KEY=VALUE"),
    quiet: bool = typer.Option(False, help="no progress bar"),
) -> None:
    """Train a model under a modularity regime; the same config is loaded from cache, never retrained."""
    config = method_config(method, set_)
    common = resolve_common(method=method, model=model, steps=steps, seed=seed, device=device, data_dir=data_dir)
    spec = training_spec(method, model, common.data, common.train_config, config)
    _, record = trained_model(spec, common.data, common.device, show_progress=not quiet)
    training = record["training"]
    summary = {
        "method": method, "model": model, "data_source": common.data.source, "steps": spec.train.steps,
        "seed": seed, "test_accuracy": training["test_accuracy"],
        "best_test_accuracy": training["best_test_accuracy"], "best_step": training["best_step"],
        "train_time_s": round(training["train_time_s"], 2),
        "cached": record["cached"], "config_hash": spec.hash, "checkpoint": record["checkpoint_path"],
    }
    typer.echo(json.dumps(summary, indent=2))
