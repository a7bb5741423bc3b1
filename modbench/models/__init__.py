"""Model architectures. Declarations (configs) are in ``catalog``; the protocol is in ``base``."""

from modbench.registries import MODELS, register_model

__all__ = ["MODELS", "register_model"]
