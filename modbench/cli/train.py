"""``modbench train``: train (or load from cache) one model under one regime."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from modbench.cli.app import app
from modbench.cli.options import COMPILE_HELP, check_data_dir, check_seed, check_steps, request_compile


def load_or_train(method: str, task: str, model: str | None, steps: int | None, seed: int, device: str | None,
                  data_dir: Path | None, overrides: list[str], quiet: bool):  # noqa: ANN201
    """Validate everything cheap, then train (or load from the cache) one model; shared by the commands."""
    specs, task_impl, data = _specs([method], task, model, steps, [seed], data_dir, overrides)

    from modbench.pipeline import trained_model
    from modbench.provenance import resolve_device

    trained, record = trained_model(specs[0], task_impl, data, resolve_device(device), show_progress=not quiet)
    return trained, record, specs[0], task_impl, data


def _specs(methods: list[str], task: str, model: str | None, steps: int | None, seeds: list[int],
           data_dir: Path | None, overrides: list[str]):  # noqa: ANN202
    """Every (method, seed) training spec, all checked before anything trains; ``--set`` applies to each method."""
    from modbench.pipeline import build_task, override, task_training_spec
    from modbench.registries import METHODS, MODELS, TASKS

    for seed in seeds:
        check_seed("seed", seed)
    check_steps(steps)
    configs = {method: override(METHODS.get(method).config, overrides) for method in dict.fromkeys(methods)}
    model_key = model or TASKS.get(task).config.model
    model_config = MODELS.get(model_key).config
    task_impl = build_task(task, model_config)
    check_data_dir(data_dir)
    data = task_impl.load(data_dir)
    specs = [task_training_spec(method, config, model_key, model_config, task_impl.config, data.source, steps, seed)
             for method, config in configs.items() for seed in dict.fromkeys(seeds)]
    return specs, task_impl, data


def _summary(spec, record, source: str) -> dict:  # noqa: ANN001
    training = record["training"]
    return {
        "method": spec.method, "model": spec.model, "data_source": source, "steps": spec.train.steps,
        "seed": spec.train.seed, "test_accuracy": training["test_accuracy"],
        "best_test_accuracy": training["best_test_accuracy"], "best_step": training["best_step"],
        "train_time_s": round(training["train_time_s"], 2), "packed_with": training.get("packed_with", 1),
        "peak_train_memory_mb": round(training["peak_memory_bytes"] / 2**20, 3),
        "compiled_step": training.get("compiled_step", False),
        "cached": record["cached"], "config_hash": spec.hash, "checkpoint": record["checkpoint_path"],
    }


@app.command()
def train(
    method: list[str] = typer.Option(..., help="training method (see `modbench list methods`); repeat for several"),
    task: str = typer.Option("circle_detection", help="task whose data and loss train the model"),
    model: str | None = typer.Option(None, help="model architecture [default: the task's]"),
    steps: int | None = typer.Option(None, help="training steps [default: the task's budget for the data found]"),
    seed: list[int] = typer.Option([1], help="seed for initialisation and batches; repeat for several"),
    pack: bool = typer.Option(True, help="train several models in one pack (one process, stacked along a model "
                                         "axis; same results as one by one)"),
    device: str | None = typer.Option(None, help="cpu, cuda or cuda:N [default: cuda if available]"),
    data_dir: Path | None = typer.Option(None, help="folder holding the task's data [env MODBENCH_DATA_DIR]"),
    set_: list[str] = typer.Option([], "--set", help="override a method config field, KEY=VALUE"),
    quiet: bool = typer.Option(False, help="no progress bar"),
    compile_: bool = typer.Option(False, "--compile", help=COMPILE_HELP),
) -> None:
    """Train models under modularity regimes (every --method x --seed; several are packed); a config already
    trained is loaded from cache, never retrained. Prints one JSON summary, or a list of them."""
    specs, task_impl, data = _specs(method, task, model, steps, seed, data_dir, set_)

    from modbench.errors import TrainingFailed
    from modbench.pipeline import trained_models
    from modbench.provenance import resolve_device

    request_compile(compile_)
    results = trained_models(specs, task_impl, data, resolve_device(device), show_progress=not quiet, pack=pack)
    if len(specs) == 1 and isinstance(results[0], TrainingFailed):
        raise results[0]
    summaries = [{"method": spec.method, "seed": spec.train.seed, "failed": str(result)}
                 if isinstance(result, TrainingFailed) else _summary(spec, result[1], data.source)
                 for spec, result in zip(specs, results, strict=True)]
    typer.echo(json.dumps(summaries[0] if len(summaries) == 1 else summaries, indent=2))
    if any("failed" in summary for summary in summaries):
        raise SystemExit(1)
