"""One small generic registry, used for every kind of plugin (methods, models, tasks, discoverers, ...).

Registration is by decorator or ``add``; duplicate keys are rejected; unknown keys are answered with the
known ones and the closest match. A plugin is a :class:`PluginSpec`: a frozen, validated default config
plus a factory, which may be given as ``"module:attr"`` so that declaring (and listing) a plugin imports
no torch; the implementation is imported when the plugin is built.

Built-in declarations are imported lazily, on a registry's first lookup (``builtins`` module names), so
``import modbench.registry`` imports no plugin. Outside packages register through the entry-point group
``modbench.<kind>s`` or the ``MODBENCH_PLUGINS`` variable, without editing modbench.

Plugin configs check their fields in ``__post_init__`` with :func:`check_int`, :func:`check_number` and
:func:`check_flag` (every message starts with the field's name); :func:`coerce` and :func:`build_config` turn
plain values (``--set`` JSON, TOML tables) into configs at the edge.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib
import importlib.metadata
import importlib.util
import math
import os
import sys
import types
import typing
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import MISSING, dataclass, field, fields, is_dataclass
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
        raise UnknownKeyError(unknown(self.kind, key, self._entries))

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


def unknown(kind: str, key: str, known: Iterable[str]) -> str:
    """``unknown kind 'key'; did you mean 'closest'? (known: ...)``."""
    names = sorted(known)
    close = difflib.get_close_matches(key, names, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"unknown {kind} {key!r}{hint} (known: {', '.join(names)})"


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
    for spec in plugin_specs():
        if not spec.endswith(".toml"):  # task files: read by the task registry after its own (tasks.catalog)
            import_plugin(spec)


def plugin_specs() -> list[str]:
    """The entries of ``MODBENCH_PLUGINS``: module names, ``.py`` files and task files (``.toml``)."""
    return [spec for spec in os.environ.get("MODBENCH_PLUGINS", "").split(os.pathsep) if spec]


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


# ----------------------------------------------------------------------------------------------------------
# Plugin configs: field checks for ``__post_init__`` and plain values -> configs (the edge)
# ----------------------------------------------------------------------------------------------------------


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_int(config: object, name: str, minimum: int, maximum: int | None = None) -> None:
    """``config.<name>`` is an integer (not a bool) in ``minimum..maximum`` (no maximum when None)."""
    value = getattr(config, name)
    if not _is_int(value) or value < minimum or (maximum is not None and value > maximum):
        bound = f">= {minimum}" if maximum is None else f"in {minimum}..{maximum}"
        raise ValueError(f"{name} must be an integer {bound}, got {value!r}")


def check_number(config: object, name: str, low: int | float | None = None, high: int | float | None = None, *,
                 low_open: bool = False, high_open: bool = False) -> None:
    """``config.<name>`` is a finite real number (not a bool) within ``low``..``high`` (either may be None;
    the ends are included unless ``*_open``)."""
    value = getattr(config, name)
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if ok:
        return
    if low is not None and high is not None:
        wanted = f"a number in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    elif low is not None:
        wanted = f"a finite number {'>' if low_open else '>='} {low:g}"
    elif high is not None:
        wanted = f"a finite number {'<' if high_open else '<='} {high:g}"
    else:
        wanted = "a finite number"
    raise ValueError(f"{name} must be {wanted}, got {value!r}")


def check_flag(config: object, name: str) -> None:
    if not isinstance(getattr(config, name), bool):
        raise ValueError(f"{name} must be true or false, got {getattr(config, name)!r}")


def coerce(value: Any, hint: Any, name: str) -> Any:
    """A plain value (parsed JSON or TOML) as the annotation ``hint`` wants it: bool, int, float (finite),
    str, ``X | None``, tuples (from lists, element by element; ``tuple[tuple[K, V], ...]`` also from a table)
    and frozen configs (from tables, :func:`build_config`). A wrong type is a ``ValueError`` starting with
    ``name``; ranges are the config's own ``__post_init__``'s."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is bool or hint is int:
        if isinstance(value, bool) is (hint is bool) and isinstance(value, int):
            return value
        raise ValueError(f"{name} must be {'true or false' if hint is bool else 'an integer'}, got {value!r}")
    if hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if hint is str:
        return value if isinstance(value, str) else str(value)
    if origin in (typing.Union, types.UnionType):
        rest = [a for a in args if a is not type(None)]
        if value is None and len(rest) < len(args):
            return None
        return coerce(value, rest[0], name) if len(rest) == 1 else value
    if origin is tuple:
        if isinstance(value, dict) and args[1:] == (Ellipsis,):
            value = [list(item) for item in value.items()]
        if not isinstance(value, list):
            return value
        kinds = [args[0]] * len(value) if args[1:] == (Ellipsis,) else list(args)
        if len(kinds) != len(value):
            raise ValueError(f"{name} must be a list of {len(kinds)} values, got {value!r}")
        return tuple(coerce(v, kind, f"{name}[{i}]") for i, (v, kind) in enumerate(zip(value, kinds, strict=True)))
    if isinstance(hint, type) and is_dataclass(hint) and isinstance(value, dict):
        return build_config(hint, value, name)
    return value


def build_config(config_type: type, values: Mapping[str, Any], name: str) -> Any:
    """``config_type(**values)`` from a table of plain values: unknown and missing fields refused, values
    converted by :func:`coerce`, then the config's own ``__post_init__`` checks. Every error is a
    ``ValueError`` naming the field as ``name.field``."""
    init = {f.name: f for f in fields(config_type) if f.init}
    for key in values:
        if key not in init:
            raise ValueError(f"{name}: {unknown('field', key, init)}")
    for key, spec in init.items():
        if key not in values and spec.default is MISSING and spec.default_factory is MISSING:
            raise ValueError(f"{name}: missing field {key!r}")
    hints = typing.get_type_hints(config_type)
    converted = {key: coerce(value, hints.get(key), f"{name}.{key}") for key, value in values.items()}
    try:
        return config_type(**converted)
    except (ValueError, TypeError) as error:
        message = " ".join(str(error).split())
        named = any(message.startswith(f"{key} ") for key in init)  # the house style: messages start with it
        raise ValueError(f"{name}.{message}" if named else f"{name}: {message}") from None
