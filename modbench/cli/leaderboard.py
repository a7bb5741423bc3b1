"""``modbench leaderboard show|compare|site``: our records beside the published ones, in the terminal, as
files, or as a static site."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from modbench.cli.app import app
from modbench.cli.options import check_writable_dir, check_writable_file, results_path

WIDE_HELP = "show every column (as in --markdown) instead of the compact default"
COLUMNS_HELP = "show these columns, a comma list (e.g. method,discoverer,sparsity,circuit_edges,status)"

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
    wide: bool = typer.Option(False, "--wide", help=WIDE_HELP),
    columns: str | None = typer.Option(None, "--columns", help=COLUMNS_HELP),
) -> None:
    """One row per config cell (seeds aggregated), best first, failed models apart, published rows marked."""
    from modbench.cli.render import column_choice
    from modbench.registries import TASKS

    TASKS.get(task)
    choice = column_choice(wide, columns)
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
    print_table(table, title, choice)
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


@board.command()
def site(
    out_dir: Path = typer.Argument(..., help="folder for the site (new, empty, or a site built before: replaced)"),
    results: Path | None = typer.Option(None, help="results database [default: $MODBENCH_HOME/results.sqlite]"),
    task: list[str] = typer.Option([], help="only this task; repeat for several [default: every task with records]"),
    figures: bool = typer.Option(True, help="regenerate each row's figures from its model checkpoint and details"),
) -> None:
    """A static site: index.html and one page per task, sortable tables beside the published rows, each row's
    figures and the records behind it; opens offline from disk."""
    from modbench.registries import TASKS
    from modbench.site import build_site, check_site_dir

    for name in task:
        TASKS.get(name)
    check_site_dir(out_dir)
    check_writable_dir(out_dir.parent, "site folder")
    from modbench.results.store import ResultStore

    store = ResultStore(results_path(results))
    summary = build_site(store.records(must_exist=results is not None), out_dir, tasks=task or None, figures=figures)
    typer.echo(f"site written to {summary.index} ({summary.tasks} task pages, {summary.records} records, "
               f"{summary.figures} figures, {summary.unavailable} unavailable and said so on the page)")
