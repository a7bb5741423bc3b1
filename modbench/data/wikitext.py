"""WikiText-2 (v1, tokenized; Merity et al. 2016): the three ``wiki.{train,valid,test}.tokens`` files of
``wikitext-2-v1.zip``, read from ``<data dir>/wikitext-2/`` (also accepted under the names ``train.txt``,
``valid.txt``, ``test.txt``), SHA-1-checked, downloaded when absent and online.

Every line is one paragraph, already split on whitespace, rare words replaced by ``<unk>``. A line becomes its
tokens followed by ``<eos>`` (empty lines too), as in the usual word-level language-model set-up, which gives
the published split sizes (valid 217,646 tokens, test 245,569).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import zipfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import torch
from jaxtyping import Int
from torch import Tensor

from modbench.errors import UserError
from modbench.files import atomic_write, fetch_checked, file_digest
from modbench.paths import default_data_dir

FOLDER = "wikitext-2"
SPLITS = ("train", "valid", "test")
UNK, EOS = "<unk>", "<eos>"
# SHA-1 of the extracted files, as listed by gluonnlp (dmlc/gluon-nlp, gluonnlp/data/language_model.py,
# WikiText2); valid and test match the copies on this project's machines byte for byte.
FILE_SHA1 = {
    "train": "863f29c46ef9d167fff4940ec821195882fe29d1",
    "valid": "0418625c8b4da6e4b5c7a0b9e78d4ae8f7ee5422",
    "test": "c7b8ce0aa086fb34dab808c5c49224211eb2b172",
}
URL = "https://s3.amazonaws.com/research.metamind.io/wikitext/wikitext-2-v1.zip"
# SHA-256 of the archive, as pinned independently by JuliaText/CorpusLoaders.jl (DataDeps registration) and
# other projects; torchtext pins its MD5, 542ccefacc6c27f945fb54453812b3cd.
ARCHIVE_SHA256 = "92675f1d63015c1c8b51f1656a52d5bdbc33aafa60cc47a218a66e7ee817488c"


@dataclass(frozen=True)
class WikiText:
    """The splits as lists of lines (each without its newline); ``train`` is None when its file is absent."""

    folder: Path
    train: list[str] | None
    valid: list[str] | None
    test: list[str]


def sha1sum(path: Path) -> str:
    return file_digest(path, "sha1")


def split_path(folder: Path, split: str) -> Path | None:
    """The split's file under its standard name or its short alias; None when neither exists."""
    for name in (f"wiki.{split}.tokens", f"{split}.txt"):
        if (folder / name).is_file():
            return folder / name
    return None


def _read_lines(path: Path, split: str) -> list[str]:
    if sha1sum(path) != FILE_SHA1[split]:
        raise UserError(f"{path} is not WikiText-2 v1's {split} split (wrong SHA-1 checksum); delete it to re-download")
    text = path.read_text(encoding="utf-8")
    lines = text.split("\n")  # not splitlines(): Wikipedia text holds other Unicode line separators
    return lines[:-1] if lines and lines[-1] == "" else lines


def _usable(folder: Path) -> bool:
    """Test plus a split to train on (train, else valid)."""
    return split_path(folder, "test") is not None and any(split_path(folder, s) for s in ("train", "valid"))


def _missing_message(folder: Path) -> str:
    return (f"WikiText-2 not found in {folder}: put wiki.train.tokens, wiki.valid.tokens and wiki.test.tokens "
            f"there (the folder {FOLDER} of {URL}, extracted; valid and test suffice)")


def download_wikitext(folder: Path, url: str | None = None) -> bool:
    """Fetch the archive (SHA-256-checked, into an anonymous temporary file) and write the three split files
    into ``folder`` (each SHA-1-checked, written atomically). False when the download fails. Only members
    named exactly ``wikitext-2/wiki.<split>.tokens`` are read, under names of our own."""
    url = URL if url is None else url
    wanted = {f"{FOLDER}/wiki.{split}.tokens": split for split in SPLITS}
    with tempfile.TemporaryFile() as archive:
        try:
            fetch_checked(url, archive, "sha256", ARCHIVE_SHA256)
        except (OSError, ValueError):  # offline, refused, a malformed URL, or not the archive
            return False
        written = set()
        try:
            with zipfile.ZipFile(archive) as zipped:
                for member in zipped.infolist():
                    split = wanted.get(member.filename)
                    if split is None or member.is_dir():
                        continue
                    payload = zipped.read(member)
                    if hashlib.sha1(payload).hexdigest() != FILE_SHA1[split]:
                        raise UserError(f"{member.filename} in {url} has the wrong SHA-1 checksum")
                    atomic_write(folder / f"wiki.{split}.tokens", lambda handle, data=payload: handle.write(data))
                    written.add(split)
        except (zipfile.BadZipFile, OSError):
            return False
    return written == set(SPLITS)


def load_wikitext(data_dir: Path | None = None, allow_download: bool | None = None) -> WikiText:
    """The splits found in ``<data_dir>/wikitext-2`` (default data dir if None), downloaded when test or
    both of train and valid are missing; a present file with a wrong SHA-1 is an error. ``allow_download``
    defaults to true unless ``MODBENCH_OFFLINE`` is set. There is no fallback copy: missing data is a
    :class:`UserError` saying where to put the files."""
    folder = (data_dir or default_data_dir()) / FOLDER
    if allow_download is None:
        allow_download = not os.environ.get("MODBENCH_OFFLINE")
    if not _usable(folder):
        if not allow_download:
            raise UserError(f"{_missing_message(folder)} (downloading is off: MODBENCH_OFFLINE is set)")
        if not download_wikitext(folder):
            raise UserError(f"{_missing_message(folder)} (the download failed)")
    splits = {split: (path and _read_lines(path, split)) for split in SPLITS
              for path in [split_path(folder, split)]}
    return WikiText(folder, splits["train"], splits["valid"], splits["test"])


def words(lines: list[str]) -> list[str]:
    """Whitespace tokens of every line, each line closed by ``<eos>``."""
    return [token for line in lines for token in (*line.split(), EOS)]


class WordTokenizer:
    """Word-level vocabulary of one training text: ``<unk>`` (id 0) and the ``vocab_size - 1`` most frequent
    other words, ties broken by the word itself (code-point order), so the same text gives the same ids.
    Words outside it map to ``<unk>``."""

    def __init__(self, train_words: list[str], vocab_size: int) -> None:
        if vocab_size < 2:
            raise ValueError(f"vocab_size must be >= 2, got {vocab_size}")
        counts = Counter(train_words)
        counts.pop(UNK, None)
        ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[: vocab_size - 1]
        self.vocab = [UNK, *(word for word, _ in ranked)]
        self.ids = {word: index for index, word in enumerate(self.vocab)}
        self.name = f"word{vocab_size}"

    def __len__(self) -> int:
        return len(self.vocab)

    def encode_words(self, tokens: list[str]) -> Int[Tensor, " tokens"]:
        return torch.tensor([self.ids.get(token, 0) for token in tokens], dtype=torch.long)

    def encode(self, lines: list[str]) -> Int[Tensor, " tokens"]:
        return self.encode_words(words(lines))

    def decode(self, ids: Int[Tensor, " tokens"]) -> list[str]:
        return [self.vocab[i] for i in ids.tolist()]


def windows(ids: Int[Tensor, " tokens"], n_ctx: int) -> tuple[Int[Tensor, "n n_ctx"], Int[Tensor, "n n_ctx"]]:
    """The stream cut into windows of ``n_ctx + 1`` tokens, each starting where the previous one's inputs end
    (stride ``n_ctx``, one shared boundary token), so every token but the first is a target exactly once;
    an incomplete tail is dropped. x = window[:-1], y = window[1:]."""
    n = (len(ids) - 1) // n_ctx
    if n < 1:
        raise UserError(f"the text has {len(ids)} tokens, fewer than one window of {n_ctx + 1}")
    starts = torch.arange(n)[:, None] * n_ctx
    window = ids[starts + torch.arange(n_ctx + 1)]
    return window[:, :-1].contiguous(), window[:, 1:].contiguous()


def unigram_perplexity(train_ids: Int[Tensor, " a"], test_ids: Int[Tensor, " b"], vocab_size: int) -> float:
    """exp(mean CE) of add-one-smoothed training unigram frequencies on the test stream (the baseline a
    language model must beat)."""
    counts = torch.bincount(train_ids, minlength=vocab_size).double() + 1
    log_p = (counts / counts.sum()).log()
    return float((-log_p[test_ids]).mean().exp())

