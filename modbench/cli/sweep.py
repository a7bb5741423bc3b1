"""``modbench sweep FILE``: every run of a sweep file not yet in the results database, on a process pool or
on Ray, with a progress bar over runs and a summary at the end (file format: ``modbench/sweeps/__init__.py``).

Exit code 0 when every run is ok (or was already done), 1 when any run failed (training diverged, below the
task's quality floor, or crashed: each listed with its reason, never ranked), 2 for a bad file or flag.
"""

from __future__ import annotations

from pathlib import Path

import typer

from modbench.cli.app import app
from modbench.cli.options import check_data_dir, check_writable_file, results_path
from modbench.errors import UserError


@app.command()
def sweep(
    file: Path = typer.Argument(..., help="sweep file (TOML: methods, tasks, discoverers, seeds, overrides)"),
    executor: str = typer.Option("local", help="local (a process pool on this machine) or ray"),
    workers: int | None = typer.Option(None, help="local: worker processes [default: one per core]; ray "
                                                  "without --address: CPUs of the local Ray instance"),
    address: str | None = typer.Option(None, help="ray: address of a running Ray cluster "
                                                  "[default: start a local instance]"),
    device: str | None = typer.Option(None, help="cpu, cuda or cuda:N [default: local: cuda if available; "
                                                 "ray: cpu] (ray with cuda: one GPU per run)"),
    data_dir: Path | None = typer.Option(None, help="folder holding the tasks' data [env MODBENCH_DATA_DIR]"),
    results: Path | None = typer.Option(None, help="results database [default: $MODBENCH_HOME/results.sqlite]"),
    pack: int = typer.Option(0, help="first make the runs of up to N models of one architecture in one process "
                                     "each: untrained models trained together, runs scored together (stacked "
                                     "along a model axis; pays on a GPU) [0: off]"),
    dry_run: bool = typer.Option(False, "--dry-run", help="list the runs and which are done; run nothing"),
    quiet: bool = typer.Option(False, help="no progress bar"),
) -> None:
    """Run a sweep: methods x tasks x discoverers x seeds, skipping runs already in the results database."""
    from modbench.sweeps.executors import ExecutorOptions, check_ray

    options = ExecutorOptions(kind=executor, workers=workers, address=address,
                              device=_device(device, executor, address), data_dir=str(data_dir) if data_dir else None)
    if executor == "ray":
        check_ray()
    store_path = results_path(results)
    check_writable_file(store_path, "--results")
    check_data_dir(data_dir)
    if pack < 0:
        raise UserError(f"--pack must be >= 0, got {pack}")

    from modbench.results.store import ResultStore
    from modbench.sweeps.driver import prepare

    store = ResultStore(store_path)
    plan = prepare(file, store, data_dir)
    todo = plan.todo
    typer.echo(f"sweep {file}: {len(plan.runs)} runs, {len(plan.runs) - len(todo)} already done, "
               f"{len(todo)} to run")
    if dry_run:
        for run in plan.runs:
            typer.echo(f"  {'done' if run.config_hash in plan.done else 'todo'}  {run.config_hash}  {run.run.label()}")
        return
    if not todo:
        return
    outcomes = _run(plan, options, store, quiet, pack)
    _summary(outcomes, store_path)
    if any(outcome.failed for outcome in outcomes):
        raise SystemExit(1)


def _device(device: str | None, executor: str, address: str | None) -> str:
    """Local: resolved here (cuda must exist). Ray: cpu unless asked; on a cluster the driver need not have
    the GPUs its tasks ask for, so only the name is checked; a task sees its one GPU as ``cuda``."""
    if executor == "ray":
        if device in (None, "", "cpu"):
            return "cpu"
        if not device.startswith("cuda"):
            raise UserError(f"unsupported device {device!r} for --executor ray (use cpu or cuda)")
        if address is None:
            from modbench.provenance import resolve_device

            resolve_device("cuda")
        return "cuda"
    from modbench.provenance import resolve_device

    return str(resolve_device(device))


def _run(plan, options, store, quiet, pack):  # noqa: ANN001, ANN202
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, \
        TimeRemainingColumn

    from modbench.sweeps.driver import execute, pack_message
    from modbench.sweeps.executors import make_executor

    counts = {"ok": 0, "failed": 0}
    columns = (TextColumn("sweep"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.description}"),
               TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, disable=quiet) as progress:
        bar = progress.add_task("", total=len(plan.todo))

        def advance(outcome) -> None:  # noqa: ANN001
            counts["failed" if outcome.failed else "ok"] += 1
            progress.update(bar, advance=1, description=f"ok {counts['ok']}  failed {counts['failed']}")

        def packed(models: int, result: dict) -> None:  # noqa: ANN001
            progress.console.print(pack_message(models, result), highlight=False)

        executor = make_executor(options, len(plan.todo))
        try:
            return execute(plan, executor, store, advance, pack, packed)
        except KeyboardInterrupt:
            raise typer.Abort() from None


def _summary(outcomes, store_path: Path) -> None:  # noqa: ANN001
    """Every run of this sweep in sweep order (not ranked), then the failed ones with their reasons."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title="sweep results (in sweep order; rank them with `modbench leaderboard show`)")
    text = ("method", "task", "discoverer", "status", "metric")
    for header in (*text[:3], "seed", "status", "metric", "faithfulness", "test acc.", "time (s)"):
        table.add_column(header, justify="left" if header in text else "right", no_wrap=True)
    for outcome in outcomes:
        run, record = outcome.run.run, outcome.record
        metric = value = accuracy = ""
        if record is not None:  # the task's faithfulness metric: mean ± CI half-width over resamples
            metric, summary = record.faithfulness_metric, record.metrics.get(record.faithfulness_metric, {})
            value = f"{summary['mean']:.4g} ± {summary.get('ci', 0.0):.2g}" if summary else ""
            accuracy = f"{record.test_accuracy:.4f}"
        table.add_row(run.method, run.task, run.discoverer, str(run.seed), "failed" if outcome.failed else "ok",
                      metric, value, accuracy, f"{outcome.seconds:.1f}")
    console = Console(width=max(160, Console().width))  # a log file is 80 wide: rows would wrap
    console.print(table)
    failed = [outcome for outcome in outcomes if outcome.failed]
    if failed:
        console.print(f"failed runs ({len(failed)}, never ranked):", highlight=False)
        for outcome in failed:
            console.print(f"  {outcome.run.run.label()}: {outcome.why}", highlight=False, soft_wrap=True)
    ok = len(outcomes) - len(failed)
    console.print(f"{ok} ok, {len(failed)} failed; rows written to {store_path}", highlight=False)
