"""``modbench list methods|models|tasks|discoverers``: straight from the registries."""

from __future__ import annotations

import dataclasses

import typer

from modbench.cli.app import app
from modbench.errors import UserError


def registries() -> dict:
    from modbench.discovery import DISCOVERERS
    from modbench.methods import METHODS
    from modbench.models import MODELS
    from modbench.tasks import TASKS

    return {"methods": METHODS, "models": MODELS, "tasks": TASKS, "discoverers": DISCOVERERS}


def _describe(entry) -> str:
    """Summary, then the default config's fields (a task is its own config)."""
    config = getattr(entry, "config", entry)
    summary = getattr(entry, "summary", "")
    if not dataclasses.is_dataclass(config):
        return summary
    fields = ", ".join(
        f"{f.name}={getattr(config, f.name)!r}" for f in dataclasses.fields(config) if f.name != "summary"
    )
    return f"{summary}\n      {fields}"


@app.command("list")
def list_plugins(kind: str = typer.Argument(..., help="methods, models, tasks or discoverers")) -> None:
    """List registered plugins of one kind, with their default configs."""
    known = registries()
    if kind not in known:
        raise UserError(f"unknown kind {kind!r} (known: {', '.join(known)})")
    registry = known[kind]
    for key in registry.keys():
        typer.echo(f"{key:16s} {_describe(registry.get(key))}")
