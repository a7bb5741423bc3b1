"""``modbench run``: the main job, from training to a leaderboard row beside the published one."""

from __future__ import annotations

from pathlib import Path

import typer

from modbench.cli.app import app
from modbench.cli.options import resolve_common
from modbench.cli.render import print_table
from modbench.discovery import DISCOVERERS
from modbench.errors import UserError
from modbench.paths import modbench_home
from modbench.pipeline import method_config, trained_model, training_spec
from modbench.results.leaderboard import leaderboard
from modbench.results.store import ResultStore
from modbench.runner import DiscoveryConfig, build_record, discover_and_score
from modbench.tasks import TASKS


def results_path(results: Path | None) -> Path:
    return results or modbench_home() / "results.sqlite"


@app.command()
def run(
    method: str = typer.Option(..., help="training method (see `modbench list methods`)"),
    task: str = typer.Option(..., help="task (see `modbench list tasks`)"),
    discoverer: str | None = typer.Option(None, help="circuit discoverer [default: the task's]"),
    seed: int = typer.Option(1, help="seed for training and pair formation"),
    boots: int = typer.Option(50, help="bootstrap resamples"),
    pairs: int = typer.Option(500, help="pairs per resample"),
    top_k: int = typer.Option(15, "--top-k", help="neurons kept per hidden layer (K)"),
    ablation: str = typer.Option("mean", help="how non-circuit neurons are removed: mean or zero"),
    steps: int | None = typer.Option(None, help="training steps [default: 40000 on full MNIST, 10000 on mnist-5k]"),
    device: str | None = typer.Option(None, help="cpu, cuda or cuda:N [default: cuda if available]"),
    data_dir: Path | None = typer.Option(None, help="folder holding mnist/ [env MODBENCH_DATA_DIR]"),
    results: Path | None = typer.Option(None, help="results database [default: $MODBENCH_HOME/results.sqlite]"),
    figures: Path | None = typer.Option(None, help="folder for figures [default: $MODBENCH_HOME/figures]"),
    set_: list[str] = typer.Option([], "--set", help="override a method config field, KEY=VALUE"),
    quiet: bool = typer.Option(False, help="no progress bar"),
) -> None:
    """Train (or load) a model, discover its circuit with bootstrap CIs, record and show the row."""
    task_spec = TASKS.get(task)
    discoverer_key = discoverer or task_spec.discoverer
    discoverer_spec = DISCOVERERS.get(discoverer_key)
    try:
        cfg = DiscoveryConfig(boots=boots, pairs_per_boot=pairs, top_k=top_k, ablation=ablation, seed=seed)
    except ValueError as error:
        raise UserError(str(error)) from None
    config = method_config(method, set_)
    common = resolve_common(method, task_spec.model, steps, seed, device, data_dir, task_spec.dataset)
    spec = training_spec(method, task_spec.model, common.data, common.train_config, config)
    model, training = trained_model(spec, common.data, common.device, show_progress=not quiet)
    contrast = task_spec.make_pairs(common.data, seed)
    if len(contrast) == 0:
        raise UserError(f"task {task!r} found no pairs in the {common.data.source} test split")
    outcome = discover_and_score(model, contrast, discoverer_spec.build(), cfg, common.device)
    record = build_record(
        task=task_spec, method=method, discoverer_key=discoverer_key, discoverer_config=discoverer_spec.config,
        cfg=cfg, data=common.data, model=model, training=training, outcome=outcome, n_pairs=len(contrast),
        device=common.device,
    )
    store = ResultStore(results_path(results))
    record["id"] = store.append(record)
    table = leaderboard([record], task)
    table = table[(table["source"] == "ours") | (table["method"] == method)]
    print_table(table, f"{task}: this run beside its published counterpart")
    from modbench.viz.figures import connectivity_graph, sparsity_scatter

    folder = figures or modbench_home() / "figures"
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"{task}-{method}-{common.data.source}"
    graph = connectivity_graph(model, outcome.circuit, folder / f"{stem}-circuit.png", f"{method} on {task}")
    board = leaderboard(store.records(task), task, common.data.source)
    scatter = sparsity_scatter(board, folder / f"{task}-{common.data.source}-sparsity.png", task)
    typer.echo(f"record {record['id']} written to {store.path}\nfigures: {graph}\n         {scatter}")
