"""Published figures shipped with modbench (``modbench/published``, package data; sources in SOURCES.md)."""

from __future__ import annotations

from importlib import resources

import pandas as pd

NAINANI_CITATION = "Nainani 2024, arXiv:2401.03646, Table 3"


def published_csv(name: str) -> pd.DataFrame:
    with resources.files("modbench.published").joinpath(name).open() as handle:
        return pd.read_csv(handle)


def nainani_table3(task: str | None = None) -> pd.DataFrame:
    table = published_csv("nainani2024_table3.csv")
    return table if task is None else table[table["task"] == task].reset_index(drop=True)
