"""Task files: one TOML file per task. The built-in ones are the top-level ``tasks/`` folder of the repository,
installed as the package ``modbench_tasks``; more can be named in ``MODBENCH_PLUGINS`` (a path ending in
``.toml``) or registered by a plugin with :func:`register_task_file`. The file's name is the task's name::

    # what the task is and where it comes from (comments are the documentation)
    kind = "image_pairs"        # its implementation: a registered task kind (``modbench.tasks.configs``)
    summary = "MNIST MLP, clean <- corrupted pairs 8 <- 3 and 6 <- 5 (Nainani 2024)"   # for `modbench list`

    [config]                    # the kind's frozen config: data, model, pairs, metric, discoverer, floor
    pairs = [[8, 3], [6, 5]]
    steps_by_source = { mnist-5k = 10_000 }
    [config.train]              # a nested config is a table (the training budget)
    steps = 40_000

    [published]                 # optional: the published reference
    citation = "Nainani 2024, arXiv:2401.03646, Table 3"
    table = "nainani2024_table3.csv"   # optional: its rows (column task = this task) in modbench/published

Fields left out take the config's defaults. The file is read, converted by the fields' types and checked by
the config's own ``__post_init__`` when the task registry is first used; the model, discoverer, metric and
selection it names are looked up in their registries. A bad file is one line naming the file and the field.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from modbench.errors import UserError
from modbench.metrics import METRICS
from modbench.registries import DISCOVERERS, MODELS, SELECTIONS, TASK_KINDS, TASKS
from modbench.registry import PluginSpec, build_config, unknown

FILE_KEYS = ("kind", "summary", "config", "published")
NAMED = (("model", MODELS), ("discoverer", DISCOVERERS), ("metric", METRICS), ("selection", SELECTIONS))
TASK_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*")
BUILTIN_PACKAGE = "modbench_tasks"


@dataclass(frozen=True)
class PublishedReference:
    """Where a task's published numbers come from: a citation, and optionally a CSV of ``modbench/published``
    whose rows with ``task`` = the task's name are its published leaderboard rows."""

    citation: str
    table: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.citation, str) or not self.citation.strip():
            raise ValueError(f"citation must be a non-empty string, got {self.citation!r}")
        if self.table and not resources.files("modbench.published").joinpath(self.table).is_file():
            shipped = [f.name for f in resources.files("modbench.published").iterdir() if f.name.endswith(".csv")]
            raise ValueError(f"table {self.table!r} is not in modbench/published (shipped: {', '.join(sorted(shipped))})")


def builtin_task_files() -> list[Path]:
    """The ``*.toml`` files of the installed ``modbench_tasks`` package, by name."""
    try:
        folder = resources.files(BUILTIN_PACKAGE)
    except ModuleNotFoundError:
        raise UserError(f"the built-in task files (package {BUILTIN_PACKAGE}, the repository's tasks/ folder) are "
                        "not installed: reinstall modbench (pip install -e .)") from None
    return sorted((Path(str(f)) for f in folder.iterdir() if f.name.endswith(".toml")), key=lambda p: p.name)


def load_named_registries() -> None:
    """The registries a task file names entries of, loaded (with the outside plugins) before any file is read,
    so that a broken plugin is reported as itself, not as a field of a task file."""
    for registry in (TASK_KINDS, *(registry for _, registry in NAMED)):
        registry.keys()


def register_task_file(path: Path) -> None:
    """Read, check and register one task file; any mistake is a one-line ``UserError`` naming the file."""
    spec = read_task_file(path)
    try:
        TASKS.add(spec.key, spec)
    except UserError as error:
        raise UserError(f"{path}: {error}") from None


def read_task_file(path: Path) -> PluginSpec:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"task file {path} not found") from None
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(f"cannot read task file {path}: {error}") from None
    except tomllib.TOMLDecodeError as error:
        raise UserError(f"{path}: not valid TOML: {' '.join(str(error).split())}") from None
    try:
        return declaration(path.stem, data)
    except ValueError as error:
        raise UserError(f"{path}: {error}") from None


def declaration(key: str, data: dict[str, Any]) -> PluginSpec:
    """A parsed task file -> the task's registry entry; every mistake a ``ValueError`` naming the field."""
    if not TASK_NAME.fullmatch(key):
        raise ValueError(f"file name: a task's name (the file's name) must be lowercase letters, digits, _ and -, "
                         f"got {key!r}")
    for name in data:
        if name not in FILE_KEYS:
            raise ValueError(unknown("key", name, FILE_KEYS))
    for name in ("kind", "summary"):
        if name not in data:
            raise ValueError(f"missing key {name!r}")
        if not isinstance(data[name], str) or not data[name].strip():
            raise ValueError(f"{name} must be a non-empty string, got {data[name]!r}")
    try:
        kind = TASK_KINDS.get(data["kind"])
    except UserError as error:
        raise ValueError(f"kind: {error}") from None
    config = build_config(kind.config_type, _table(data, "config"), "config")
    for name, registry in NAMED:
        if hasattr(config, name):
            try:
                registry.get(getattr(config, name))
            except UserError as error:
                raise ValueError(f"config.{name}: {error}") from None
    traits = dict(kind.traits)
    if "published" in data:
        traits["published"] = build_config(PublishedReference, _table(data, "published"), "published")
    return PluginSpec(key, config, kind.factory, data["summary"], traits)


def _table(data: dict[str, Any], name: str) -> dict[str, Any]:
    table = data.get(name, {})
    if not isinstance(table, dict):
        raise ValueError(f"{name} must be a table ([{name}]), got {table!r}")
    return table
