"""The WikiText-2 next-token task (declared in ``wiki_tokens.py``).

Data: the training split (``wiki.train.tokens``; when it is absent, the valid split, said in the data note)
and the test split, tokenized and cut into windows of ``n_ctx + 1`` tokens (``data.wikitext.windows``);
x = window[:-1], y = window[1:], a target at every position. The tokenizer is the task's own word-level
vocabulary, or, when the task is bound to a model that declares one (a pretrained model's
``tokenizer``, see :meth:`WikiTokensTask.for_model`), that model's Hugging Face tokenizer.

Read-out: every position is an example, logits (windows * positions, vocab); per-class discoverers (ON/OFF
cluster interventions) read the test windows this way, Golechha et al.'s Appendix E/F analysis of
next-token predictions.

Contrastive pairs (for a pair read-out at the last position): each test window against the same window
with its last input token replaced by a token drawn (seeded) from the test split's unigram distribution,
never the original; both labelled with the corpus's next token. The replacement changes only the context
the last prediction is made from, with plausible words rather than uniform draws from the vocabulary's
long tail. Pair discoverers are refused on this task (registered ``reads="classes"``): they read one row
per input, and patching every candidate at every position into (pairs, positions, vocab) logits is beyond
a CPU budget.

Held-out perplexity (:meth:`WikiTokensTask.evaluate`): exp(mean CE over every test target), recorded as
the ``test_perplexity`` metric with a 95 % bootstrap interval over test windows.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor, nn

from modbench.data.dataset import TaskData
from modbench.data.wikitext import UNK, WordTokenizer, load_wikitext, unigram_perplexity, windows, words
from modbench.errors import UserError
from modbench.stats import resample_indices, summarize
from modbench.tasks.base import ContrastivePairs
from modbench.tasks.configs import WikiTokensConfig

PERPLEXITY_BOOTS = 1000
PERPLEXITY_SEED = 0


class WikiTokensTask:
    eval_batch_size = 64  # windows per evaluation forward: logits are (windows, n_ctx, vocab)

    def __init__(self, config: WikiTokensConfig) -> None:
        self.config = config

    def for_model(self, model_config: Any) -> WikiTokensTask:
        """This task as ``model_config`` needs it: with the model's own tokenizer and the fine-tuning budget
        when the model declares a tokenizer (a pretrained model), else the word vocabulary, which must fit
        the model's embedding and unembedding."""
        name = getattr(model_config, "tokenizer", "")
        if name:
            return WikiTokensTask(dataclasses.replace(self.config, tokenizer=name, train=self.config.finetune))
        if not hasattr(model_config, "d_vocab"):
            raise UserError(f"{type(model_config).__name__} is not a language model: wiki_tokens needs a transformer "
                            "(d_vocab) or a pretrained model")
        for field in ("d_vocab", "d_vocab_out"):
            size = getattr(model_config, field, None)
            if size is not None and size < self.config.vocab_size:
                raise UserError(f"the model's {field} is {size}, smaller than the task's {self.config.vocab_size}-word "
                                "vocabulary")
        return self

    def load(self, data_dir: Path | None) -> TaskData:
        wiki = load_wikitext(data_dir)
        train_lines = wiki.train if wiki.train is not None else wiki.valid
        if self.config.tokenizer:
            from modbench.models.pretrained import load_tokenizer

            tokenizer = load_tokenizer(self.config.tokenizer)
            train_ids = tokenizer.encode(train_lines)
        else:
            train_words = words(train_lines)  # split once: the vocabulary and the ids both read it
            tokenizer = WordTokenizer(train_words, self.config.vocab_size)
            train_ids = tokenizer.encode_words(train_words)
        test_ids = tokenizer.encode(wiki.test)
        x_train, y_train = windows(train_ids, self.config.n_ctx)
        x_test, y_test = windows(test_ids, self.config.n_ctx)
        if wiki.train is not None:
            source, split_note = "wikitext-2", "trained on the train split, evaluated on test"
        else:
            source = "wikitext-2-valid"
            split_note = f"trained on the VALID split (no wiki.train.tokens in {wiki.folder}), evaluated on test"
        unk = "" if self.config.tokenizer else f", {float((test_ids == 0).double().mean()):.1%} of test tokens {UNK}"
        baseline = unigram_perplexity(train_ids, test_ids, len(tokenizer))
        note = (f"{split_note}; {tokenizer.name} tokens ({len(tokenizer)} in the vocabulary{unk}); "
                f"{len(x_train)} training and {len(x_test)} test windows of {self.config.n_ctx}+1 tokens; "
                f"unigram test perplexity {baseline:.1f}")
        return TaskData(source, x_train, y_train, x_test, y_test, note=note)

    def readout(self, output: Float[Tensor, "n pos vocab"]) -> Float[Tensor, "rows vocab"]:
        return output.reshape(-1, output.shape[-1])

    def targets(self, y: Int[Tensor, "n pos"]) -> Int[Tensor, " rows"]:
        return y.reshape(-1)

    def contrast(self, data: TaskData, seed: int) -> ContrastivePairs:
        generator = torch.Generator().manual_seed(seed)
        clean = data.x_test
        last = clean[:, -1]
        frequencies = torch.bincount(data.y_test.flatten()).double()
        if int((frequencies > 0).sum()) < 2:
            raise UserError("the test split has fewer than two distinct tokens: no replacement exists")
        replacement = last.clone()
        same = torch.ones_like(last, dtype=torch.bool)
        while bool(same.any()):  # redraw the rows that drew their own token (rare, so few rounds)
            replacement[same] = torch.multinomial(frequencies, int(same.sum()), replacement=True,
                                                  generator=generator)
            same = replacement == last
        corrupted = clean.clone()
        corrupted[:, -1] = replacement
        labels = data.y_test[:, -1]
        return ContrastivePairs(clean, corrupted, labels, labels.clone())

    @torch.no_grad()
    def evaluate(self, model: nn.Module, data: TaskData) -> dict[str, dict[str, float]]:
        """``test_perplexity``: exp(mean CE over all test targets) and a 95 % percentile interval from
        resampling test windows (every window holds ``n_ctx`` targets, so window means average to it)."""
        per_window = window_cross_entropy(model, data.x_test, data.y_test, self.eval_batch_size)
        index = resample_indices(len(per_window), PERPLEXITY_BOOTS, len(per_window), PERPLEXITY_SEED)
        interval = summarize(per_window[index].mean(1).exp())
        return {"test_perplexity": interval | {"mean": float(per_window.mean().exp())}}  # mean: the whole test set


@torch.no_grad()
def window_cross_entropy(model: nn.Module, x: Int[Tensor, "n pos"], y: Int[Tensor, "n pos"],
                         batch_size: int) -> Float[Tensor, " n"]:
    """Mean next-token cross-entropy (nats) of each window, in float64."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    out = []
    for start in range(0, len(x), batch_size):
        logits = model(x[start : start + batch_size].to(device))
        targets = y[start : start + batch_size].to(device)
        ce = F.cross_entropy(logits.flatten(0, 1).double(), targets.flatten(), reduction="none")
        out.append(ce.view(len(targets), -1).mean(1).cpu())
    model.train(was_training)
    return torch.cat(out)
