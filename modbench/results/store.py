"""Run records in SQLite (standard library).

Each record is one row written in one transaction, so concurrent ``modbench run`` processes lose no
row (SQLite serialises writers; we wait up to 60 s for the lock) and a killed run leaves either the
whole row or nothing. The record is stored as JSON beside a few indexed key columns.
"""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    task TEXT NOT NULL,
    method TEXT NOT NULL,
    discoverer TEXT NOT NULL,
    dataset TEXT NOT NULL,
    record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS records_task ON records (task);
"""


class ResultStore:
    def __init__(self, path: Path) -> None:
        self.path = path

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(self.path, timeout=60)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.executescript(SCHEMA)
        return connection

    def append(self, record: dict[str, Any]) -> int:
        row = (record["task"], record["method"], record["discoverer"], record["dataset"], json.dumps(record))
        with closing(self._connect()) as connection, connection:
            cursor = connection.execute(
                "INSERT INTO records (task, method, discoverer, dataset, record) VALUES (?, ?, ?, ?, ?)", row
            )
            return int(cursor.lastrowid)

    def records(self, task: str | None = None) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        query, args = "SELECT id, created, record FROM records", ()
        if task is not None:
            query, args = query + " WHERE task = ?", (task,)
        with closing(self._connect()) as connection:
            rows = connection.execute(query + " ORDER BY id", args).fetchall()
        return [{"id": row_id, "created": created, **json.loads(text)} for row_id, created, text in rows]
