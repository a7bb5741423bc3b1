"""Recursive activation patching (Nainani 2024, eqs. 1-2), for every candidate site of any model.

For every candidate i of every site j (an MLP neuron, a conv channel, an attention head), run the corrupted
input with i's activation replaced by its clean value and score the task's metric against the clean run
(Nainani: LogitDifference_ij = ||L_patched - L_clean||_2 over full logit vectors), per pair. The circuit is
chosen afterwards by a selection (Nainani: the K lowest-scoring neurons per layer).

Batched: all candidates of a site x a chunk of pairs in one pass through ``model.patch_each``, which resumes
from a cached corrupted activation (layers below the site are not recomputed) and, where the model knows
an exact shortcut for a one-candidate change (the MLP's rank-1 update), uses it.
"""

from __future__ import annotations

import torch

from modbench.discovery.base import CandidateScores
from modbench.discovery.catalog import ActivationPatchingConfig
from modbench.metrics import METRICS
from modbench.models.base import ModelAdapter
from modbench.tasks.base import ContrastivePairs, Task


class ActivationPatching:
    def __init__(self, config: ActivationPatchingConfig) -> None:
        self.config = config

    @torch.no_grad()
    def score(self, model: ModelAdapter, task: Task, pairs: ContrastivePairs) -> CandidateScores:
        spec = METRICS.get(task.config.metric)
        metric = spec.function()
        sites = model.sites()
        needed = sorted({hook for site in sites for hook in model.patch_cache_hooks(site)})
        clean_out, clean = model.run_with_cache(pairs.clean, names_filter=[site.name for site in sites])
        _, corrupted = model.run_with_cache(pairs.corrupted, names_filter=needed)
        reference = task.readout(clean_out)
        labels = task.targets(pairs.clean_labels)
        scores = {}
        for site in sites:
            hooks = model.patch_cache_hooks(site)
            chunk = max(1, self.config.max_rows // site.size)
            parts = []
            for start in range(0, len(pairs), chunk):
                rows = slice(start, start + chunk)
                out = model.patch_each(site, clean[site.name][rows], {h: corrupted[h][rows] for h in hooks})
                logits = task.readout(out.flatten(0, 1))
                parts.append(metric(logits.view(out.shape[0], site.size, -1), reference[rows, None],
                                    labels[rows, None]))
            scores[site.name] = torch.cat(parts)
        return CandidateScores(scores, lower_is_better=not spec.higher_is_better)
