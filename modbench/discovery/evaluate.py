"""Score circuits: run the model with only the circuit's hidden neurons kept, the rest ablated.

Ablation ``mean`` replaces a non-circuit neuron's post-activation by its mean over the task's images
(clean and corrupted); ``zero`` by 0. Logit difference is ||L_circuit(x_clean) - L_model(x_clean)||_2
(Nainani Table 3: "between original network and circuit discovered"); circuit accuracy is measured on
the clean and the corrupted images of each pair (Nainani's "3/8 set").
"""

from __future__ import annotations

from typing import Literal

import torch
from jaxtyping import Float, Int
from torch import Tensor, nn

from modbench.discovery.circuit import Circuits
from modbench.discovery.patching import keep_or_replace
from modbench.metrics import correct, logit_difference
from modbench.tasks.base import ContrastivePairs

Ablation = Literal["mean", "zero"]
ABLATIONS = ("mean", "zero")


@torch.no_grad()
def ablation_values(model: nn.Module, pairs: ContrastivePairs, ablation: Ablation) -> dict[str, Tensor]:
    names = model.hidden_hook_names("post")
    _, cache = model.run_with_cache(torch.cat([pairs.clean, pairs.corrupted]), names_filter=names)
    if ablation == "zero":
        return {name: torch.zeros_like(cache[name][0]) for name in names}
    return {name: cache[name].mean(0) for name in names}


@torch.no_grad()
def run_circuits(
    model: nn.Module, inputs: Float[Tensor, "rows d"], keep: dict[str, Tensor], values: dict[str, Tensor]
) -> Tensor:
    hooks = [(name, keep_or_replace(mask, values[name])) for name, mask in keep.items()]
    with model.hooks(fwd_hooks=hooks):
        return model(inputs)


@torch.no_grad()
def evaluate_circuits(
    model: nn.Module,
    pairs: ContrastivePairs,
    index: Int[Tensor, "boots m"],
    circuits: Circuits,
    values: dict[str, Tensor],
    max_rows: int = 1 << 16,
) -> dict[str, Float[Tensor, " boots"]]:
    """Per resample b: mean logit difference and circuit accuracy over the pairs ``index[b]``."""
    boots, m = index.shape
    full_logits = model(pairs.clean)
    per_chunk = max(1, max_rows // (2 * m))
    differences, accuracies = [], []
    for start in range(0, boots, per_chunk):
        chunk = index[start : start + per_chunk].reshape(-1)
        rows = len(chunk)
        keep = {name: mask[start : start + per_chunk].repeat_interleave(m, 0).repeat(2, 1)
                for name, mask in circuits.keep.items()}
        logits = run_circuits(model, torch.cat([pairs.clean[chunk], pairs.corrupted[chunk]]), keep, values)
        labels = torch.cat([pairs.clean_labels[chunk], pairs.corrupted_labels[chunk]])
        differences.append(logit_difference(logits[:rows], full_logits[chunk]).view(-1, m).mean(1))
        accuracies.append(correct(logits, labels).view(2, -1, m).mean((0, 2)))
    return {"logit_difference": torch.cat(differences), "circuit_accuracy": torch.cat(accuracies)}
