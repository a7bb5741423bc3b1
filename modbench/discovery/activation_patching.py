"""Recursive activation patching (Nainani 2024, eqs. 1-2).

For every hidden neuron i of every layer j, run the corrupted input with neuron i's activation replaced by
its clean value and score LogitDifference_ij = ||L_patched - L_clean||_2 (full logit vectors), per pair.
The circuit is chosen afterwards: the K lowest-scoring neurons per layer.

Batched: all neurons of a layer x a chunk of pairs go through one forward pass, which starts at the
patched layer from cached corrupted pre-activations (the layers before it are not recomputed).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from modbench.discovery.base import NeuronScores, register_discoverer
from modbench.discovery.patching import diagonal_patch
from modbench.metrics import logit_difference
from modbench.tasks.base import ContrastivePairs


@dataclass(frozen=True)
class ActivationPatchingConfig:
    max_rows: int = 1 << 16  # rows per batched forward pass; bounds memory

    def __post_init__(self) -> None:
        if self.max_rows < 1:
            raise ValueError(f"max_rows must be >= 1, got {self.max_rows}")


def _caches(model: nn.Module, pairs: ContrastivePairs):
    pre_names, post_names = model.hidden_hook_names("pre"), model.hidden_hook_names("post")
    clean_logits, clean = model.run_with_cache(pairs.clean, names_filter=post_names)
    _, corrupted = model.run_with_cache(pairs.corrupted, names_filter=pre_names)
    return pre_names, post_names, clean_logits, clean, corrupted


@register_discoverer("activation_patching", ActivationPatchingConfig(), "Nainani's recursive activation patching")
class ActivationPatching:
    def __init__(self, config: ActivationPatchingConfig) -> None:
        self.config = config

    @torch.no_grad()
    def score(self, model: nn.Module, pairs: ContrastivePairs) -> NeuronScores:
        pre_names, post_names, clean_logits, clean, corrupted = _caches(model, pairs)
        scores = {}
        for layer, (pre, post) in enumerate(zip(pre_names, post_names, strict=True)):
            clean_post, corrupted_pre = clean[post], corrupted[pre]
            n = clean_post.shape[1]
            chunk = max(1, self.config.max_rows // n)
            parts = []
            for start in range(0, len(pairs), chunk):
                rows = slice(start, start + chunk)
                with model.hooks(fwd_hooks=[(post, diagonal_patch(clean_post[rows]))]):
                    logits = model.run_from(layer, corrupted_pre[rows].repeat_interleave(n, dim=0))
                parts.append(logit_difference(logits.view(-1, n, logits.shape[-1]), clean_logits[rows, None]))
            scores[post] = torch.cat(parts)
        return NeuronScores(scores, lower_is_better=True)


@torch.no_grad()
def score_per_sample(model: nn.Module, pairs: ContrastivePairs) -> NeuronScores:
    """Reference implementation: one full forward pass per neuron per pair (tests and benchmarks only)."""
    _, post_names, clean_logits, clean, _ = _caches(model, pairs)
    scores = {}
    for post in post_names:
        n = clean[post].shape[1]
        table = torch.empty(len(pairs), n, device=clean_logits.device, dtype=clean_logits.dtype)
        for p in range(len(pairs)):
            for i in range(n):

                def patch(activation, hook, p=p, i=i, post=post):
                    activation[:, i] = clean[post][p, i]
                    return activation

                logits = model.run_with_hooks(pairs.corrupted[p : p + 1], fwd_hooks=[(post, patch)])
                table[p, i] = logit_difference(logits[0], clean_logits[p])
        scores[post] = table
    return NeuronScores(scores, lower_is_better=True)
