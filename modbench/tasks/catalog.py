"""The built-in tasks: one file each in the repository's top-level ``tasks/`` folder (installed as the package
``modbench_tasks``), then the task files named in ``MODBENCH_PLUGINS``; read and registered on the task
registry's first lookup (``declarations.py``)."""

from pathlib import Path

from modbench.registry import plugin_specs
from modbench.tasks.declarations import builtin_task_files, load_named_registries, register_task_file

load_named_registries()
for _path in [*builtin_task_files(), *(Path(spec) for spec in plugin_specs() if spec.endswith(".toml"))]:
    register_task_file(_path)
