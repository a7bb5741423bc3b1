"""Run records in SQLite (standard library).

Each record is one row written in one transaction, so concurrent runs lose no row (SQLite serialises
writers; we wait up to 60 s for the lock) and a killed run leaves either the whole row or nothing. The
record is stored as JSON beside a few indexed key columns.
"""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from dataclasses import replace
from pathlib import Path

from modbench.errors import UserError
from modbench.results.record import ResultRecord

SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    task TEXT NOT NULL,
    method TEXT NOT NULL,
    discoverer TEXT NOT NULL,
    dataset TEXT NOT NULL,
    cell TEXT NOT NULL,
    config_hash TEXT NOT NULL,
    status TEXT NOT NULL,
    record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS results_task ON results (task);
CREATE INDEX IF NOT EXISTS results_config ON results (config_hash);
"""


class ResultStore:
    def __init__(self, path: Path) -> None:
        self.path = path

    def _connect(self) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            connection = sqlite3.connect(self.path, timeout=60)
            connection.execute("PRAGMA journal_mode=WAL")
            connection.executescript(SCHEMA)
        except (sqlite3.Error, OSError) as error:
            raise UserError(f"cannot use results database {self.path}: {error}") from None
        return connection

    def check_writable(self) -> None:
        """Fail early (before any training) when the database cannot be opened for writing."""
        if self.path.is_dir():
            raise UserError(f"results path {self.path} is a directory")
        with closing(self._connect()):
            pass

    def append(self, record: ResultRecord) -> ResultRecord:
        payload = record.to_dict()
        payload.pop("id"), payload.pop("created")
        row = (record.task, record.method, record.discoverer, record.dataset, record.cell, record.config_hash,
               record.status, json.dumps(payload))
        with closing(self._connect()) as connection, connection:
            cursor = connection.execute(
                "INSERT INTO results (task, method, discoverer, dataset, cell, config_hash, status, record) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", row)
            return replace(record, id=int(cursor.lastrowid or 0))

    def records(self, task: str | None = None, must_exist: bool = False) -> list[ResultRecord]:
        if not self.path.exists():
            if must_exist:
                raise UserError(f"results database {self.path} does not exist")
            return []
        query, args = "SELECT id, created, record FROM results", ()
        if task is not None:
            query, args = query + " WHERE task = ?", (task,)
        with closing(self._connect()) as connection:
            rows = connection.execute(query + " ORDER BY id", args).fetchall()
        return [ResultRecord.from_dict(json.loads(text) | {"id": row_id, "created": created})
                for row_id, created, text in rows]

    def has(self, config_hash: str) -> bool:
        if not self.path.exists():
            return False
        with closing(self._connect()) as connection:
            return connection.execute("SELECT 1 FROM results WHERE config_hash = ? AND status = 'ok' LIMIT 1",
                                      (config_hash,)).fetchone() is not None
