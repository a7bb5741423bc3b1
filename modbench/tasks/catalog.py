"""The built-in tasks (each file registers one)."""

from modbench.tasks import circle_detection, line_detection, mnist_per_class  # noqa: F401
