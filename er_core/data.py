"""Dataset registry: digits (embedded default), mnist, cifar10, stl10, tiny_imagenet.

``load(name, root=None, download=False)`` → :class:`Data` with float32 NCHW images in
[0, 1] and int64 labels. ``info(name)`` gives shape and class count without loading.
``eval_indices(name, n, seed)`` is the fixed evaluation subset of the test set.

On-disk formats (``root`` is the folder given to ``load``):

=============  ============================================================================
digits         none: scikit-learn's bundled 1797 8×8 images (values 0..16, scaled by 1/16),
               split 1437 train / 360 test by ``RandomState(DIGITS_SPLIT_SEED)``.
mnist          ``root/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz`` (LeCun's IDX files).
cifar10        torchvision's layout: ``root/cifar-10-batches-py/data_batch_1..5`` and
               ``test_batch``, pickles with ``b'data'`` uint8 (N, 3072) and ``b'labels'``.
stl10          torchvision's layout: ``root/stl10_binary/{train,test}_{X,y}.bin``; X is uint8
               (N, 3, 96, 96) stored column-major, y uint8 labels 1..10.
tiny_imagenet  ``root/tiny-imagenet-200/``: ``wnids.txt``, ``train/<wnid>/images/*.JPEG``,
               ``val/images/*.JPEG`` and ``val/val_annotations.txt``; the val set (10000) is
               the test set, in the order of ``val_annotations.txt``.
=============  ============================================================================

The data root (one folder per dataset) is ``$ER_GRID_DATA_ROOT`` if that variable is set,
else ``~/er-grid-data``: the same default for notebooks, the jobs, the trials on a cluster and
``er-grid data fetch|check``. Missing or corrupt files raise :class:`DatasetFilesError` naming
the path, what belongs there and how to get it. ``download=True`` fetches missing files first
(needs internet; er_core/download.py holds the mirrors and checksums).

Memory: everything is held as float32, e.g. Tiny ImageNet train is 100000×3×64×64×4 B ≈ 4.9 GB.
"""

from __future__ import annotations

import gzip
import os
import pickle
import struct
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from er_core import download as download_sources
from er_core.dataset_info import INFO, info


@dataclass(frozen=True)
class Data:
    """A loaded dataset: float32 NCHW images in [0, 1], int64 labels; ``x_val``/``y_val`` the
    validation split taken out of the training set (``er_core.validation``), None without one."""

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    x_val: Optional[torch.Tensor] = None
    y_val: Optional[torch.Tensor] = None

    def test_examples(self, indices: torch.Tensor, device=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Test images and labels at ``indices`` (a tensor on any device), moved to ``device``
        (None: where the data lives)."""
        x = self.x_test[indices.to(self.x_test.device)]
        y = self.y_test[indices.to(self.y_test.device)]
        return (x, y) if device is None else (x.to(device), y.to(device))


DATA_ROOT_ENV = "ER_GRID_DATA_ROOT"
DEFAULT_DATA_ROOT = "~/er-grid-data"
DIGITS_SPLIT_SEED = 0


class DatasetFilesError(FileNotFoundError, ValueError):
    """Dataset files missing or corrupt. A FileNotFoundError (missing) and a ValueError
    (corrupt) at once, so callers can catch either; the message names the path, the files
    that belong there and how to get them."""


def _files_error(name: str, path: Path, problem: str) -> DatasetFilesError:
    return DatasetFilesError(
        f"{name}: {path}: {problem}. {LOADERS[name].expected} "
        f"Run `er-grid data fetch {name}` (or pass download=True) on a machine with internet, "
        "or copy the files there."
    )


def _to_float(u8: np.ndarray) -> torch.Tensor:
    """uint8 (N, C, H, W), any strides → contiguous float32 in [0, 1] (one copy, in-place divide)."""
    return torch.from_numpy(np.ascontiguousarray(u8)).float().div_(255)


def _labels(y: np.ndarray, num_classes: int, name: str, path: Path) -> torch.Tensor:
    y = np.asarray(y, dtype=np.int64)
    if y.size and (y.min() < 0 or y.max() >= num_classes):
        raise _files_error(name, path, f"labels outside 0..{num_classes - 1}")
    return torch.from_numpy(y)


def _require(name: str, *paths: Path) -> None:
    for p in paths:
        if not p.is_file():
            raise _files_error(name, p, "missing file")


# ---------------------------------------------------------------- digits


def _load_digits(root: Path) -> Data:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = torch.from_numpy(bunch.data.astype(np.float32) / 16.0).reshape(-1, 1, 8, 8)
    y = torch.from_numpy(bunch.target.astype(np.int64))
    # RandomState's stream is fixed by numpy's compatibility policy: same split everywhere.
    perm = torch.from_numpy(np.random.RandomState(DIGITS_SPLIT_SEED).permutation(len(y)))
    tr, te = perm[:INFO["digits"].train_size], perm[INFO["digits"].train_size:]
    return Data("digits", x[tr].contiguous(), y[tr], x[te].contiguous(), y[te], 10)


# ---------------------------------------------------------------- mnist

MNIST_FILES = tuple(download_sources.MNIST_MD5)  # the four IDX gzip files, train then t10k
_IDX_MAGIC = {1: 2049, 3: 2051}  # IDX magic number by number of dims (uint8 data, 0x08)


def _read_idx(path: Path, ndim: int) -> np.ndarray:
    """One gzipped IDX file → uint8 array, with header, dims and payload size checked."""
    _require("mnist", path)
    try:
        with gzip.open(path, "rb") as f:
            header = f.read(4 + 4 * ndim)
            if len(header) < 4 + 4 * ndim:
                raise _files_error("mnist", path, "truncated IDX header")
            magic, *dims = struct.unpack(f">{1 + ndim}I", header)
            if magic != _IDX_MAGIC[ndim]:
                raise _files_error("mnist", path, f"bad IDX magic {magic} (want {_IDX_MAGIC[ndim]})")
            out = np.empty(int(np.prod(dims)), dtype=np.uint8)
            view, got = memoryview(out), 0
            while got < out.size and (k := f.readinto(view[got:])):
                got += k
            if got != out.size or f.read(1):
                problem = f"payload size does not match header dims {dims} (truncated or corrupt)"
                raise _files_error("mnist", path, problem)
    except DatasetFilesError:
        raise
    except (EOFError, OSError, zlib.error) as e:  # truncated or not gzip at all
        raise _files_error("mnist", path, f"unreadable gzip ({type(e).__name__}: {e})") from e
    return out.reshape(dims)


def _load_mnist(root: Path) -> Data:
    parts = []
    for split in ("train", "t10k"):
        img_path, lab_path = root / f"{split}-images-idx3-ubyte.gz", root / f"{split}-labels-idx1-ubyte.gz"
        imgs, labs = _read_idx(img_path, 3), _read_idx(lab_path, 1)
        if imgs.shape[1:] != (28, 28) or len(imgs) != len(labs):
            problem = f"images {imgs.shape} do not match {len(labs)} labels of 28×28 images"
            raise _files_error("mnist", img_path, problem)
        parts += [_to_float(imgs[:, None]), _labels(labs, 10, "mnist", lab_path)]
    return Data("mnist", *parts, num_classes=10)


# ---------------------------------------------------------------- cifar10

CIFAR_DIR = "cifar-10-batches-py"
CIFAR_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))


class _CifarUnpickler(pickle.Unpickler):
    """Unpickles only what a CIFAR-10 batch holds: a dict of strings, a list of ints and one
    uint8 numpy array. Those need no global except numpy's array rebuilders (and ``_codecs``
    for bytes written by a Python 3 pickler at protocol 2); any other global, i.e. any
    object that could run code while it is unpickled, is refused."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refused global {module}.{name}: a CIFAR-10 batch holds only "
                                         "a dict of strings, a list of labels and a uint8 array")
        return super().find_class(module, name)


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    _require("cifar10", path)
    try:
        with open(path, "rb") as f:
            # The official batches are Python 2 pickles; latin1 is what numpy needs to rebuild
            # their arrays (as torchvision does). Keys come back as 'data' (Python 2 str) or
            # b'data' (a Python 3 pickle of bytes keys): accept both.
            entry = _CifarUnpickler(f, encoding="latin1").load()
        data, labels = (entry[k] if k in entry else entry[k.encode()] for k in ("data", "labels"))
    except (pickle.UnpicklingError, EOFError, KeyError, TypeError, AttributeError, ValueError) as e:
        problem = f"not a CIFAR-10 batch pickle ({type(e).__name__}: {e})"
        raise _files_error("cifar10", path, problem) from e
    data = np.asarray(data)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072 or len(data) != len(labels):
        problem = f"b'data' is {data.dtype} {data.shape}, want uint8 (N, 3072) matching b'labels'"
        raise _files_error("cifar10", path, problem)
    return data.reshape(-1, 3, 32, 32), np.asarray(labels)


def _load_cifar10(root: Path) -> Data:
    base = root / CIFAR_DIR
    # Check every file first, so a gap is reported before seconds of reading.
    _require("cifar10", *(base / f for f in (*CIFAR_TRAIN, "test_batch")))
    train = [_read_cifar_batch(base / f) for f in CIFAR_TRAIN]
    x_te, y_te = _read_cifar_batch(base / "test_batch")
    return Data(
        "cifar10",
        _to_float(np.concatenate([x for x, _ in train])),
        _labels(np.concatenate([y for _, y in train]), 10, "cifar10", base),
        _to_float(x_te),
        _labels(y_te, 10, "cifar10", base / "test_batch"),
        10,
    )


# ---------------------------------------------------------------- stl10

STL_DIR = "stl10_binary"


def _read_stl(x_path: Path, y_path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    _require("stl10", x_path, y_path)
    x = np.fromfile(x_path, dtype=np.uint8)
    y = np.fromfile(y_path, dtype=np.uint8).astype(np.int64) - 1  # stored 1..10
    if x.size != len(y) * 3 * 96 * 96:
        raise _files_error("stl10", x_path, f"{x.size} bytes, want {len(y)} labels × 3×96×96")
    # Stored column-major per channel: swap H and W so images are upright (as torchvision does).
    x = x.reshape(-1, 3, 96, 96).transpose(0, 1, 3, 2)
    return _to_float(x), _labels(y, 10, "stl10", y_path)


def _load_stl10(root: Path) -> Data:
    base = root / STL_DIR
    _require("stl10", *(base / f"{s}_{k}.bin" for s in ("train", "test") for k in "Xy"))
    x_tr, y_tr = _read_stl(base / "train_X.bin", base / "train_y.bin")
    x_te, y_te = _read_stl(base / "test_X.bin", base / "test_y.bin")
    return Data("stl10", x_tr, y_tr, x_te, y_te, 10)


# ---------------------------------------------------------------- tiny_imagenet

TINY_DIR = "tiny-imagenet-200"


def _read_jpegs(paths: list[Path]) -> np.ndarray:
    """JPEG files → uint8 (N, 3, 64, 64). Grey images (a few in Tiny ImageNet) become RGB."""
    from PIL import Image, UnidentifiedImageError

    out = np.empty((len(paths), 64, 64, 3), dtype=np.uint8)

    def read(i: int) -> None:
        try:
            with Image.open(paths[i]) as im:
                arr = np.asarray(im.convert("RGB"))
        except FileNotFoundError as e:
            raise _files_error("tiny_imagenet", paths[i], "missing file") from e
        except (UnidentifiedImageError, OSError) as e:
            raise _files_error("tiny_imagenet", paths[i], f"unreadable image ({e})") from e
        if arr.shape != (64, 64, 3):
            raise _files_error("tiny_imagenet", paths[i], f"image is {arr.shape[:2]}, want 64×64")
        out[i] = arr

    # PIL releases the GIL while decoding, so threads give a real speed-up on 110k files.
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        list(pool.map(read, range(len(paths))))
    return out.transpose(0, 3, 1, 2)


def _load_tiny_imagenet(root: Path) -> Data:
    """num_classes is the number of wnids in wnids.txt (200 for the real set); class index =
    position of the wnid in sorted(wnids). Train order: sorted wnids, then sorted file names."""
    base = root / TINY_DIR
    wnid_file, ann_file = base / "wnids.txt", base / "val" / "val_annotations.txt"
    _require("tiny_imagenet", wnid_file, ann_file)
    wnids = sorted({w.strip() for w in wnid_file.read_text().splitlines() if w.strip()})
    index = {w: i for i, w in enumerate(wnids)}
    train_paths, train_labels = [], []
    for w in wnids:
        files = sorted((base / "train" / w / "images").glob("*.JPEG"))
        if not files:
            raise _files_error("tiny_imagenet", base / "train" / w / "images", "no *.JPEG files")
        train_paths += files
        train_labels += [index[w]] * len(files)
    val_paths, val_labels = [], []
    for line_no, line in enumerate(ann_file.read_text().splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) < 2 or fields[1] not in index:
            raise _files_error("tiny_imagenet", ann_file, f"line {line_no} has no wnid listed in wnids.txt")
        val_paths.append(base / "val" / "images" / fields[0])
        val_labels.append(index[fields[1]])
    n = len(wnids)
    return Data(
        "tiny_imagenet",
        _to_float(_read_jpegs(train_paths)),
        torch.tensor(train_labels, dtype=torch.int64),
        _to_float(_read_jpegs(val_paths)),
        _labels(np.array(val_labels), n, "tiny_imagenet", ann_file),
        n,
    )


# ---------------------------------------------------------------- registry


@dataclass(frozen=True)
class Loader:
    """How one dataset is read (root → Data); ``expected`` says what belongs in root, for
    error messages. Where its files come from is er_core/download.py's business."""

    load: Callable[[Path], Data]
    expected: str


LOADERS: dict[str, Loader] = {
    "digits": Loader(_load_digits, "Bundled with scikit-learn; no files needed."),
    "mnist": Loader(_load_mnist, f"Expected in root: {', '.join(MNIST_FILES)}."),
    "cifar10": Loader(_load_cifar10, f"Expected in root: {CIFAR_DIR}/{{{','.join(CIFAR_TRAIN)},test_batch}} "
                                     "(torchvision's CIFAR10 layout)."),
    "stl10": Loader(_load_stl10, f"Expected in root: {STL_DIR}/{{train_X,train_y,test_X,test_y}}.bin "
                                 "(torchvision's STL10 layout)."),
    "tiny_imagenet": Loader(_load_tiny_imagenet, f"Expected in root: {TINY_DIR}/ with wnids.txt, "
                                                 "train/<wnid>/images/*.JPEG, val/images/*.JPEG and "
                                                 "val/val_annotations.txt."),
}


def data_root() -> Path:
    """The folder holding one folder per dataset: ``$ER_GRID_DATA_ROOT``, else ``~/er-grid-data``."""
    return Path(os.environ.get(DATA_ROOT_ENV) or DEFAULT_DATA_ROOT).expanduser()


def default_root(name: str) -> Path:
    """Dataset ``name``'s folder under :func:`data_root`."""
    return data_root() / name


def load(name: str, root: str | os.PathLike | None = None, download: bool = False) -> Data:
    """Load ``name`` (see :data:`INFO`) as float32 NCHW in [0, 1] and int64 labels.

    ``root``: the dataset's folder (default :func:`default_root`; ignored for digits).
    ``download``: fetch missing files into root first (needs internet; never done implicitly).
    Raises ValueError for an unknown name, :class:`DatasetFilesError` for missing/corrupt files.
    """
    info(name)  # unknown names → ValueError listing valid ones
    path = default_root(name) if root is None else Path(root).expanduser()
    if download and name in download_sources.SOURCES:  # digits is bundled: nothing to fetch
        download_sources.fetch(name, path)
    return LOADERS[name].load(path)


def for_training(data: Data, device: str | torch.device) -> Data:
    """``data`` with all four tensors on ``device`` when its dataset is small enough to sit there
    whole (``DatasetInfo.on_device``) and ``device`` is not the CPU: training then slices batches
    on the device instead of copying each one over. Otherwise ``data`` itself."""
    if str(device) == "cpu" or not info(data.name).on_device:
        return data
    moved = {k: getattr(data, k).to(device) for k in ("x_train", "y_train", "x_test", "y_test", "x_val", "y_val")
             if getattr(data, k) is not None}
    return dataclasses.replace(data, **moved)


def eval_indices(name: str, n: int = 1000, seed: int = 0) -> torch.Tensor:
    """The fixed evaluation subset: ``RandomState(seed).permutation(test_size)[:n]`` sorted,
    as int64 indices into the test set. Same on every machine (numpy keeps RandomState's
    stream fixed). ValueError if n is outside 1..test_size."""
    test_size = info(name).test_size
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 1 <= n <= test_size:
        raise ValueError(f"n={n!r} must be an int in 1..test_size={test_size} for dataset {name!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**32:
        raise ValueError(f"seed={seed!r} must be an int in 0..2**32-1")
    idx = np.sort(np.random.RandomState(seed).permutation(test_size)[:n])
    return torch.from_numpy(idx.astype(np.int64))
