"""Modular addition, the implementation (declared in ``modular_addition.py``; Nanda et al. 2023, Golechha et
al. 2025 section 4): inputs [a, b, =] with = the token p, answer (a + b) mod p read at the last position, on a
1-layer HookedTransformer.

Contrastive pairs: each test example (a, b) against (a, b') with b' drawn uniformly from the other p - 1
values (seeded): the same first operand, another answer. The task's metric, ``logit_margin``, is the
correct logit minus the mean of the other logits (what the modular-addition literature calls the logit
difference when there are p answers rather than two).
"""

from __future__ import annotations

from pathlib import Path

import torch
from jaxtyping import Float, Int
from torch import Tensor, nn

from modbench.data.dataset import TaskData
from modbench.tasks.base import ContrastivePairs
from modbench.tasks.configs import ModularAdditionConfig


def modular_addition_data(config: ModularAdditionConfig) -> TaskData:
    p = config.p
    a, b = torch.cartesian_prod(torch.arange(p), torch.arange(p)).T
    x = torch.stack([a, b, torch.full_like(a, p)], dim=1)
    y = (a + b) % p
    order = torch.randperm(p * p, generator=torch.Generator().manual_seed(config.split_seed))
    n_train = round(config.train_fraction * p * p)
    train, test = order[:n_train], order[n_train:]
    return TaskData(config.dataset, x[train], y[train], x[test], y[test],
                    note=f"all {p * p} pairs, {n_train} for training (split seed {config.split_seed})")


class ModularAdditionTask:
    def __init__(self, config: ModularAdditionConfig) -> None:
        self.config = config

    def load(self, data_dir: Path | None) -> TaskData:
        """Synthetic: ``data_dir`` is not used."""
        return modular_addition_data(self.config)

    def readout(self, output: Float[Tensor, "n pos vocab"]) -> Float[Tensor, "n vocab"]:
        return output[:, -1]

    def targets(self, y: Int[Tensor, " n"]) -> Int[Tensor, " n"]:
        return y

    def figures(self, model: nn.Module, stem: Path, title: str) -> list[Path]:
        """Task figures saved with a run: the token embedding in the Fourier basis."""
        from modbench.viz.weights import fourier_embedding_figure

        embedding = model.embed.W_E[: self.config.p]
        return [fourier_embedding_figure(embedding, stem.with_name(stem.name + "-fourier.png"), title)]

    def contrast(self, data: TaskData, seed: int) -> ContrastivePairs:
        p = self.config.p
        shift = torch.randint(1, p, (len(data.x_test),), generator=torch.Generator().manual_seed(seed))
        corrupted = data.x_test.clone()
        corrupted[:, 1] = (corrupted[:, 1] + shift) % p
        return ContrastivePairs(data.x_test, corrupted, data.y_test, (corrupted[:, 0] + corrupted[:, 1]) % p)
