"""Neuron coordinates as in BIMT (Liu, Gan, Tegmark 2023; code ``BioLinear2D``).

A layer of n = s*s neurons sits on an s x s grid in the unit square, index k at (col k % s, row k // s),
matching a row-major image flatten. The output layer sits on a ring of radius 1/4 around (1/2, 1/2).
Other sizes sit on a horizontal line. Layers are separated by y* in the implicit third dimension.
"""

from __future__ import annotations

import math

import torch
from jaxtyping import Float
from torch import Tensor


def grid_coords(side: int) -> Float[Tensor, "n 2"]:
    ticks = torch.linspace(1 / (2 * side), 1 - 1 / (2 * side), side)
    rows, cols = torch.meshgrid(ticks, ticks, indexing="ij")
    return torch.stack([cols.reshape(-1), rows.reshape(-1)], dim=1)


def ring_coords(n: int) -> Float[Tensor, "n 2"]:
    theta = (torch.arange(n, dtype=torch.float32) + 0.5) / n * 2 * math.pi
    return 0.5 + torch.stack([torch.cos(theta), torch.sin(theta)], dim=1) / 4


def line_coords(n: int) -> Float[Tensor, "n 2"]:
    xs = torch.linspace(1 / (2 * n), 1 - 1 / (2 * n), n)
    return torch.stack([xs, torch.full_like(xs, 0.5)], dim=1)


def layer_coords(n: int, is_output: bool) -> Float[Tensor, "n 2"]:
    if is_output:
        return ring_coords(n)
    side = math.isqrt(n)
    return grid_coords(side) if side * side == n else line_coords(n)


def l1_distance(out_coords: Float[Tensor, "o 2"], in_coords: Float[Tensor, "i 2"]) -> Float[Tensor, "o i"]:
    """In-plane L1 distance between every output and input neuron, shape (out, in) like a weight."""
    return (out_coords[:, None, :] - in_coords[None, :, :]).abs().sum(-1)
