"""Training methods (modularity regimes). Declarations are in ``catalog``; ``MethodBase`` in ``base``."""

from typing import Any

from modbench.registries import METHODS, register_method

__all__ = ["METHODS", "Method", "MethodBase", "register_method"]


def __getattr__(name: str) -> Any:  # the protocol pulls in torch: import it only when asked for
    if name in ("Method", "MethodBase"):
        from modbench.methods import base

        return getattr(base, name)
    raise AttributeError(name)
