"""CIFAR-10: the six python-pickle batches of ``cifar-10-python.tar.gz`` (MD5-checked), read from
``<data dir>/cifar-10-batches-py/`` (the layout torchvision uses too), downloaded when absent and online.

Each batch is a pickled dict with ``b"data"``, a uint8 array (N, 3072) whose rows hold the red, green and
blue 32x32 planes one after the other (row-major), and ``b"labels"``, a list of N ints in 0..9.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import tarfile
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from modbench.data.dataset import TaskData
from modbench.data.mnist import md5sum
from modbench.errors import UserError
from modbench.files import atomic_write, fetch_checked
from modbench.paths import default_data_dir

FOLDER = "cifar-10-batches-py"
TRAIN_BATCHES = ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5")
TEST_BATCH = "test_batch"
# Canonical MD5s of the six batch files and of the tarball, as listed by torchvision's CIFAR10 dataset
# class (pytorch/vision, torchvision/datasets/cifar.py: train_list, test_list, tgz_md5).
CIFAR10_FILES = {
    "data_batch_1": "c99cafc152244af753f735de768cd75f",
    "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
    "test_batch": "40351d587109b95175f43aff81a1287e",
}
ARCHIVE = "cifar-10-python.tar.gz"
ARCHIVE_MD5 = "c58f30108f718f92721af3b95e74349a"
URL = "https://www.cs.toronto.edu/~kriz/" + ARCHIVE
IMAGE_SHAPE = (3, 32, 32)

# Globals a batch pickle may name: numpy's array and dtype reconstruction (python 2 and 3 pickles, numpy 1
# and 2 module paths) and _codecs.encode (bytes in a python 3 protocol-2 pickle). Anything else
# (os.system, ...) is refused, as a second line of defence behind the MD5.
_ALLOWED_GLOBALS = {
    *((f"numpy{core}.multiarray", name) for core in (".core", "._core") for name in ("_reconstruct", "scalar")),
    *((f"numpy{core}.numeric", "_frombuffer") for core in (".core", "._core")),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
}


class _BatchUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"unexpected global {module}.{name} in a CIFAR-10 batch")
        return super().find_class(module, name)


def _missing_message(folder: Path) -> str:
    return (
        f"CIFAR-10 not found in {folder}: put {', '.join(CIFAR10_FILES)} there "
        f"(the folder {FOLDER} of {URL}, extracted)"
    )


def _check_present(folder: Path) -> list[str]:
    """Names of the missing files; a present file with a wrong MD5 is an error."""
    missing = []
    for name, expected in CIFAR10_FILES.items():
        path = folder / name
        if not path.is_file():
            missing.append(name)
        elif md5sum(path) != expected:
            raise UserError(f"{path} has the wrong MD5 checksum; delete it to re-download")
    return missing


def download_cifar10(folder: Path, url: str | None = None) -> bool:
    """Fetch the tarball (MD5-checked, into an anonymous temporary file) and extract the six batches into
    ``folder`` (each MD5-checked, written atomically). False when the download fails. ``url`` defaults to
    the module's ``URL``.

    Safe extraction: only regular members named exactly ``cifar-10-batches-py/<batch>`` are read, through
    ``extractfile`` (never ``extractall``), and written under names of our own; others are ignored.
    """
    url = URL if url is None else url
    wanted = {f"{FOLDER}/{name}": name for name in CIFAR10_FILES}
    with tempfile.TemporaryFile() as archive:
        try:
            fetch_checked(url, archive, "md5", ARCHIVE_MD5)
        except (OSError, ValueError):  # ValueError: a malformed URL
            return False
        written = set()
        try:
            with tarfile.open(fileobj=archive, mode="r:gz") as tar:
                for member in tar:
                    name = wanted.get(member.name)
                    if name is None or not member.isfile():
                        continue
                    source = tar.extractfile(member)
                    payload = source.read() if source is not None else b""
                    if hashlib.md5(payload).hexdigest() != CIFAR10_FILES[name]:
                        raise UserError(f"{name} in {url} has the wrong MD5 checksum")
                    atomic_write(folder / name, lambda handle, payload=payload: handle.write(payload))
                    written.add(name)
        except (tarfile.TarError, EOFError, OSError):
            return False
    return written == set(CIFAR10_FILES)


def read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(images (N, 3, 32, 32) uint8, labels (N,) int64) of one batch file.

    Only call this on a file whose MD5 matched ``CIFAR10_FILES``: unpickling runs code named by the file.
    The canonical batches are plain dicts of bytes, lists and numpy arrays, so ``encoding="bytes"`` (keys
    stay bytes, as in the python 2 originals) and a restricted unpickler (numpy globals only) suffice.
    """
    try:
        with path.open("rb") as handle:
            entry = _BatchUnpickler(handle, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as error:
        raise UserError(f"{path} is not a CIFAR-10 batch: {error}") from None
    if not isinstance(entry, dict) or b"data" not in entry or b"labels" not in entry:
        raise UserError(f"{path} is not a CIFAR-10 batch (no b'data'/b'labels')")
    data, labels = np.asarray(entry[b"data"]), np.asarray(entry[b"labels"])
    size = int(np.prod(IMAGE_SHAPE))
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != size or labels.shape != (len(data),):
        raise UserError(f"{path}: expected uint8 data (N, {size}) and N labels, "
                        f"got {data.dtype} {data.shape} and {labels.shape}")
    if len(labels) and (labels.min() < 0 or labels.max() > 9):
        raise UserError(f"{path}: labels outside 0..9")
    return data.reshape(len(data), *IMAGE_SHAPE), labels.astype(np.int64)


def _to_tensors(batches: list[tuple[np.ndarray, np.ndarray]]) -> tuple[torch.Tensor, torch.Tensor]:
    images = np.concatenate([images for images, _ in batches])
    labels = np.concatenate([labels for _, labels in batches])
    return torch.from_numpy(images.astype(np.float32) / 255.0), torch.from_numpy(labels)


def load_cifar10(data_dir: Path | None = None, allow_download: bool | None = None) -> TaskData:
    """CIFAR-10 from ``data_dir/cifar-10-batches-py`` (default data dir if None), downloaded if absent.

    x: float32 in [0, 1], (N, 3, 32, 32) with channels R, G, B; y: int64 class indices. 50,000 train
    (data_batch_1..5 in order) and 10,000 test images. ``allow_download`` defaults to true unless
    ``MODBENCH_OFFLINE`` is set. Missing files that cannot be downloaded, or a file with a wrong MD5,
    raise :class:`UserError`.
    """
    folder = (data_dir or default_data_dir()) / FOLDER
    if allow_download is None:
        allow_download = not os.environ.get("MODBENCH_OFFLINE")
    if _check_present(folder):
        if not allow_download:
            off = "downloading is off: MODBENCH_OFFLINE is set or allow_download=False"
            raise UserError(f"{_missing_message(folder)} ({off})")
        if not download_cifar10(folder):
            raise UserError(_missing_message(folder) + " (the download failed)")
        if _check_present(folder):  # re-verify what is on disk before unpickling it
            raise UserError(_missing_message(folder))
    x_train, y_train = _to_tensors([read_batch(folder / name) for name in TRAIN_BATCHES])
    x_test, y_test = _to_tensors([read_batch(folder / TEST_BATCH)])
    return TaskData("cifar10", x_train, y_train, x_test, y_test)

