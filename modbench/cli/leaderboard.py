"""``modbench leaderboard show|compare``: our records beside the published ones."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import typer

from modbench.cli.app import app
from modbench.cli.render import print_table
from modbench.cli.run import results_path
from modbench.results.compare import compare as compare_rows
from modbench.results.leaderboard import leaderboard, to_html, to_markdown
from modbench.results.store import ResultStore
from modbench.tasks import TASKS

board = typer.Typer(no_args_is_help=True, help="Show and compare leaderboards.")
app.add_typer(board, name="leaderboard")


def write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as handle:
        handle.write(text)
    os.replace(handle.name, path)


@board.command()
def show(
    task: str = typer.Option(..., help="task (see `modbench list tasks`)"),
    dataset: str | None = typer.Option(None, help="only rows on this data source (mnist or mnist-5k)"),
    results: Path | None = typer.Option(None, help="results database [default: $MODBENCH_HOME/results.sqlite]"),
    csv: Path | None = typer.Option(None, help="also write the table as CSV"),
    markdown: Path | None = typer.Option(None, help="also write the table as Markdown"),
    html: Path | None = typer.Option(None, help="also write a self-contained HTML page"),
) -> None:
    """One row per method (latest record), best first, published rows marked."""
    TASKS.get(task)
    table = leaderboard(ResultStore(results_path(results)).records(task), task, dataset)
    title = f"{task} leaderboard" + (f" ({dataset})" if dataset else "")
    print_table(table, title)
    if csv:
        write_atomically(csv, table.to_csv(index=False))
    if markdown:
        write_atomically(markdown, to_markdown(table, title))
    if html:
        write_atomically(html, to_html(table, title))


@board.command()
def compare(
    task: str = typer.Option(..., help="task (see `modbench list tasks`)"),
    dataset: str | None = typer.Option(None, help="only rows on this data source"),
    results: Path | None = typer.Option(None, help="results database [default: $MODBENCH_HOME/results.sqlite]"),
) -> None:
    """Each of our methods next to its published counterpart, and the orderings side by side."""
    TASKS.get(task)
    outcome = compare_rows(ResultStore(results_path(results)).records(task), task, dataset)
    typer.echo(outcome["table"].to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    typer.echo(json.dumps(outcome["verdict"], indent=2))
