"""Per-example metric functions: pure functions of tensors, (logits, reference, labels) -> values."""

from __future__ import annotations

from jaxtyping import Float, Int
from torch import Tensor


def logit_difference(logits: Float[Tensor, "*b c"], reference: Float[Tensor, "*#b c"],
                     labels: Int[Tensor, "*#b"] | None = None) -> Float[Tensor, "*b"]:
    """Nainani's LogitDifference: the L2 norm of the gap between two full logit vectors."""
    return (logits - reference).norm(dim=-1)


def logit_margin(logits: Float[Tensor, "*b c"], reference: Float[Tensor, "*#b c"] | None,
                 labels: Int[Tensor, "*#b"]) -> Float[Tensor, "*b"]:
    """The correct answer's logit minus the mean of the other logits (the logit difference of a task with
    many answers, e.g. modular addition); ``reference`` is not used."""
    correct_logit = logits.gather(-1, labels.expand(logits.shape[:-1]).unsqueeze(-1)).squeeze(-1)
    mean_other = (logits.sum(-1) - correct_logit) / (logits.shape[-1] - 1)
    return correct_logit - mean_other


def kl_divergence(logits: Float[Tensor, "*b c"], reference: Float[Tensor, "*#b c"],
                  labels: Int[Tensor, "*#b"] | None = None) -> Float[Tensor, "*b"]:
    """KL(reference || logits) of the softmax distributions (how much the circuit loses of the model)."""
    ref = reference.log_softmax(-1)
    return (ref.exp() * (ref - logits.log_softmax(-1))).sum(-1)


def correct(logits: Float[Tensor, "*b c"], reference: Float[Tensor, "*#b c"] | None,
            labels: Int[Tensor, "*#b"]) -> Float[Tensor, "*b"]:
    return (logits.argmax(-1) == labels).float()
