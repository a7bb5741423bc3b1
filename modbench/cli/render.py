"""Terminal rendering of leaderboard tables (rich): a compact default that fits 100 columns without breaking a
word, ``--wide`` for every column of the markdown table, ``--columns a,b,c`` for a chosen few; the footnote is
printed below, wrapped at words."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from modbench.errors import UserError
from modbench.results.leaderboard import (TEXT_COLUMNS, Cell, compact_columns, display_table, footnote, header,
                                          known_columns, wide_columns)


@dataclass(frozen=True)
class ColumnChoice:
    """Which columns a terminal table shows: ``names`` when given, else every column (``wide``) or the compact
    default."""

    wide: bool = False
    names: tuple[str, ...] = ()

    def columns(self, table: pd.DataFrame) -> tuple[str, ...]:
        if self.names:
            return self.names
        return wide_columns(table) if self.wide else compact_columns(table)


def column_choice(wide: bool, columns: str | None) -> ColumnChoice:
    """``--wide`` / ``--columns a,b,c`` checked before any work: an unknown column is one line listing the
    known ones."""
    if columns is None:
        return ColumnChoice(wide=wide)
    if wide:
        raise UserError("--wide and --columns cannot be combined (--wide shows every column)")
    names = tuple(name.strip() for name in columns.split(",") if name.strip())
    known = known_columns()
    unknown = [name for name in names if name not in known]
    if unknown or not names:
        raise UserError(f"unknown column {unknown[0]!r} (known: {', '.join(known)})" if unknown
                        else f"--columns expects a comma list of columns (known: {', '.join(known)})")
    return ColumnChoice(names=tuple(dict.fromkeys(names)))


GAP = 2  # characters between columns: one separator, one padding


@dataclass(frozen=True)
class Layout:
    """What each column needs: ``least`` keeps every word and number whole, ``most`` shows its longest line
    unwrapped."""

    columns: tuple[str, ...]
    rows: list[dict[str, Cell]]
    least: tuple[int, ...]
    most: tuple[int, ...]

    @property
    def min_width(self) -> int:
        return sum(self.least) + GAP * (len(self.columns) - 1)

    def widths(self, width: int) -> list[int]:
        """Column widths for a line of ``width``: every column its least, then the room left given to the
        columns needing least more first (headers and short text whole before long failure reasons)."""
        widths = list(self.least)
        room = width - self.min_width
        for index in sorted(range(len(widths)), key=lambda i: self.most[i] - self.least[i]):
            grant = max(0, min(self.most[index] - widths[index], room))
            widths[index] += grant
            room -= grant
        return widths


def layout(table: pd.DataFrame, choice: ColumnChoice) -> Layout:
    """Cells as displayed, a failed row's status shortened to "failed" (its reason is listed below the table)."""
    columns, rows = display_table(table, choice.columns(table))
    rows = [row | {"status": Cell("failed", "failed")} if row.get("status", Cell("", None)).text.startswith("failed")
            else row for row in rows]
    least, most = [], []
    for column in columns:
        texts = [row[column].text for row in rows]
        units = [word for text in texts for word in text.split()] if column in TEXT_COLUMNS else texts
        least.append(max([len(unit) for unit in units] + [len(word) for word in header(column).split()]))
        most.append(max([len(text) for text in texts] + [len(header(column))]))
    return Layout(columns, rows, tuple(least), tuple(most))


def rich_table(table: pd.DataFrame, title: str, choice: ColumnChoice, width: int) -> Table:
    """Columns of fixed widths (:meth:`Layout.widths`), so that rich wraps text and headers at spaces only and
    never breaks a word or a number (rich's own shrinking cuts the widest columns, words included)."""
    planned = layout(table, choice)
    rendered = Table(title=title, box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 1, 0, 0))
    for column, column_width in zip(planned.columns, planned.widths(width), strict=True):
        rendered.add_column(header(column), justify="left" if column in TEXT_COLUMNS else "right",
                            overflow="fold", width=column_width)
    for source, row in zip(table["source"], planned.rows, strict=True):
        rendered.add_row(*[row[c].text for c in planned.columns], style=None if source == "ours" else "dim italic")
    return rendered


def render_table(table: pd.DataFrame, title: str, console: Console, choice: ColumnChoice = ColumnChoice()) -> None:
    """The table, the failed rows' reasons, then the footnote, wrapped to the console's width."""
    console.print(rich_table(table, title, choice, console.width))
    for _, row in table[(table["source"] == "ours") & (table["status"] != "ok")].iterrows():
        console.print(Text(f"failed, never ranked: {row['method']} ({row['discoverer']}, {row['variant']}): "
                           f"{row.get('failure', '')}"))
    console.print(Text(footnote(table)))


def print_table(table: pd.DataFrame, title: str, choice: ColumnChoice = ColumnChoice()) -> None:
    """To the terminal, at its width or, when the table needs more to keep every word whole (``--wide`` on a
    narrow terminal), at the table's own least width."""
    width = max(Console().width, layout(table, choice).min_width)
    render_table(table, title, Console(width=width), choice)
