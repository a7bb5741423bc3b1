"""The Method protocol: how a regime plugs into the one training loop.

A method adds loss terms (``regularizers``), may add exact penalty gradients itself (``after_backward``,
cheaper than autograd for simple penalties), may act after each optimizer step (``after_step``, e.g. BIMT
swaps), and reports numbers at evaluation points (``metrics``). It never owns the loop.

Two things the loop relies on: a method keeps no state of its own beyond what ``setup`` derives from the model
(a resumed training calls ``setup`` again and restores only weights, optimizer and batch order), and it acts
on the model only through its parameters and buffers, and on the optimizer only through ``state`` (a packed
training runs the forward on a shared template, so hooks a method would attach to its model are not seen, and
it hands ``after_step`` a per-model view of the pack's optimizer state).
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from torch import Tensor, nn

from modbench.models.base import OptimizerState



@runtime_checkable
class Method(Protocol):
    config: Any

    def setup(self, model: nn.Module, total_steps: int) -> None:
        """Check the model fits the method (raise ``UserError`` if not) and precompute state."""

    def regularizers(self, model: nn.Module, step: int) -> dict[str, Tensor]:
        """Extra loss terms at ``step`` (0-based), each already multiplied by its coefficient."""

    def after_backward(self, model: nn.Module, step: int) -> None:
        """Called after ``loss.backward()`` and before the optimizer step ``step`` (0-based)."""

    def after_step(self, model: nn.Module, step: int, optimizer: OptimizerState) -> dict[str, float]:
        """Called after optimizer step ``step`` (1-based). Returns numbers worth logging."""

    def metrics(self, model: nn.Module, step: int) -> dict[str, float]:
        """Numbers to log at an evaluation point (``step`` 1-based)."""


class MethodBase:
    """Convenience base: every hook does nothing."""

    def __init__(self, config: Any) -> None:
        self.config = config
        self.total_steps = 0

    def setup(self, model: nn.Module, total_steps: int) -> None:
        self.total_steps = total_steps

    def regularizers(self, model: nn.Module, step: int) -> dict[str, Tensor]:
        return {}

    def after_backward(self, model: nn.Module, step: int) -> None:
        return None

    def after_step(self, model: nn.Module, step: int, optimizer: OptimizerState) -> dict[str, float]:
        return {}

    def metrics(self, model: nn.Module, step: int) -> dict[str, float]:
        return {}
