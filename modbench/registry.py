"""One small generic registry, used for every kind of plugin (methods, models, tasks, discoverers).

Registration is by decorator; duplicate keys are rejected; unknown keys are answered with the known
ones and the closest match. Outside packages register through Python entry points
(groups ``modbench.<kind>s``) or the ``MODBENCH_PLUGINS`` variable, without editing modbench.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata
import importlib.util
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from modbench.errors import UserError

T = TypeVar("T")


class UnknownKeyError(UserError, KeyError):
    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class Registry(Generic[T]):
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, key: str) -> Callable[[T], T]:
        def decorator(obj: T) -> T:
            self.add(key, obj)
            return obj

        return decorator

    def add(self, key: str, obj: T) -> None:
        if not key or key != key.strip():
            raise ValueError(f"invalid {self.kind} key {key!r}")
        if key in self._entries:
            raise ValueError(f"{self.kind} {key!r} is already registered")
        self._entries[key] = obj

    def get(self, key: str) -> T:
        load_plugins()
        if key in self._entries:
            return self._entries[key]
        known = sorted(self._entries)
        close = difflib.get_close_matches(key, known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise UnknownKeyError(f"unknown {self.kind} {key!r}{hint} (known: {', '.join(known)})")

    def keys(self) -> list[str]:
        load_plugins()
        return sorted(self._entries)

    def __contains__(self, key: object) -> bool:
        load_plugins()
        return key in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def __len__(self) -> int:
        return len(self.keys())


@dataclass(frozen=True)
class PluginSpec:
    """A registered plugin: its default (frozen, validated) config and ``factory(config) -> plugin``."""

    key: str
    config: Any
    factory: Callable[[Any], Any]
    summary: str

    def build(self, config: Any | None = None) -> Any:
        return self.factory(self.config if config is None else config)


def plugin_decorator(registry: Registry[PluginSpec], key: str, config: Any, summary: str = "") -> Callable:
    """Decorator registering ``factory`` (a class or function taking the config) under ``key``."""

    def decorator(factory: Any) -> Any:
        registry.add(key, PluginSpec(key, config, factory, summary or (factory.__doc__ or "").strip()))
        return factory

    return decorator


ENTRY_POINT_GROUPS = ("modbench.methods", "modbench.models", "modbench.tasks", "modbench.discoverers")
_loaded = False


def load_plugins() -> None:
    """Import built-in plugins, then entry points and ``MODBENCH_PLUGINS`` (once per process)."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    import modbench.builtin  # noqa: F401  (registers the built-in plugins)

    for group in ENTRY_POINT_GROUPS:
        for entry_point in importlib.metadata.entry_points(group=group):
            entry_point.load()
    for spec in filter(None, os.environ.get("MODBENCH_PLUGINS", "").split(os.pathsep)):
        import_plugin(spec)


def import_plugin(spec: str) -> None:
    """Import a plugin given as a module name or a path to a ``.py`` file."""
    if spec.endswith(".py"):
        path = Path(spec)
        if not path.is_file():
            raise UserError(f"plugin file not found: {spec}")
        name = f"modbench_plugin_{path.stem}"
        if name in sys.modules:
            return
        module_spec = importlib.util.spec_from_file_location(name, path)
        assert module_spec is not None and module_spec.loader is not None
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = module
        module_spec.loader.exec_module(module)
    else:
        try:
            importlib.import_module(spec)
        except ModuleNotFoundError as error:
            raise UserError(f"plugin module not found: {spec} ({error})") from None
