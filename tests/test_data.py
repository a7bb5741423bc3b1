from __future__ import annotations

import gzip
import hashlib

import numpy as np
import pytest

from modbench.data import mnist
from modbench.errors import UserError


def write_idx(path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    with gzip.open(path, "wb") as handle:
        handle.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture()
def fake_mnist(tmp_path, monkeypatch):
    """Tiny IDX files in a 'mirror' folder, with the checksum table pointed at them."""
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte.gz": rng.integers(0, 256, (6, 28, 28)),
        "train-labels-idx1-ubyte.gz": np.arange(6) % 10,
        "t10k-images-idx3-ubyte.gz": rng.integers(0, 256, (4, 28, 28)),
        "t10k-labels-idx1-ubyte.gz": np.arange(4),
    }
    sums = {}
    for name, array in arrays.items():
        write_idx(mirror / name, array)
        sums[name] = hashlib.md5((mirror / name).read_bytes()).hexdigest()
    monkeypatch.setattr(mnist, "MNIST_FILES", sums)
    return mirror, arrays


def test_idx_files_parse_to_scaled_tensors(fake_mnist, tmp_path):
    mirror, arrays = fake_mnist
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "mnist").symlink_to(mirror, target_is_directory=True)
    data = mnist.load_mnist(tmp_path / "data", allow_download=False)
    assert data.source == "mnist"
    assert data.x_train.shape == (6, 784) and float(data.x_train.max()) <= 1.0
    expected = arrays["train-images-idx3-ubyte.gz"][2].reshape(-1) / 255.0
    assert np.allclose(data.x_train[2].numpy(), expected)
    assert data.y_test.tolist() == [0, 1, 2, 3]


def test_download_from_a_mirror_checks_md5(fake_mnist, tmp_path):
    mirror, _ = fake_mnist
    target = tmp_path / "cache" / "mnist"
    assert mnist.download_mnist(target, mirrors=("file:///nonexistent/", mirror.as_uri() + "/"))
    assert mnist.load_mnist(target.parent, allow_download=False).source == "mnist"
    for name, expected in mnist.MNIST_FILES.items():
        assert mnist.md5sum(target / name) == expected


def test_download_rejects_a_wrong_checksum(fake_mnist, tmp_path, monkeypatch):
    mirror, _ = fake_mnist
    monkeypatch.setitem(mnist.MNIST_FILES, "t10k-labels-idx1-ubyte.gz", "0" * 32)
    assert not mnist.download_mnist(tmp_path / "dl", mirrors=(mirror.as_uri() + "/",))
    assert not (tmp_path / "dl" / "t10k-labels-idx1-ubyte.gz").exists()


def test_present_file_with_wrong_md5_is_an_error(fake_mnist, tmp_path, monkeypatch):
    mirror, _ = fake_mnist
    monkeypatch.setitem(mnist.MNIST_FILES, "train-images-idx3-ubyte.gz", "0" * 32)
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "mnist").symlink_to(mirror, target_is_directory=True)
    with pytest.raises(UserError, match="wrong MD5"):
        mnist.load_mnist(tmp_path / "d", allow_download=False)


def test_offline_fallback_is_the_embedded_5k_digits(tmp_path, capsys):
    data = mnist.load_mnist(None, allow_download=False)  # the default folder (conftest: empty)
    assert data.source == "mnist-5k"
    assert (len(data.x_train), len(data.x_test)) == (4000, 1000)
    assert np.bincount(data.y_test.numpy()).tolist() == [100] * 10
    assert "mnist-5k" in capsys.readouterr().err


def test_offline_env_disables_downloads(tmp_path, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("network touched")

    monkeypatch.setattr(mnist, "download_mnist", no_network)
    assert mnist.load_mnist().source == "mnist-5k"  # conftest sets MODBENCH_OFFLINE


def test_an_explicit_data_dir_without_mnist_is_an_error_not_a_fallback(tmp_path):
    with pytest.raises(UserError, match="no MNIST in"):
        mnist.load_mnist(tmp_path, allow_download=False)
