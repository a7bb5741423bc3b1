"""``modbench list [KIND]``: straight from the registries (no torch is imported to answer)."""

from __future__ import annotations

import dataclasses

import typer

from modbench.cli.app import app
from modbench.errors import UserError
from modbench.registries import PLUGIN_KINDS
from modbench.registry import PluginSpec


def describe(entry: PluginSpec) -> str:
    """Summary, then the default config's fields."""
    config = entry.config
    if not dataclasses.is_dataclass(config):
        return entry.summary
    fields = ", ".join(f"{f.name}={getattr(config, f.name)!r}" for f in dataclasses.fields(config))
    return f"{entry.summary}\n      {fields}" if fields else entry.summary


@app.command("list")
def list_plugins(kind: str | None = typer.Argument(None, help=f"one of {', '.join(PLUGIN_KINDS)} [default: all]")) -> None:
    """List registered plugins with their default configs."""
    if kind is not None and kind not in PLUGIN_KINDS:
        raise UserError(f"unknown kind {kind!r} (known: {', '.join(PLUGIN_KINDS)})")
    for name in [kind] if kind else list(PLUGIN_KINDS):
        if kind is None:
            typer.echo(f"[{name}]")
        registry = PLUGIN_KINDS[name]
        for key in registry.keys():
            typer.echo(f"{key:20s} {describe(registry.get(key))}")
