"""Several trained models of one architecture run as one, along a leading model axis.

Discovery and circuit scoring call the model's own methods (``run_with_cache``, ``patch_each``, hooks), not
just ``forward``; :meth:`ModelPack.map` runs any such function once for all P models: ``torch.vmap`` over the
stacked parameters and buffers, each swapped into the first model by ``torch.func.functional_call`` for the
duration of the call. Small models then fill the hardware together instead of one launch-bound pass each.
A pack of one calls the function directly, so one-model results are exactly those of an unpacked call.

What a function must allow to be mapped (``torch.vmap``'s rules): no ``torch.autograd`` inside (use
``torch.func`` transforms), no data-dependent Python control flow, no random ops, no ``.item()``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call
from torch.utils._pytree import tree_map


class _Calls(nn.Module):
    """``functional_call`` swaps tensors for the duration of a forward: this forward calls any function of
    the wrapped model, so every method of it sees the swapped tensors."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, fn: Callable[[nn.Module], Any]) -> Any:
        return fn(self.model)


def _state(model: nn.Module) -> dict[str, Tensor]:
    return {**dict(model.named_parameters()), **dict(model.named_buffers())}


class ModelPack:
    """P models of one architecture (same parameter and buffer names, shapes and dtypes; else ValueError)."""

    def __init__(self, models: Sequence[nn.Module]) -> None:
        if not models:
            raise ValueError("a pack needs at least one model")
        self.models = list(models)
        states = [_state(model) for model in self.models]
        layout = {name: (t.shape, t.dtype, t.device) for name, t in states[0].items()}
        for index, state in enumerate(states[1:], start=1):
            theirs = {name: (t.shape, t.dtype, t.device) for name, t in state.items()}
            if theirs != layout or type(self.models[index]) is not type(self.models[0]):
                raise ValueError(f"model {index} of the pack differs in architecture from model 0")
        self.stacked = ({f"model.{name}": torch.stack([state[name].detach() for state in states])
                         for name in layout} if len(self.models) > 1 else {})
        self._calls = _Calls(self.models[0])

    def __len__(self) -> int:
        return len(self.models)

    def map(self, fn: Callable[..., Any], *shared: Any, each: tuple[Any, ...] = ()) -> Any:
        """``fn(model, *shared, *mine)`` for every model, results stacked along a new leading model axis.

        ``shared`` arguments are the same for every model; ``each`` holds pytrees of tensors with a leading
        model axis, model p getting slice p of each (``mine``). ``fn`` returns a pytree of tensors (a Python
        value it needs to pass out goes through a closure: it runs once for the whole pack)."""
        if len(self.models) == 1:
            mine = tree_map(lambda t: t[0], each)
            return tree_map(lambda t: t[None], fn(self.models[0], *shared, *mine))

        def one(state: dict[str, Tensor], *mine: Any) -> Any:
            return functional_call(self._calls, state, (lambda model: fn(model, *shared, *mine),))

        return torch.vmap(one)(self.stacked, *each)
