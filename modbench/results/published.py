"""Published figures shipped with modbench (``modbench/published``, package data; sources in SOURCES.md). A task
file names its published reference (``[published]``: a citation and the table holding its rows)."""

from __future__ import annotations

from importlib import resources

import pandas as pd

from modbench.registries import TASKS
from modbench.tasks.declarations import PublishedReference

NAINANI_CITATION = "Nainani 2024, arXiv:2401.03646, Table 3"


def published_csv(name: str) -> pd.DataFrame:
    with resources.files("modbench.published").joinpath(name).open() as handle:
        return pd.read_csv(handle)


def nainani_table3(task: str | None = None) -> pd.DataFrame:
    table = published_csv("nainani2024_table3.csv")
    return table if task is None else table[table["task"] == task].reset_index(drop=True)


def published_citation(task: str) -> str:
    """The citation of the task's published reference ("" when its task file names none)."""
    reference = _reference(task)
    return reference.citation if reference is not None else ""


def published_rows(task: str) -> pd.DataFrame:
    """The task's published leaderboard rows: the rows with ``task`` = its name of the table its task file names
    (no rows, columns task and method, when it names none)."""
    reference = _reference(task)
    if reference is None or not reference.table:
        return pd.DataFrame(columns=["task", "method"])
    table = published_csv(reference.table)
    return table[table["task"] == task].reset_index(drop=True)


def _reference(task: str) -> PublishedReference | None:
    return TASKS.get(task).traits.get("published") if task in TASKS else None
