"""Tasks: each owns its data, loss read-out, contrastive pairs, evaluation and quality floor.

Declarations (frozen configs, no torch) live here one file per task (``circle_detection.py``, ...) and are
listed in ``catalog.py``; implementations (``image_pairs.py``) are imported when a task is built.
"""

from modbench.registries import TASKS, register_task

__all__ = ["TASKS", "register_task"]
