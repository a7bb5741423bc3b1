"""``modbench train``: train (or load from cache) one model under one regime."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from modbench.cli.app import app
from modbench.cli.options import check_data_dir, check_seed, check_steps


def load_or_train(method: str, task: str, model: str | None, steps: int | None, seed: int, device: str | None,
                  data_dir: Path | None, overrides: list[str], quiet: bool):  # noqa: ANN201
    """Validate everything cheap, then train (or load from the cache) one model; shared by the commands."""
    from modbench.pipeline import build_task, override
    from modbench.registries import METHODS, MODELS, TASKS

    check_seed("seed", seed)
    check_steps(steps)
    method_config = override(METHODS.get(method).config, overrides)
    model_key = model or TASKS.get(task).config.model
    model_config = MODELS.get(model_key).config
    task_impl = build_task(task, model_config)
    check_data_dir(data_dir)

    from modbench.pipeline import task_training_spec, trained_model
    from modbench.provenance import resolve_device

    torch_device = resolve_device(device)
    data = task_impl.load(data_dir)
    spec = task_training_spec(method, method_config, model_key, model_config, task_impl.config, data.source, steps,
                              seed)
    trained, record = trained_model(spec, task_impl, data, torch_device, show_progress=not quiet)
    return trained, record, spec, task_impl, data


@app.command()
def train(
    method: str = typer.Option(..., help="training method (see `modbench list methods`)"),
    task: str = typer.Option("circle_detection", help="task whose data and loss train the model"),
    model: str | None = typer.Option(None, help="model architecture [default: the task's]"),
    steps: int | None = typer.Option(None, help="training steps [default: the task's budget for the data found]"),
    seed: int = typer.Option(1, help="seed for initialisation and batches"),
    device: str | None = typer.Option(None, help="cpu, cuda or cuda:N [default: cuda if available]"),
    data_dir: Path | None = typer.Option(None, help="folder holding the task's data [env MODBENCH_DATA_DIR]"),
    set_: list[str] = typer.Option([], "--set", help="override a method config field, KEY=VALUE"),
    quiet: bool = typer.Option(False, help="no progress bar"),
) -> None:
    """Train a model under a modularity regime; the same config is loaded from cache, never retrained."""
    _, record, spec, _, data = load_or_train(method, task, model, steps, seed, device, data_dir, set_, quiet)
    training = record["training"]
    summary = {
        "method": method, "model": spec.model, "data_source": data.source, "steps": spec.train.steps, "seed": seed,
        "test_accuracy": training["test_accuracy"], "best_test_accuracy": training["best_test_accuracy"],
        "best_step": training["best_step"], "train_time_s": round(training["train_time_s"], 2),
        "peak_train_memory_mb": round(training["peak_memory_bytes"] / 2**20, 3),
        "cached": record["cached"], "config_hash": spec.hash, "checkpoint": record["checkpoint_path"],
    }
    typer.echo(json.dumps(summary, indent=2))
