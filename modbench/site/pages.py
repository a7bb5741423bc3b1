"""What the templates show: a task's leaderboards (one per data source) as rows of formatted, sortable cells,
each row of ours with its figures and links to the records behind it (one per training seed)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from modbench.results.leaderboard import (TEXT_COLUMNS, Cell, display_table, footnote, header, leaderboard,
                                          shown_metrics, wide_columns)
from modbench.results.record import ResultRecord
from modbench.site.figures import Figure, FigureMaker


@dataclass(frozen=True)
class Link:
    label: str
    href: str
    title: str = ""


@dataclass(frozen=True)
class SiteRow:
    classes: str  # ours / published, canonical, failed
    rank: int | None  # 1 = best ranked row of ours; None for failed and published rows
    cells: list[Cell]
    source: str  # the full source, e.g. the published citation
    figures: list[Figure] = field(default_factory=list)
    records: list[Link] = field(default_factory=list)


@dataclass(frozen=True)
class Section:
    """One data source's leaderboard: ranked rows (ours, then published), failed rows apart."""

    dataset: str
    columns: list[tuple[str, str, bool]]  # key, header, is text
    rows: list[SiteRow]
    failed: list[SiteRow]
    footnote: str
    scatter: Figure | None
    primary: str  # the column the rows are ranked by

    @property
    def ok_rows(self) -> int:
        return sum(row.rank is not None for row in self.rows)

    @property
    def failed_rows(self) -> int:
        return len(self.failed)

    @property
    def published_rows(self) -> int:
        return sum(row.classes.startswith("published") for row in self.rows)

    def leader(self) -> str:
        """The top ranked row of ours and its ranking metric, e.g. 'bimt (activation_patching): logit
        difference 0.2408 ± 0.2222*'."""
        top = next((row for row in self.rows if row.rank == 1), None)
        if top is None:
            return f"{self.dataset}: no ranked row of ours"
        keys = [key for key, _, _ in self.columns]
        named = dict(zip(keys, top.cells, strict=True))
        metric = header(self.primary) + " " + named[self.primary].text if self.primary in named else ""
        return f"{self.dataset}: {named['method'].text} ({named['discoverer'].text}) {metric}".rstrip()


def record_page(record: ResultRecord) -> str:
    return f"records/{record.config_hash}.html"


def latest_per_seed(records: list[ResultRecord]) -> dict[str, list[ResultRecord]]:
    """Per cell, its latest record of each training seed, by seed (the records a leaderboard row aggregates)."""
    latest: dict[tuple[str, int], ResultRecord] = {}
    for position, record in sorted(enumerate(records), key=lambda item: (item[1].id or 0, item[0])):
        latest[record.cell, record.train_seed] = record
    cells: dict[str, list[ResultRecord]] = {}
    for (cell, _), record in sorted(latest.items(), key=lambda item: (item[0][0], item[0][1])):
        cells.setdefault(cell, []).append(record)
    return cells


def representative(row: pd.Series, records: list[ResultRecord]) -> ResultRecord:
    """The record whose figures stand for the row: the one the row's identity columns came from (its id),
    else the last ok one."""
    for record in records:
        if record.id is not None and record.id == row.get("id"):
            return record
    ok = [record for record in records if record.status == "ok"]
    return (ok or records)[-1]


def section(records: list[ResultRecord], task: str, dataset: str, figures: FigureMaker | None) -> Section:
    """The leaderboard of ``task`` on ``dataset`` (ours and the published rows), with figures when ``figures``."""
    table = leaderboard(records, task, dataset)
    columns = tuple(c for c in wide_columns(table) if c != "dataset")  # one data source per section
    _, cells = display_table(table, columns)
    by_cell = latest_per_seed([r for r in records if r.task == task and r.dataset == dataset])
    rows, failed, rank = [], [], 0
    for (_, row), formatted in zip(table.iterrows(), cells, strict=True):
        ours = row["source"] == "ours"
        classes = ["ours" if ours else "published"]
        extra: dict = {}
        if ours:
            members = by_cell[row["cell"]]
            extra["records"] = [Link(f"seed {r.train_seed}", record_page(r), f"config hash {r.config_hash}")
                                for r in members]
            extra["figures"] = figures.for_record(representative(row, members)) if figures else [
                Figure("figures", None, "not built (built without figures)")]
        is_failed = ours and row["status"] != "ok"
        classes += ["canonical"] if ours and not is_failed and bool(row.get("canonical")) else []
        if not is_failed and ours:
            rank += 1
        site_row = SiteRow(" ".join(classes + (["failed"] if is_failed else [])),
                           rank if ours and not is_failed else None, [formatted[c] for c in columns],
                           str(row["source"]), **extra)
        (failed if is_failed else rows).append(site_row)
    scatter = figures.scatter(table, task, dataset) if figures else None
    primary = (shown_metrics(table) or ("",))[0]
    return Section(dataset, [(c, header(c), c in TEXT_COLUMNS) for c in columns], rows, failed, footnote(table),
                   scatter, primary)


@dataclass(frozen=True)
class TaskPage:
    task: str
    href: str
    sections: list[Section]
    records: int

    @property
    def leaders(self) -> list[str]:
        return [part.leader() for part in self.sections]


def task_page(records: list[ResultRecord], task: str, figures: FigureMaker | None) -> TaskPage:
    """One page per task: a section per data source of our records (leaderboards never mix sources)."""
    mine = [r for r in records if r.task == task]
    datasets = sorted({r.dataset for r in mine})
    return TaskPage(task, f"{task}.html", [section(mine, task, d, figures) for d in datasets], len(mine))
