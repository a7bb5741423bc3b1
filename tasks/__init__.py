"""Built-in task declarations, one file per task (installed as ``modbench.builtin_tasks``)."""
