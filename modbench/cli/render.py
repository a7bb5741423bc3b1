"""Terminal rendering of leaderboard tables (rich)."""

from __future__ import annotations

import pandas as pd
from rich.console import Console
from rich.table import Table

from modbench.results.leaderboard import display_rows, footnote


def print_table(table: pd.DataFrame, title: str) -> None:
    headers, rows = display_rows(table)
    rich_table = Table(title=title, caption=footnote(table))
    for header in headers:
        text = header in ("source", "method", "variant", "dataset", "status")
        rich_table.add_column(header, overflow="fold", justify="left" if text else "right",
                              no_wrap=header in ("source", "method", "dataset"), min_width=12 if text else 9)
    for cells in rows:
        rich_table.add_row(*cells, style=None if cells[0] == "ours" else "dim italic")
    Console(width=max(180, Console().width)).print(rich_table)
