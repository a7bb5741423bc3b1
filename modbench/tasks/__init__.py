"""Tasks: each owns its data, loss read-out, contrastive pairs, evaluation and quality floor.

A task is one TOML file in the repository's top-level ``tasks/`` folder (format: ``declarations.py``) naming
its kind: a frozen config type registered with its implementation (``configs.py``; implementations such as
``image_pairs.py`` are imported when a task is built).
"""

from modbench.registries import TASK_KINDS, TASKS, register_task, register_task_kind

__all__ = ["TASKS", "TASK_KINDS", "register_task", "register_task_kind"]
