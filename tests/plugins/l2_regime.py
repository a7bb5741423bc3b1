"""Example: a new training regime registered from outside modbench (see README, "Adding a method")."""

from dataclasses import dataclass

import torch

from modbench.methods import MethodBase, register_method


@dataclass(frozen=True)
class L2Config:
    lam: float = 1e-4

    def __post_init__(self) -> None:
        if self.lam < 0:
            raise ValueError("lam must be >= 0")


@register_method("l2_example", L2Config(), "plain L2 weight penalty (example plugin)")
class L2Method(MethodBase):
    def regularizers(self, model: torch.nn.Module, step: int) -> dict[str, torch.Tensor]:
        squares = sum(p.pow(2).sum() for name, p in model.named_parameters() if name.endswith("weight"))
        return {"l2": self.config.lam * squares}
