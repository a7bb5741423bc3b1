"""``modbench run``: the main job, from training to a leaderboard row beside the published one."""

from __future__ import annotations

from pathlib import Path

import typer

from modbench.cli.app import app
from modbench.cli.leaderboard import COLUMNS_HELP, WIDE_HELP
from modbench.cli.options import (COMPILE_HELP, check_data_dir, check_seed, check_steps, check_writable_dir,
                                  check_writable_file, request_compile, results_path)
from modbench.paths import modbench_home


@app.command()
def run(
    method: str = typer.Option(..., help="training method (see `modbench list methods`)"),
    task: str = typer.Option(..., help="task (see `modbench list tasks`)"),
    model: str | None = typer.Option(None, help="model architecture [default: the task's]"),
    discoverer: str | None = typer.Option(None, help="circuit discoverer [default: the task's]"),
    seed: int = typer.Option(1, help="training seed (initialisation and batch order)"),
    pair_seed: int = typer.Option(0, help="seed of pair formation and the discovery/held-out split"),
    boot_seed: int = typer.Option(0, help="seed of the bootstrap resamples"),
    boots: int = typer.Option(50, help="bootstrap resamples"),
    pairs: int = typer.Option(500, help="pairs per resample"),
    top_k: int | None = typer.Option(None, "--top-k", help="candidates kept per site (selection top_k) "
                                                            "[default: the task's selection, e.g. K = 15 on MNIST]"),
    ablation: str = typer.Option("mean", help="intervention on non-circuit candidates: mean, zero or resample"),
    steps: int | None = typer.Option(None, help="training steps [default: the task's budget for the data found]"),
    device: str | None = typer.Option(None, help="cpu, cuda or cuda:N [default: cuda if available]"),
    data_dir: Path | None = typer.Option(None, help="folder holding the task's data (an explicit folder must "
                                                    "hold it) [env MODBENCH_DATA_DIR]"),
    results: Path | None = typer.Option(None, help="results database [default: $MODBENCH_HOME/results.sqlite]"),
    figures: Path | None = typer.Option(None, help="folder for figures [default: $MODBENCH_HOME/figures]"),
    set_: list[str] = typer.Option([], "--set", help="override a method config field, KEY=VALUE"),
    discoverer_set: list[str] = typer.Option([], "--discoverer-set", help="override a discoverer config field, "
                                                                        "KEY=VALUE (e.g. clusters=contiguous)"),
    quiet: bool = typer.Option(False, help="no progress bar"),
    wide: bool = typer.Option(False, "--wide", help=WIDE_HELP),
    columns: str | None = typer.Option(None, "--columns", help=COLUMNS_HELP),
    compile_: bool = typer.Option(False, "--compile", help=COMPILE_HELP),
) -> None:
    """Train (or load) a model, discover its circuit with bootstrap CIs, record and show the row."""
    from modbench.cli.render import column_choice
    from modbench.experiment import experiment_spec
    from modbench.pipeline import override
    from modbench.registries import DISCOVERERS, METHODS, TASKS

    for name, value in (("seed", seed), ("pair-seed", pair_seed), ("boot-seed", boot_seed)):
        check_seed(name, value)
    check_steps(steps)
    choice = column_choice(wide, columns)
    found = discoverer or TASKS.get(task).config.discoverer
    spec = experiment_spec(task, method, override(METHODS.get(method).config, set_), found,
                           override(DISCOVERERS.get(found).config, discoverer_set), model=model, seed=seed,
                           steps=steps, boots=boots, pairs=pairs, pair_seed=pair_seed, boot_seed=boot_seed,
                           top_k=top_k, ablation=ablation)
    store_path, figure_dir = results_path(results), figures or modbench_home() / "figures"
    check_writable_file(store_path, "--results")
    check_writable_dir(figure_dir, "--figures")
    check_data_dir(data_dir)

    from modbench.cli.render import print_table
    from modbench.experiment import run_experiment
    from modbench.provenance import resolve_device
    from modbench.results.leaderboard import leaderboard
    from modbench.results.store import ResultStore
    from modbench.viz.figures import connectivity_graph, ecs_bars, on_off_heatmaps, sparsity_scatter
    from modbench.viz.weights import weight_heatmaps

    request_compile(compile_)
    record, outcome = run_experiment(spec, resolve_device(device), data_dir, show_progress=not quiet)
    store = ResultStore(store_path)
    record = store.append(record)
    table = leaderboard([record], task)
    table = table[(table["source"] == "ours") | (table["method"] == method)]
    print_table(table, f"{task}: this run beside its published counterpart", choice)
    stem = f"{task}-{method}-{record.dataset}-{record.config_hash}"
    label = f"{method} on {task} ({record.variant})"
    if "needs_clusters" in record.details:
        figures_made = [on_off_heatmaps(record.details, figure_dir / f"{stem}-on-off.png", label)]
    elif "ecs_per_class" in record.details:
        figures_made = [ecs_bars(record.details, figure_dir / f"{stem}-ecs.png", label)]
    else:
        board = leaderboard(store.records(task), task, record.dataset)
        figures_made = [connectivity_graph(outcome.model, outcome.circuit, figure_dir / f"{stem}-circuit.png", label),
                        sparsity_scatter(board, figure_dir / f"{task}-{record.dataset}-sparsity.png", task,
                                         record.faithfulness_metric)]
    figures_made.append(weight_heatmaps(outcome.model, figure_dir / f"{stem}-weights.png", label))
    task_figures = getattr(outcome.task, "figures", None)  # optional part of the task protocol
    if task_figures is not None:
        figures_made += task_figures(outcome.model, figure_dir / stem, label)
    typer.echo(f"record {record.id} ({record.status}) written to {store.path}\nfigures: "
               + "\n         ".join(map(str, figures_made)))
