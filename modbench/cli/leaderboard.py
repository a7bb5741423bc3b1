"""``modbench leaderboard show|compare``: our records beside the published ones."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from modbench.cli.app import app
from modbench.cli.options import check_writable_file, results_path

board = typer.Typer(no_args_is_help=True, help="Show and compare leaderboards.")
app.add_typer(board, name="leaderboard")


@board.command()
def show(
    task: str = typer.Option(..., help="task (see `modbench list tasks`)"),
    dataset: str | None = typer.Option(None, help="only rows on this data source (e.g. mnist or mnist-5k)"),
    results: Path | None = typer.Option(None, help="results database [default: $MODBENCH_HOME/results.sqlite]"),
    csv: Path | None = typer.Option(None, help="also write the table as CSV"),
    markdown: Path | None = typer.Option(None, help="also write the table as Markdown"),
    html: Path | None = typer.Option(None, help="also write a self-contained HTML page"),
) -> None:
    """One row per config cell (seeds aggregated), best first, failed models apart, published rows marked."""
    from modbench.registries import TASKS

    TASKS.get(task)
    for path, flag in ((csv, "--csv"), (markdown, "--markdown"), (html, "--html")):
        if path is not None:
            check_writable_file(path, flag)

    from modbench.cli.render import print_table
    from modbench.files import write_text
    from modbench.results.leaderboard import leaderboard, to_html, to_markdown
    from modbench.results.store import ResultStore

    records = ResultStore(results_path(results)).records(task, must_exist=results is not None)
    table = leaderboard(records, task, dataset)
    title = f"{task} leaderboard" + (f" ({dataset})" if dataset else "")
    print_table(table, title)
    if csv:
        write_text(csv, table.to_csv(index=False))
    if markdown:
        write_text(markdown, to_markdown(table, title))
    if html:
        write_text(html, to_html(table, title))


@board.command()
def compare(
    task: str = typer.Option(..., help="task (see `modbench list tasks`)"),
    dataset: str | None = typer.Option(None, help="only rows on this data source"),
    results: Path | None = typer.Option(None, help="results database [default: $MODBENCH_HOME/results.sqlite]"),
) -> None:
    """Each of our canonical methods next to its published counterpart, and the orderings side by side."""
    from modbench.registries import TASKS

    TASKS.get(task)
    from modbench.results.compare import compare as compare_rows
    from modbench.results.store import ResultStore

    records = ResultStore(results_path(results)).records(task, must_exist=results is not None)
    outcome = compare_rows(records, task, dataset)
    typer.echo(outcome["table"].to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    typer.echo(json.dumps(outcome["verdict"], indent=2))
