"""The built-in tasks (each file registers one)."""

from modbench.tasks import (  # noqa: F401
    cifar10_per_class,
    circle_detection,
    line_detection,
    mnist_per_class,
    modular_addition,
    wiki_tokens,
)
