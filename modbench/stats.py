"""Bootstrap: resample indices as one tensor, and mean with a 95 % percentile interval."""

from __future__ import annotations

import torch
from jaxtyping import Float, Int
from torch import Tensor


def resample_indices(n_items: int, n_boots: int, per_boot: int, seed: int) -> Int[Tensor, "boots per_boot"]:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(n_items, (n_boots, per_boot), generator=generator)


def summarize(values: Float[Tensor, " boots"]) -> dict[str, float]:
    """Mean over resamples and the 2.5/97.5 percentiles; ``ci`` is the interval's half-width."""
    values = values.double().flatten()
    low, high = torch.quantile(values, torch.tensor([0.025, 0.975], dtype=values.dtype)).tolist()
    return {"mean": float(values.mean()), "ci_low": low, "ci_high": high, "ci": (high - low) / 2}
