"""Model architectures, registered by name. Each entry is a :class:`ModelSpec`."""

from modbench.models.base import MODELS, ModelSpec, NeuronLayer, WiredLinear, register_model

__all__ = ["MODELS", "ModelSpec", "NeuronLayer", "WiredLinear", "register_model"]
