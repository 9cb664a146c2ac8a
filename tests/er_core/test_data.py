"""er_core.data: real MNIST, digits, tiny files in the CIFAR10 / STL10 / Tiny ImageNet / IDX
formats written here, clear errors for missing and corrupt files, and eval_indices."""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from dataset_files import TINY_VAL, TINY_WNIDS, real_mnist_folder, write_cifar, write_idx, write_mnist, write_stl, write_tiny_imagenet
from PIL import Image

from er_core import data
from er_core.data import DatasetFilesError

MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def assert_images(x: torch.Tensor, n: int, shape: tuple[int, int, int]) -> None:
    assert x.shape == (n, *shape)
    assert x.dtype == torch.float32 and x.is_contiguous()
    assert x.min() >= 0 and x.max() <= 1


def u8(x: torch.Tensor) -> np.ndarray:
    """Back to the stored byte values (exact for values written as k/255)."""
    return (x * 255).round().to(torch.uint8).numpy()


# ---------------------------------------------------------------- real MNIST


@pytest.fixture(scope="module")
def mnist() -> data.Data:
    """The real MNIST from the data root (CI points ER_GRID_DATA_ROOT at its copy)."""
    real_mnist_folder()
    return data.load("mnist")  # no root: found through the data root


def test_real_mnist_from_data_root(mnist):
    assert_images(mnist.x_train, 60000, (1, 28, 28))
    assert_images(mnist.x_test, 10000, (1, 28, 28))
    assert mnist.x_train.max() == 1 and mnist.x_train.min() == 0
    assert mnist.y_train.dtype == torch.int64 and mnist.num_classes == 10
    assert torch.bincount(mnist.y_train, minlength=10).tolist() == MNIST_TRAIN_COUNTS
    assert torch.bincount(mnist.y_test, minlength=10).tolist() == MNIST_TEST_COUNTS
    # Upright: MNIST digits are centred, so the border rows are blank and the centre is not.
    assert mnist.x_test[:, 0, 0, :].max() == 0 and mnist.x_test[:, 0, 14, :].mean() > 0.1


# ---------------------------------------------------------------- digits


def test_digits_shapes_ranges_and_fixed_split():
    a, b = data.load("digits"), data.load("digits")
    assert_images(a.x_train, 1437, (1, 8, 8))
    assert_images(a.x_test, 360, (1, 8, 8))
    assert a.x_train.max() == 1 and a.num_classes == 10 and a.y_test.dtype == torch.int64
    assert torch.equal((a.x_train * 16).round(), a.x_train * 16)  # values k/16
    assert torch.equal(a.x_test, b.x_test) and torch.equal(a.y_train, b.y_train)
    # Pinned: the split comes from RandomState(0), whose stream numpy keeps fixed everywhere.
    assert a.y_test[:12].tolist() == [7, 9, 4, 7, 0, 2, 6, 1, 3, 1, 3, 7]
    assert a.y_train[:12].tolist() == [2, 8, 2, 6, 6, 7, 1, 9, 8, 5, 2, 8]
    # Train and test together are all 1797 images, each once.
    from sklearn.datasets import load_digits

    everything = torch.cat([a.x_train, a.x_test]).reshape(1797, 64) * 16
    ref = torch.from_numpy(load_digits().data.astype(np.float32))
    assert torch.equal(everything.sum(0), ref.sum(0))
    assert len({tuple(r.tolist()) for r in everything}) == len({tuple(r.tolist()) for r in ref})


# ---------------------------------------------------------------- tiny IDX (MNIST format)


@pytest.fixture
def tiny_mnist(tmp_path) -> Path:
    return write_mnist(tmp_path / "mnist")


def test_idx_round_trip_and_env_root(tiny_mnist, monkeypatch):
    monkeypatch.setenv(data.DATA_ROOT_ENV, str(tiny_mnist.parent))  # env root / "mnist"
    d = data.load("mnist")
    assert_images(d.x_train, 5, (1, 28, 28))
    assert d.y_test.tolist() == [0, 1, 2]
    with gzip.open(tiny_mnist / "train-images-idx3-ubyte.gz") as f:
        raw = np.frombuffer(f.read()[16:], np.uint8).reshape(5, 28, 28)
    assert np.array_equal(u8(d.x_train[:, 0]), raw)


def test_truncated_idx_gives_clear_error(tiny_mnist):
    path = tiny_mnist / "train-images-idx3-ubyte.gz"
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) // 2])  # cut mid-stream
    with pytest.raises(DatasetFilesError, match="train-images-idx3-ubyte.gz") as e:
        data.load("mnist", root=tiny_mnist)
    assert "download=True" in str(e.value) and "t10k-labels-idx1-ubyte.gz" in str(e.value)


@pytest.mark.parametrize(
    "arr, magic, match",
    [
        (np.zeros((5, 28, 28)), 1234, "magic"),  # wrong magic number
        (np.zeros((5, 28, 27)), None, "28×28"),  # wrong image size
        (np.zeros((4, 28, 28)), None, "labels"),  # count differs from the labels file
    ],
)
def test_corrupt_idx_gives_clear_error(tiny_mnist, arr, magic, match):
    path = tiny_mnist / "train-images-idx3-ubyte.gz"
    write_idx(path, arr, magic)
    with pytest.raises(ValueError, match=match):  # DatasetFilesError is also a ValueError
        data.load("mnist", root=tiny_mnist)


def test_idx_payload_shorter_than_header(tiny_mnist):
    path = tiny_mnist / "t10k-labels-idx1-ubyte.gz"
    with gzip.open(path, "wb") as f:
        f.write(struct.pack(">2I", 2049, 3) + bytes([0, 1]))  # header says 3, holds 2
    with pytest.raises(DatasetFilesError, match="t10k-labels-idx1-ubyte.gz.*payload size"):
        data.load("mnist", root=tiny_mnist)


# ---------------------------------------------------------------- CIFAR10


@pytest.mark.parametrize("str_keys", [False, True])
def test_cifar10_files_load(tmp_path, str_keys):
    written = write_cifar(tmp_path, str_keys=str_keys)
    d = data.load("cifar10", root=tmp_path)
    assert_images(d.x_train, 20, (3, 32, 32))
    assert_images(d.x_test, 4, (3, 32, 32))
    assert d.y_train[:8].tolist() == [0, 1, 2, 3, 1, 2, 3, 4] and d.y_test.tolist() == [5, 6, 7, 8]
    # Row layout: 1024 red, then green, then blue, each row-major 32×32.
    raw = written["data_batch_2"][1]
    assert u8(d.x_train[5, 1, 3, 7]) == raw[1024 + 3 * 32 + 7]
    assert np.array_equal(u8(d.x_test).reshape(4, 3072), written["test_batch"])


def test_cifar10_default_root_and_missing_batch(tmp_path, monkeypatch):
    write_cifar(tmp_path / "cifar10")
    monkeypatch.setenv(data.DATA_ROOT_ENV, str(tmp_path))
    assert data.load("cifar10").x_train.shape[0] == 20
    missing = tmp_path / "cifar10" / "cifar-10-batches-py" / "data_batch_3"
    missing.unlink()
    with pytest.raises(FileNotFoundError) as e:  # DatasetFilesError is a FileNotFoundError
        data.load("cifar10")
    msg = str(e.value)
    assert isinstance(e.value, DatasetFilesError)
    assert str(missing) in msg and "test_batch" in msg and "copy the files" in msg
    assert "er-grid data fetch cifar10" in msg and "download=True" in msg


class Planted:
    """Unpickling this would create ``path``: how a planted object runs code in a reader."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


@pytest.mark.parametrize("where", ["labels", "top"])
def test_cifar10_batch_with_a_planted_object_is_refused(tmp_path, where):
    write_cifar(tmp_path)
    batch, marker = tmp_path / "cifar-10-batches-py" / "data_batch_2", tmp_path / "ran"
    entry = {b"data": np.zeros((4, 3072), np.uint8), b"labels": [0, 1, 2, Planted(marker)]}
    with open(batch, "wb") as f:
        pickle.dump(entry if where == "labels" else Planted(marker), f, protocol=2)
    with pytest.raises(DatasetFilesError, match=r"data_batch_2.*refused global io\.open"):
        data.load("cifar10", root=tmp_path)
    assert not marker.exists()  # the planted call never ran


def test_cifar10_batch_as_the_official_files_name_numpy_loads(tmp_path):
    """The official batches were pickled by Python 2's numpy, whose array rebuilder lives at
    numpy.core.multiarray (numpy 2 writes numpy._core.multiarray): both are admitted."""
    written = write_cifar(tmp_path, str_keys=True)
    batch = tmp_path / "cifar-10-batches-py" / "test_batch"
    blob = batch.read_bytes()
    assert b"numpy._core.multiarray" in blob
    batch.write_bytes(blob.replace(b"numpy._core.multiarray", b"numpy.core.multiarray"))
    assert np.array_equal(u8(data.load("cifar10", root=tmp_path).x_test).reshape(4, 3072), written["test_batch"])


def test_cifar10_not_a_pickle(tmp_path):
    write_cifar(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(b"not a pickle")
    with pytest.raises(DatasetFilesError, match="test_batch"):
        data.load("cifar10", root=tmp_path)


# ---------------------------------------------------------------- STL10


def test_stl10_binary_orientation_and_labels(tmp_path):
    upright = write_stl(tmp_path)
    base = tmp_path / "stl10_binary"
    img = upright["train"].copy()
    img[1, 2, 5, 70] = 250  # row 5, column 70 of the blue channel
    img.transpose(0, 1, 3, 2).tofile(base / "train_X.bin")  # stored column-major per channel
    upright["train"] = img
    d = data.load("stl10", root=tmp_path)
    assert_images(d.x_train, 3, (3, 96, 96))
    assert_images(d.x_test, 2, (3, 96, 96))
    assert d.y_train.tolist() == [0, 1, 2] and d.y_test.tolist() == [0, 1]
    assert u8(d.x_train[1, 2, 5, 70]) == 250 and u8(d.x_train[1, 2, 70, 5]) < 100
    assert np.array_equal(u8(d.x_test), upright["test"])
    # torchvision's own reader agrees (same private helper STL10 uses).
    import torchvision

    tv = torchvision.datasets.STL10.__new__(torchvision.datasets.STL10)
    tv.root, tv.base_folder = str(tmp_path), "stl10_binary"
    tv_x, tv_y = tv._STL10__loadfile("train_X.bin", "train_y.bin")
    assert np.array_equal(u8(d.x_train), tv_x) and d.y_train.tolist() == tv_y.tolist()

    (base / "test_X.bin").write_bytes(b"\0" * 100)  # wrong size
    with pytest.raises(DatasetFilesError, match="test_X.bin"):
        data.load("stl10", root=tmp_path)


# ---------------------------------------------------------------- Tiny ImageNet

def test_tiny_imagenet_tree(tmp_path):
    base = write_tiny_imagenet(tmp_path)
    assert TINY_WNIDS == ["n03", "n01", "n02"] and [w for _, w in TINY_VAL] == ["n02", "n03", "n01", "n02"]
    # a grey train image must become 3 identical channels
    Image.fromarray(np.full((64, 64), 90, np.uint8)).save(base / "train" / "n01" / "images" / "n01_1.JPEG")

    d = data.load("tiny_imagenet", root=tmp_path, download=True)  # present: no fetch
    assert_images(d.x_train, 6, (3, 64, 64))
    assert_images(d.x_test, 4, (3, 64, 64))
    assert d.num_classes == 3  # from wnids.txt (200 for the real set)
    assert d.y_train.tolist() == [0, 0, 1, 1, 2, 2]  # n01, n02, n03
    assert d.y_test.tolist() == [1, 2, 0, 1]  # annotation order
    assert np.abs(u8(d.x_train[0, :, 16, 16]).astype(int) - [200, 0, 0]).max() <= 4  # top is red
    assert np.abs(u8(d.x_train[0, :, 48, 48]).astype(int) - [0, 0, 200]).max() <= 4  # bottom blue
    assert np.abs(u8(d.x_train[1, :, 16, 16]).astype(int) - 90).max() <= 2  # grey → RGB
    assert np.abs(u8(d.x_test[3, :, 10, 10]).astype(int) - [120, 120, 0]).max() <= 4

    (base / "val" / "images" / "val_2.JPEG").unlink()
    with pytest.raises(DatasetFilesError, match="val_2.JPEG"):
        data.load("tiny_imagenet", root=tmp_path)


def test_tiny_imagenet_missing_tree(tmp_path):
    with pytest.raises(FileNotFoundError, match="wnids.txt") as e:
        data.load("tiny_imagenet", root=tmp_path)
    assert "val_annotations.txt" in str(e.value) and "download=True" in str(e.value)


# ---------------------------------------------------------------- eval_indices and names


def test_eval_indices_fixed_sorted_unique():
    a, b = data.eval_indices("mnist"), data.eval_indices("mnist", n=1000, seed=0)
    assert a.dtype == torch.int64 and a.shape == (1000,)
    assert torch.equal(a, b)
    assert torch.all(a[1:] > a[:-1])  # sorted and unique
    assert a.min() >= 0 and a.max() < 10000
    assert not torch.equal(a, data.eval_indices("mnist", seed=1))
    # Pinned: RandomState's stream is the same on every machine.
    assert data.eval_indices("mnist", 5).tolist() == [898, 2343, 2398, 5906, 9394]
    assert data.eval_indices("digits", 360).tolist() == list(range(360))
    assert data.eval_indices("stl10", 8000).max() == 7999


@pytest.mark.parametrize("n", [0, 361, 2.5])
def test_eval_indices_bad_n(n):
    with pytest.raises(ValueError, match="test_size=360"):
        data.eval_indices("digits", n=n)


def test_unknown_dataset_lists_valid_names():
    for call in (lambda: data.load("svhn"), lambda: data.eval_indices("svhn"), lambda: data.info("svhn")):
        with pytest.raises(ValueError, match="svhn") as e:
            call()
        assert all(name in str(e.value) for name in data.INFO)
    assert set(data.LOADERS) == set(data.INFO)


def test_default_data_root_is_home_er_grid_data(monkeypatch, tmp_path):
    monkeypatch.delenv(data.DATA_ROOT_ENV, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert data.default_root("cifar10") == tmp_path / "er-grid-data" / "cifar10"
    with pytest.raises(DatasetFilesError, match=str(tmp_path / "er-grid-data" / "mnist")):
        data.load("mnist")
    monkeypatch.setenv(data.DATA_ROOT_ENV, str(tmp_path / "elsewhere"))
    assert data.default_root("mnist") == tmp_path / "elsewhere" / "mnist"


def test_for_training_moves_only_small_datasets_off_the_cpu(digits):
    assert data.for_training(digits, "cpu") is digits
    # The meta device stands in for a GPU: the tensors move without any memory behind them.
    moved = data.for_training(digits, "meta")
    assert all(t.device.type == "meta" for t in (moved.x_train, moved.y_train, moved.x_test, moved.y_test))
    assert moved.x_train.shape == digits.x_train.shape and moved.num_classes == digits.num_classes
    large = data.Data("stl10", digits.x_train, digits.y_train, digits.x_test, digits.y_test, 10)
    assert not data.info("stl10").on_device
    assert data.for_training(large, "meta") is large
