"""A quiet progress bar (rich) that is updated only at evaluation points, to keep the loop cheap."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


@contextmanager
def progress_bar(total: int, enabled: bool) -> Iterator[Callable[[int, str], None]]:
    if not enabled:
        yield lambda completed, message: None
        return
    columns = (TextColumn("train"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
               TextColumn("{task.description}"), TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, transient=False) as progress:
        task = progress.add_task("", total=total)
        yield lambda completed, message: progress.update(task, completed=completed, description=message)
