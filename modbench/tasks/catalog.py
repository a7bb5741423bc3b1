"""The built-in tasks (each file registers one)."""

from modbench.tasks import cifar10_per_class, circle_detection, line_detection, mnist_per_class  # noqa: F401
