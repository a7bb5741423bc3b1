"""One small generic registry, used for every kind of plugin (methods, models, tasks, discoverers, ...).

Registration is by decorator or ``add``; duplicate keys are rejected; unknown keys are answered with the
known ones and the closest match. A plugin is a :class:`PluginSpec`: a frozen, validated default config
plus a factory, which may be given as ``"module:attr"`` so that declaring (and listing) a plugin imports
no torch; the implementation is imported when the plugin is built.

Built-in declarations are imported lazily, on a registry's first lookup (``builtins`` module names), so
``import modbench.registry`` imports no plugin. Outside packages register through the entry-point group
``modbench.<kind>s`` or the ``MODBENCH_PLUGINS`` variable, without editing modbench.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib
import importlib.metadata
import importlib.util
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from modbench.errors import UserError

T = TypeVar("T")


class UnknownKeyError(UserError, KeyError):
    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class Registry(Generic[T]):
    """``kind`` names the plugins (``"method"``); ``builtins`` are modules declaring the built-in ones."""

    def __init__(self, kind: str, builtins: tuple[str, ...] = ()) -> None:
        self.kind = kind
        self.builtins = builtins
        self._entries: dict[str, T] = {}
        self._loading = False
        self._loaded = False

    def register(self, key: str) -> Callable[[T], T]:
        def decorator(obj: T) -> T:
            self.add(key, obj)
            return obj

        return decorator

    def add(self, key: str, obj: T) -> None:
        if not key or key != key.strip():
            raise ValueError(f"invalid {self.kind} key {key!r}")
        if key in self._entries:
            raise UserError(f"{self.kind} {key!r} is already registered")
        self._entries[key] = obj

    def _load(self) -> None:
        if self._loaded or self._loading:
            return
        self._loading = True
        try:
            for module in self.builtins:
                importlib.import_module(module)
            load_outside_plugins()
            self._loaded = True
        finally:
            self._loading = False

    def get(self, key: str) -> T:
        self._load()
        if key in self._entries:
            return self._entries[key]
        known = sorted(self._entries)
        close = difflib.get_close_matches(key, known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise UnknownKeyError(f"unknown {self.kind} {key!r}{hint} (known: {', '.join(known)})")

    def keys(self) -> list[str]:
        self._load()
        return sorted(self._entries)

    def __contains__(self, key: object) -> bool:
        self._load()
        return key in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def __len__(self) -> int:
        return len(self.keys())


def resolve(target: str | Callable[..., Any]) -> Callable[..., Any]:
    """``"package.module:attr"`` -> the attribute (imported now); a callable is returned as it is."""
    if not isinstance(target, str):
        return target
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


@dataclass(frozen=True)
class PluginSpec:
    """A registered plugin: its default (frozen, validated) config and ``factory(config) -> plugin``.

    ``traits`` carries declared facts a consumer may need without building the plugin (for example a
    discoverer's ``cost_depends_on_weights``).
    """

    key: str
    config: Any
    factory: str | Callable[[Any], Any]
    summary: str
    traits: dict[str, Any] = field(default_factory=dict)

    def build(self, config: Any | None = None) -> Any:
        return resolve(self.factory)(self.config if config is None else config)


def plugin_decorator(registry: Registry[PluginSpec], key: str, config: Any, summary: str = "",
                     **traits: Any) -> Callable[[Any], Any]:
    """Decorator registering ``factory`` (a class or function taking the config) under ``key``."""

    def decorator(factory: Any) -> Any:
        doc = "" if isinstance(factory, str) else (factory.__doc__ or "").strip()
        registry.add(key, PluginSpec(key, config, factory, summary or doc, traits))
        return factory

    return decorator


ENTRY_POINT_GROUPS = ("modbench.methods", "modbench.models", "modbench.tasks", "modbench.discoverers")
_outside_loaded = False


def load_outside_plugins() -> None:
    """Entry points and ``MODBENCH_PLUGINS`` (once per process). A plugin that fails to import is a
    one-line user error naming it."""
    global _outside_loaded
    if _outside_loaded:
        return
    _outside_loaded = True
    for group in ENTRY_POINT_GROUPS:
        for entry_point in importlib.metadata.entry_points(group=group):
            _guarded(entry_point.value, entry_point.load)
    for spec in filter(None, os.environ.get("MODBENCH_PLUGINS", "").split(os.pathsep)):
        import_plugin(spec)


def _guarded(name: str, load: Callable[[], Any]) -> None:
    try:
        load()
    except UserError as error:
        raise UserError(f"plugin {name}: {error}") from None
    except Exception as error:  # a broken plugin must not print a traceback at the user
        raise UserError(f"plugin {name} failed to import: {type(error).__name__}: {error}") from None


def import_plugin(spec: str) -> None:
    """Import a plugin given as a module name or a path to a ``.py`` file."""
    if spec.endswith(".py"):
        path = Path(spec).resolve()
        if not path.is_file():
            raise UserError(f"plugin file not found: {spec}")
        # Named after the full path, so two files called plugin.py in different folders both load.
        name = f"modbench_plugin_{path.stem}_{hashlib.sha1(str(path).encode()).hexdigest()[:8]}"
        if name in sys.modules:
            return
        module_spec = importlib.util.spec_from_file_location(name, path)
        assert module_spec is not None and module_spec.loader is not None
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = module

        def load() -> None:
            try:
                module_spec.loader.exec_module(module)  # type: ignore[union-attr]
            except BaseException:
                sys.modules.pop(name, None)
                raise

        _guarded(spec, load)
    else:
        if importlib.util.find_spec(spec.split(".")[0]) is None:
            raise UserError(f"plugin module not found: {spec}")
        _guarded(spec, lambda: importlib.import_module(spec))
