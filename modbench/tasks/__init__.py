"""Tasks: contrastive (clean, corrupted) pair sets on a dataset and a model architecture.

Declarations live in the repository's ``tasks/`` folder, one file each (installed as
``modbench.builtin_tasks``); outside packages register through the ``modbench.tasks`` entry point group
or ``MODBENCH_PLUGINS``.
"""

from modbench.tasks.base import TASKS, ContrastivePairs, PairTask, register_task

__all__ = ["TASKS", "ContrastivePairs", "PairTask", "register_task"]
