"""The built-in task declarations, one TOML file per task (installed as the package ``modbench_tasks``; the
format is described in ``modbench/tasks/declarations.py``). Adding a task of an existing kind is adding a file."""
