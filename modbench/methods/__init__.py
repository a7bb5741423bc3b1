"""Training methods (modularity regimes), registered by name. Each entry is a :class:`MethodSpec`."""

from modbench.methods.base import METHODS, Method, MethodBase, MethodSpec, register_method

__all__ = ["METHODS", "Method", "MethodBase", "MethodSpec", "register_method"]
