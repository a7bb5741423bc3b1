"""The registries, one per kind of plugin. This module imports no torch: declaring and listing plugins is
cheap, implementations are imported when a plugin is built (``"module:attr"`` factories).

Each registry's built-in declarations are imported on its first lookup. Built-in tasks are files (the
top-level ``tasks/`` folder, ``modbench.tasks.declarations``), each naming a registered task kind.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from modbench.registry import PluginSpec, Registry, plugin_decorator

METHODS: Registry[PluginSpec] = Registry("method", builtins=("modbench.methods.catalog",))
MODELS: Registry[PluginSpec] = Registry("model", builtins=("modbench.models.catalog",))
TASKS: Registry[PluginSpec] = Registry("task", builtins=("modbench.tasks.catalog",))
DISCOVERERS: Registry[PluginSpec] = Registry("discoverer", builtins=("modbench.discovery.catalog",
                                                                     "modbench.discovery.edge_catalog"))
SELECTIONS: Registry[PluginSpec] = Registry("selection", builtins=("modbench.discovery.catalog",))
INTERVENTIONS: Registry[PluginSpec] = Registry("intervention", builtins=("modbench.discovery.catalog",))

PLUGIN_KINDS: dict[str, Registry[PluginSpec]] = {
    "methods": METHODS, "models": MODELS, "tasks": TASKS, "discoverers": DISCOVERERS,
    "selections": SELECTIONS, "interventions": INTERVENTIONS,
}


def _register(registry: Registry[PluginSpec]) -> Callable[..., Callable[[Any], Any]]:
    def register(key: str, config: Any, summary: str = "", factory: str | Callable[..., Any] | None = None,
                 **traits: Any) -> Callable[[Any], Any]:
        """Register ``factory(config) -> plugin`` under ``key``: as a class/function decorator, or at once
        with ``factory="package.module:attr"`` (imported only when the plugin is built)."""
        decorator = plugin_decorator(registry, key, config, summary, **traits)
        if factory is not None:
            decorator(factory)
        return decorator

    return register


register_method = _register(METHODS)
register_model = _register(MODELS)
register_task = _register(TASKS)
register_discoverer = _register(DISCOVERERS)
register_selection = _register(SELECTIONS)
register_intervention = _register(INTERVENTIONS)


@dataclass(frozen=True)
class TaskKind:
    """What a task file's ``kind`` names: the frozen config type its ``[config]`` table fills, the
    ``factory(config) -> task`` (``"module:attr"``, imported when a task is built) and traits every task of
    the kind shares (e.g. ``reads="classes"``)."""

    key: str
    config_type: type
    factory: str | Callable[[Any], Any]
    traits: dict[str, Any] = field(default_factory=dict)


TASK_KINDS: Registry[TaskKind] = Registry("task kind", builtins=("modbench.tasks.configs",))


def register_task_kind(key: str, factory: str | Callable[[Any], Any], **traits: Any) -> Callable[[type], type]:
    """Class decorator on a task config type: task files name it as ``kind = "key"``."""

    def decorator(config_type: type) -> type:
        TASK_KINDS.add(key, TaskKind(key, config_type, factory, traits))
        return config_type

    return decorator
