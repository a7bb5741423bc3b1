"""Imports every built-in plugin module so that it registers itself (called by ``load_plugins``)."""

import importlib
import pkgutil

import modbench.builtin_tasks
import modbench.discovery.activation_patching  # noqa: F401
import modbench.methods.regimes  # noqa: F401
import modbench.models.mlp  # noqa: F401

# Every file in the repository's tasks/ folder declares one task.
for _module in pkgutil.iter_modules(modbench.builtin_tasks.__path__):
    importlib.import_module(f"modbench.builtin_tasks.{_module.name}")
