"""Published figures shipped with modbench (``leaderboards/published``, installed as package data)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

PUBLISHED_DIR = Path(__file__).resolve().parent.parent / "published"
NAINANI_CITATION = "Nainani 2024, arXiv:2401.03646, Table 3"


def nainani_table3(task: str | None = None) -> pd.DataFrame:
    table = pd.read_csv(PUBLISHED_DIR / "nainani2024_table3.csv")
    return table if task is None else table[table["task"] == task].reset_index(drop=True)
