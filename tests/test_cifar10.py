from __future__ import annotations

import collections
import hashlib
import io
import pickle
import struct
import tarfile

import numpy as np
import pytest
import torch

from modbench.data import cifar10
from modbench.errors import UserError

N_TRAIN = (2, 1, 2, 1, 2)  # images per data_batch_1..5
N_TEST = 3


def py2_pickle(data: np.ndarray, labels: list[int]) -> bytes:
    """A batch pickled as python 2 did it (like the original files): str keys and raw array bytes as
    SHORT_BINSTRING/BINSTRING (bytes in python 3 only with encoding="bytes"), numpy.core module path."""
    raw = data.tobytes()
    dtype = (b"cnumpy\ndtype\nU\x02u1K\x00K\x01\x87R"
             b"(K\x03U\x01|NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb")
    array = (b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85U\x01b\x87R(K\x01"
             + b"J" + struct.pack("<i", len(data)) + b"M" + struct.pack("<H", data.shape[1]) + b"\x86"
             + dtype + b"\x89T" + struct.pack("<I", len(raw)) + raw + b"tb")
    label_list = b"](" + b"".join(b"K" + bytes([label]) for label in labels) + b"e"
    return b"\x80\x02}(U\x04data" + array + b"U\x06labels" + label_list + b"u."


@pytest.fixture()
def fake_cifar(tmp_path, monkeypatch):
    """Six tiny batch files in <tmp>/data/cifar-10-batches-py, with the MD5 table pointed at them."""
    folder = tmp_path / "data" / cifar10.FOLDER
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    names = [*cifar10.TRAIN_BATCHES, cifar10.TEST_BATCH]
    batches = {}
    for index, (name, n) in enumerate(zip(names, [*N_TRAIN, N_TEST], strict=True)):
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, n)]
        if index == 0:  # first image: pure red (the first 1024 bytes are the red plane)
            data[0] = 0
            data[0, :1024] = 255
            payload = py2_pickle(data, labels)
        else:  # python 3 pickles, protocol 2 (bytes via _codecs) and the default protocol
            entry = {b"batch_label": b"fake", b"data": data, b"labels": labels, b"filenames": [b"x.png"] * n}
            payload = pickle.dumps(entry, protocol=2 if index % 2 else pickle.DEFAULT_PROTOCOL)
        (folder / name).write_bytes(payload)
        batches[name] = (data, labels)
    sums = {name: hashlib.md5((folder / name).read_bytes()).hexdigest() for name in names}
    monkeypatch.setattr(cifar10, "CIFAR10_FILES", sums)
    return folder, batches


def test_batches_load_as_scaled_rgb_images(fake_cifar):
    folder, batches = fake_cifar
    data = cifar10.load_cifar10(folder.parent, allow_download=False)
    assert data.source == "cifar10"
    assert data.x_train.shape == (sum(N_TRAIN), 3, 32, 32) and data.x_test.shape == (N_TEST, 3, 32, 32)
    assert data.x_train.dtype == torch.float32 and data.y_train.dtype == torch.int64
    assert 0.0 <= float(data.x_train.min()) and float(data.x_train.max()) <= 1.0
    red = data.x_train[0]
    assert bool((red[0] == 1.0).all()) and bool((red[1:] == 0.0).all())
    train = [batches[name] for name in cifar10.TRAIN_BATCHES]
    expected = np.concatenate([d for d, _ in train]).reshape(-1, 3, 32, 32) / 255.0
    assert np.allclose(data.x_train.numpy(), expected)
    assert data.y_train.tolist() == [label for _, labels in train for label in labels]
    test_data, test_labels = batches[cifar10.TEST_BATCH]
    assert data.y_test.tolist() == test_labels
    # pixel (row 1, col 2) of the green plane is byte 1024 + 32 + 2 of the row
    assert float(data.x_test[1, 1, 1, 2]) == pytest.approx(test_data[1, 1024 + 32 + 2] / 255.0)


def test_a_wrong_md5_is_refused(fake_cifar, monkeypatch):
    folder, _ = fake_cifar
    monkeypatch.setitem(cifar10.CIFAR10_FILES, "data_batch_3", "0" * 32)
    with pytest.raises(UserError, match="data_batch_3.*MD5"):
        cifar10.load_cifar10(folder.parent, allow_download=False)


def test_absent_files_offline_say_where_to_put_them(tmp_path):
    with pytest.raises(UserError) as error:
        cifar10.load_cifar10(tmp_path, allow_download=False)
    message = str(error.value)
    assert "\n" not in message and str(tmp_path / cifar10.FOLDER) in message and cifar10.URL in message
    with pytest.raises(UserError) as error:  # default data dir, offline through MODBENCH_OFFLINE (conftest)
        cifar10.load_cifar10()
    assert str(cifar10.default_data_dir() / cifar10.FOLDER) in str(error.value)


def make_tarball(path, folder, archive_md5_patch):
    with tarfile.open(path, "w:gz") as tar:
        for name in cifar10.CIFAR10_FILES:
            tar.add(folder / name, arcname=f"{cifar10.FOLDER}/{name}")
        for arcname, payload in (("../evil", b"x"), (f"{cifar10.FOLDER}/batches.meta", b"meta")):
            info = tarfile.TarInfo(arcname)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
        link = tarfile.TarInfo(f"{cifar10.FOLDER}/readme.html")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
    archive_md5_patch(hashlib.md5(path.read_bytes()).hexdigest())


def test_download_extracts_only_the_six_checked_batches(fake_cifar, tmp_path, monkeypatch):
    folder, _ = fake_cifar
    tarball = tmp_path / "mirror" / cifar10.ARCHIVE
    tarball.parent.mkdir()
    make_tarball(tarball, folder, lambda md5: monkeypatch.setattr(cifar10, "ARCHIVE_MD5", md5))
    monkeypatch.setattr(cifar10, "URL", tarball.as_uri())
    target = tmp_path / "fresh"
    data = cifar10.load_cifar10(target, allow_download=True)
    assert data.x_train.shape[0] == sum(N_TRAIN)
    assert sorted(p.name for p in (target / cifar10.FOLDER).iterdir()) == sorted(cifar10.CIFAR10_FILES)
    assert not (tmp_path / "evil").exists() and not (target / "evil").exists()


def test_download_failures_are_user_errors(fake_cifar, tmp_path, monkeypatch):
    folder, _ = fake_cifar
    tarball = tmp_path / cifar10.ARCHIVE
    make_tarball(tarball, folder, lambda md5: None)  # ARCHIVE_MD5 stays the real one: a mismatch
    assert not cifar10.download_cifar10(tmp_path / "a", url=tarball.as_uri())
    assert not (tmp_path / "a").exists() or not any((tmp_path / "a").iterdir())
    monkeypatch.setattr(cifar10, "URL", (tmp_path / "nowhere.tar.gz").as_uri())
    with pytest.raises(UserError, match="download failed"):
        cifar10.load_cifar10(tmp_path / "b", allow_download=True)


def test_unexpected_pickle_globals_are_refused(tmp_path):
    path = tmp_path / "batch"
    path.write_bytes(pickle.dumps({b"data": collections.OrderedDict(), b"labels": []}))
    with pytest.raises(UserError, match="OrderedDict"):
        cifar10.read_batch(path)
    path.write_bytes(pickle.dumps({b"data": np.zeros((2, 5), np.uint8), b"labels": [0, 1]}))
    with pytest.raises(UserError, match="3072"):
        cifar10.read_batch(path)
