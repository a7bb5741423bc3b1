"""Pretrained TransformerLens models (GPT-2, Pythia, ...) as :class:`ModularTransformer`, and their tokenizers.

The weights are fetched through TransformerLens (Hugging Face or its local cache) and loaded without
processing: LayerNorm stays unfolded and no weight is centred, so the MLP matrices are exactly the released
ones (Golechha et al. cluster and fine-tune those), every parameter trains as in a Hugging Face fine-tune,
and the wiring sees plain LN scales and shifts in the residual group. Without network or cache, building
the model or its tokenizer is a one-line :class:`UserError`.
"""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from jaxtyping import Int
from torch import Tensor
from transformer_lens import HookedTransformerConfig

from modbench.errors import UserError, one_line
from modbench.models.catalog import PretrainedConfig
from modbench.models.transformer import ModularTransformer

HINT = "connect to Hugging Face once, or point HF_HOME at a cache that holds it"


def _reason(error: BaseException) -> str:
    return one_line(error, 200, first_sentence=True)  # Hugging Face's messages run on for paragraphs


@contextmanager
def _hub_access() -> Iterator[None]:
    """Hugging Face's retry warnings silenced (a failure is reported in one line), and no network at all
    when ``MODBENCH_OFFLINE`` is set (only the local cache)."""
    from huggingface_hub import constants

    loggers = [logging.getLogger(name) for name in ("huggingface_hub", "transformers")]
    levels, offline = [logger.level for logger in loggers], constants.HF_HUB_OFFLINE
    try:
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        constants.HF_HUB_OFFLINE = offline or bool(os.environ.get("MODBENCH_OFFLINE"))
        yield
    finally:
        constants.HF_HUB_OFFLINE = offline
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def fetch_pretrained(name: str) -> tuple[HookedTransformerConfig, dict[str, Tensor]]:
    """TransformerLens's config and converted state dict of ``name`` (downloads on first use)."""
    from transformer_lens import loading_from_pretrained as loading

    try:
        official = loading.get_official_model_name(name)
    except ValueError:
        raise UserError(f"TransformerLens has no pretrained model named {name!r}") from None
    try:  # the Hugging Face stack raises many kinds of errors offline (OSError, HTTP client errors, ...)
        with _hub_access():
            cfg = loading.get_pretrained_model_config(official, device="cpu", fold_ln=False)
            state = loading.get_pretrained_state_dict(official, cfg)
    except Exception as error:  # noqa: BLE001
        raise UserError(f"could not fetch the pretrained weights of {name} from Hugging Face ({_reason(error)}); "
                        f"{HINT}") from None
    return cfg, state


def from_pretrained_weights(cfg: HookedTransformerConfig, state_dict: dict[str, Tensor]) -> ModularTransformer:
    """A ModularTransformer of ``cfg`` holding ``state_dict`` (TransformerLens names), unprocessed. The
    model carries no tokenizer (``tokenizer_name`` cleared): the task loads it, see :func:`load_tokenizer`."""
    cfg = copy.copy(cfg)
    cfg.tokenizer_name = None
    cfg.device = "cpu"
    model = ModularTransformer(cfg)
    # A copy of the dict: TransformerLens pops the keys it loads.
    model.load_and_process_state_dict(dict(state_dict), fold_ln=False, center_writing_weights=False,
                                      center_unembed=False, fold_value_biases=False,
                                      refactor_factored_attn_matrices=False)
    return model


def build_pretrained(config: PretrainedConfig) -> ModularTransformer:
    """The registered factory: fetch, then load through :func:`from_pretrained_weights`."""
    return from_pretrained_weights(*fetch_pretrained(config.name))


class HFTokenizer:
    """A Hugging Face tokenizer over WikiText lines: each line with its newline, no special tokens."""

    def __init__(self, name: str, tokenizer: object) -> None:
        self.name, self._tokenizer = name, tokenizer

    def __len__(self) -> int:
        return len(self._tokenizer)

    def encode(self, lines: list[str]) -> Int[Tensor, " tokens"]:
        with _hub_access():  # no "sequence longer than the model's maximum" warnings: we cut windows ourselves
            rows = self._tokenizer([line + "\n" for line in lines], add_special_tokens=False)["input_ids"]
        return torch.tensor([token for row in rows for token in row], dtype=torch.long)


def load_tokenizer(name: str) -> HFTokenizer:
    try:
        from transformers import AutoTokenizer

        with _hub_access():
            return HFTokenizer(name, AutoTokenizer.from_pretrained(name))
    except Exception as error:  # noqa: BLE001  (offline: OSError or an HTTP client error)
        raise UserError(f"could not fetch the tokenizer of {name} from Hugging Face ({_reason(error)}); "
                        f"{HINT}") from None
