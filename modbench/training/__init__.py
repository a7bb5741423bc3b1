"""The one training loop, its config, and the trained-model cache."""

from modbench.training.trainer import TrainConfig, TrainResult, train

__all__ = ["TrainConfig", "TrainResult", "train"]
