"""Sweep files: parsed and checked (types, then names through the registries) into a frozen
:class:`SweepSpec`, expanded into one :class:`RunSpec` per run. The schema is in ``modbench/sweeps/__init__.py``.

Nothing here imports torch: a malformed file is reported before anything heavy is loaded.
"""

from __future__ import annotations

import difflib
import json
import math
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modbench.errors import UserError

LIST_KEYS = ("methods", "tasks", "discoverers", "seeds")
INT_KEYS = {"steps": 1, "boots": 2, "pairs": 1, "pair_seed": 0, "boot_seed": 0, "top_k": 1}  # key: minimum
STR_KEYS = ("model", "ablation")
TABLE_KEYS = ("method_overrides", "discoverer_overrides")
KNOWN_KEYS = (*LIST_KEYS, *INT_KEYS, *STR_KEYS, *TABLE_KEYS)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_names(key: str, values: Any, kind: type) -> tuple[Any, ...]:
    """A non-empty list of distinct values of ``kind`` (str or int)."""
    what = "names" if kind is str else "integers"
    if not isinstance(values, list):
        raise ValueError(f"{key} must be a list of {what}, got {type(values).__name__} {values!r}")
    if not values:
        raise ValueError(f"{key} must not be empty")
    for value in values:
        if not (isinstance(value, str) and value if kind is str else _is_int(value)):
            raise ValueError(f"{key} must be a list of {what}, got {value!r}")
    duplicates = sorted({repr(v) for v in values if values.count(v) > 1})
    if duplicates:
        raise ValueError(f"{key} lists {', '.join(duplicates)} more than once")
    return tuple(values)


def _assignments(table: str, owner: str, values: Any) -> tuple[str, ...]:
    """A TOML table of config fields -> ``KEY=VALUE`` strings for ``pipeline.override`` (values as JSON, which
    it parses back and checks against each field's type)."""
    if not isinstance(values, dict):
        raise ValueError(f"{table}.{owner} must be a table of config fields, got {values!r}")
    out = []
    for key, value in values.items():
        if isinstance(value, dict) or not isinstance(value, str | int | float | bool | list):
            raise ValueError(f"{table}.{owner}.{key} must be a number, true/false, a string or a list, got {value!r}")
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{table}.{owner}.{key} must be finite, got {value!r}")
        out.append(f"{key}={json.dumps(value)}")
    return tuple(out)


@dataclass(frozen=True)
class SweepSpec:
    """A checked sweep file. ``discoverers`` empty = each task's default; ``*_overrides`` map a method
    (discoverer) name to ``KEY=VALUE`` assignments for ``pipeline.override``."""

    methods: tuple[str, ...]
    tasks: tuple[str, ...]
    seeds: tuple[int, ...] = (1,)
    discoverers: tuple[str, ...] = ()
    model: str | None = None
    steps: int | None = None
    boots: int = 50
    pairs: int = 500
    pair_seed: int = 0
    boot_seed: int = 0
    top_k: int | None = None
    ablation: str = "mean"
    method_overrides: tuple[tuple[str, tuple[str, ...]], ...] = ()
    discoverer_overrides: tuple[tuple[str, tuple[str, ...]], ...] = ()

    def __post_init__(self) -> None:
        for key in ("methods", "tasks", "seeds"):
            if not getattr(self, key):
                raise ValueError(f"{key} must not be empty")
        for key in ("methods", "tasks", "discoverers"):
            if not all(isinstance(name, str) and name for name in getattr(self, key)):
                raise ValueError(f"{key} must be names, got {list(getattr(self, key))}")
        if not all(_is_int(seed) for seed in self.seeds):
            raise ValueError(f"seeds must be integers, got {list(self.seeds)}")
        if any(seed < 0 for seed in self.seeds):
            raise ValueError(f"seeds must be >= 0, got {list(self.seeds)}")
        for key, minimum in INT_KEYS.items():
            value = getattr(self, key)
            if value is not None and (not _is_int(value) or value < minimum):
                raise ValueError(f"{key} must be an integer >= {minimum}, got {value!r}")
        for owner, _ in self.method_overrides:
            if owner not in self.methods:
                raise ValueError(f"method_overrides.{owner}: {owner!r} is not in methods {list(self.methods)}")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SweepSpec:
        """From a parsed TOML document; unknown keys and wrong types are ``ValueError``s naming the key."""
        unknown = [key for key in data if key not in KNOWN_KEYS]
        if unknown:
            close = difflib.get_close_matches(unknown[0], KNOWN_KEYS, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"unknown key {unknown[0]!r}{hint} (known: {', '.join(KNOWN_KEYS)})")
        for key in ("methods", "tasks"):
            if key not in data:
                raise ValueError(f"missing key {key!r} (a list of names)")
        values: dict[str, Any] = {}
        for key in LIST_KEYS:
            if key in data:
                values[key] = _check_names(key, data[key], int if key == "seeds" else str)
        for key in INT_KEYS:
            if key in data:  # range checked in __post_init__, the type here so the message names TOML's
                if not _is_int(data[key]):
                    raise ValueError(f"{key} must be an integer, got {data[key]!r}")
                values[key] = data[key]
        for key in STR_KEYS:
            if key in data:
                if not isinstance(data[key], str) or not data[key]:
                    raise ValueError(f"{key} must be a name, got {data[key]!r}")
                values[key] = data[key]
        for key in TABLE_KEYS:
            table = data.get(key, {})
            if not isinstance(table, dict):
                raise ValueError(f"{key} must be a table of tables ([{key}.NAME]), got {table!r}")
            values[key] = tuple((owner, _assignments(key, owner, fields_))
                                for owner, fields_ in table.items())
        return cls(**values)

    def runs(self) -> list[RunSpec]:
        """Methods x tasks x discoverers x seeds, in that nesting order (the order runs are started and listed);
        no discoverers = each task's default, named here so that its overrides apply."""
        from modbench.registries import TASKS

        method_sets, discoverer_sets = dict(self.method_overrides), dict(self.discoverer_overrides)
        shared = {key: getattr(self, key) for key in ("model", "steps", "boots", "pairs", "pair_seed", "boot_seed",
                                                      "top_k", "ablation")}
        found = {task: self.discoverers or (TASKS.get(task).config.discoverer,) for task in self.tasks}
        return [RunSpec(method=method, task=task, discoverer=discoverer, seed=seed,
                        method_set=method_sets.get(method, ()), discoverer_set=discoverer_sets.get(discoverer, ()),
                        **shared)
                for method in self.methods for task in self.tasks for discoverer in found[task] for seed in self.seeds]


@dataclass(frozen=True)
class RunSpec:
    """One run of a sweep, in plain values only, so that it pickles to any worker (a Ray node, a spawned
    process) and is turned into an :class:`~modbench.experiment.ExperimentSpec` there, after the worker has
    loaded its plugins."""

    method: str
    task: str
    discoverer: str
    seed: int
    model: str | None
    steps: int | None
    boots: int
    pairs: int
    pair_seed: int
    boot_seed: int
    top_k: int | None
    ablation: str
    method_set: tuple[str, ...] = ()
    discoverer_set: tuple[str, ...] = ()

    def experiment(self) -> Any:
        """The resolved ExperimentSpec, built by the function that builds ``modbench run``'s from the same flags
        (so a row of either is recognised by the other). Bad names or values -> one-line UserError."""
        from modbench.experiment import experiment_spec
        from modbench.registries import DISCOVERERS, METHODS

        method_config = _overridden("method_overrides", self.method, METHODS.get(self.method).config,
                                    self.method_set)
        discoverer_config = _overridden("discoverer_overrides", self.discoverer,
                                        DISCOVERERS.get(self.discoverer).config, self.discoverer_set)
        return experiment_spec(self.task, self.method, method_config, self.discoverer, discoverer_config,
                               model=self.model, seed=self.seed, steps=self.steps, boots=self.boots,
                               pairs=self.pairs, pair_seed=self.pair_seed, boot_seed=self.boot_seed,
                               top_k=self.top_k, ablation=self.ablation)

    def label(self) -> str:
        return f"{self.method} on {self.task} ({self.discoverer}, seed {self.seed})"


def _overridden(table: str, owner: str, config: Any, assignments: tuple[str, ...]) -> Any:
    from modbench.pipeline import override

    try:
        return override(config, list(assignments))
    except UserError as error:
        raise UserError(f"{table}.{owner}: {error}") from None


def load_sweep(path: Path) -> SweepSpec:
    """Read and check a sweep file: bad TOML, unknown keys, wrong types, empty lists -> one-line UserError
    naming the file. Names are checked later, against the registries, by :func:`check_names`."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"sweep file {path} not found") from None
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(f"cannot read sweep file {path}: {error}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise UserError(f"{path}: not valid TOML: {' '.join(str(error).split())}") from None
    try:
        return SweepSpec.from_dict(data)
    except (ValueError, TypeError) as error:
        raise UserError(f"{path}: {error}") from None


def check_names(sweep: SweepSpec, path: Path | str) -> None:
    """Every method, task, discoverer and model name against its registry (did-you-mean errors), and every
    override table against a name the sweep uses."""
    from modbench.registries import DISCOVERERS, INTERVENTIONS, METHODS, MODELS, TASKS

    try:
        for registry, names in ((METHODS, sweep.methods), (TASKS, sweep.tasks), (DISCOVERERS, sweep.discoverers),
                                (MODELS, (sweep.model,) if sweep.model else ()),
                                (INTERVENTIONS, (sweep.ablation,))):
            for name in names:
                registry.get(name)
        used = set(sweep.discoverers) or {TASKS.get(task).config.discoverer for task in sweep.tasks}
        for owner, _ in sweep.discoverer_overrides:
            if owner not in used:
                raise UserError(f"discoverer_overrides.{owner}: {owner!r} is not a discoverer of this sweep "
                                f"({', '.join(sorted(used))})")
    except UserError as error:
        raise UserError(f"{path}: {error}") from None
