"""Tiny dataset files in each exact on-disk format, their archives, and a local mirror.

The writers produce what er_core.data reads (IDX gzip, CIFAR-10 pickles, STL-10 binaries, the
Tiny ImageNet tree) with a handful of images, so loaders, downloads and checks are tested
without the real data or the internet. :class:`Mirror` is an HTTP server on 127.0.0.1 in a
thread that honours Range requests (as the real hosts do), logs every request and can drop a
connection part-way, so resuming is tested against a real socket.
"""

from __future__ import annotations

import dataclasses
import gzip
import http.server
import os
import pickle
import shutil
import struct
import tarfile
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from er_core import data

# ---------------------------------------------------------------- the real MNIST


def real_mnist_folder() -> Path:
    """The folder of the real MNIST files for the tests that check the real data itself.

    The real files are 11 MB of data that no repository carries and this suite never downloads
    (it must run offline), so where no data root holds them these tests skip, saying so. Where a
    data root is set explicitly (``$ER_GRID_DATA_ROOT``, as CI sets it to its copy) the data is
    promised, and missing files are a failure, not a skip.
    """
    folder = data.default_root("mnist")
    missing = [f for f in data.MNIST_FILES if not (folder / f).is_file()]
    if missing and os.environ.get(data.DATA_ROOT_ENV):
        pytest.fail(f"{data.DATA_ROOT_ENV} is set but {folder} lacks {', '.join(missing)}")
    if missing:
        pytest.skip(f"data, not a feature: the real MNIST files are not on this machine ({folder}); "
                    f"set {data.DATA_ROOT_ENV} to a copy or run `er-grid data fetch mnist` to run this test")
    return folder


# ---------------------------------------------------------------- writers


def write_idx(path: Path, arr: np.ndarray, magic: int | None = None) -> None:
    magic = magic if magic is not None else {1: 2049, 3: 2051}[arr.ndim]
    header = struct.pack(f">{1 + arr.ndim}I", magic, *arr.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + arr.astype(np.uint8).tobytes())


def write_mnist(folder: Path, sizes: tuple[int, int] = (5, 3), seed: int = 0) -> Path:
    """The four IDX gzip files, ``sizes`` = (train, test) images."""
    rng = np.random.RandomState(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in zip(("train", "t10k"), sizes):
        write_idx(folder / f"{split}-images-idx3-ubyte.gz", rng.randint(0, 256, (n, 28, 28)))
        write_idx(folder / f"{split}-labels-idx1-ubyte.gz", np.arange(n) % 10)
    return folder


def write_cifar(root: Path, n_per_batch: int = 4, str_keys: bool = False) -> dict[str, np.ndarray]:
    """torchvision's layout under ``root/cifar-10-batches-py``; keys b'data'/b'labels' (or
    'data'/'labels'); returns file name → the uint8 (N, 3072) rows written."""
    base = root / "cifar-10-batches-py"
    base.mkdir(parents=True)
    rng = np.random.RandomState(1)
    written = {}
    for i, fname in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        x = rng.randint(0, 256, (n_per_batch, 3072)).astype(np.uint8)
        y = [(i + j) % 10 for j in range(n_per_batch)]
        keys = ("data", "labels") if str_keys else (b"data", b"labels")
        with open(base / fname, "wb") as f:
            pickle.dump({keys[0]: x, keys[1]: y, b"batch_label": fname.encode()}, f, protocol=2)
        written[fname] = x
    return written


def write_stl(root: Path, sizes: dict[str, int] | None = None, seed: int = 2) -> dict[str, np.ndarray]:
    """``root/stl10_binary/{train,test}_{X,y}.bin``; returns split → upright uint8 images."""
    base = root / "stl10_binary"
    base.mkdir(parents=True)
    rng = np.random.RandomState(seed)
    upright = {s: rng.randint(0, 100, (n, 3, 96, 96)).astype(np.uint8)
               for s, n in (sizes or {"train": 3, "test": 2}).items()}
    for split, img in upright.items():
        # STL10 stores each channel column-major: write the transpose in C order.
        img.transpose(0, 1, 3, 2).tofile(base / f"{split}_X.bin")
        np.arange(1, len(img) + 1, dtype=np.uint8).tofile(base / f"{split}_y.bin")  # 1-based
    return upright


def jpeg(path: Path, top: tuple[int, int, int], bottom: tuple[int, int, int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.empty((64, 64, 3), dtype=np.uint8)
    arr[:32], arr[32:] = top, bottom  # edge on a JPEG block boundary: both halves stay flat
    Image.fromarray(arr).save(path, "JPEG", quality=95)


TINY_WNIDS = ["n03", "n01", "n02"]  # unsorted on disk: class index is the position in sorted order
TINY_VAL = [("val_0.JPEG", "n02"), ("val_1.JPEG", "n03"), ("val_2.JPEG", "n01"), ("val_3.JPEG", "n02")]


def write_tiny_imagenet(root: Path) -> Path:
    """``root/tiny-imagenet-200`` with 3 wnids × 2 train images and 4 val images."""
    base = root / "tiny-imagenet-200"
    base.mkdir(parents=True)
    (base / "wnids.txt").write_text("\n".join(TINY_WNIDS) + "\n")
    for w in TINY_WNIDS:
        for k in range(2):
            jpeg(base / "train" / w / "images" / f"{w}_{k}.JPEG", (200, 0, 0), (0, 0, 200))
    for i, (fname, _) in enumerate(TINY_VAL):
        jpeg(base / "val" / "images" / fname, (40 * i, 120, 0), (0, 0, 0))
    (base / "val" / "val_annotations.txt").write_text("".join(f"{f}\t{w}\t0\t0\t63\t63\n" for f, w in TINY_VAL))
    return base


# ---------------------------------------------------------------- what each host serves


def publish(name: str, mirror: Path, work: Path) -> Path:
    """Write tiny files of dataset ``name`` as its host publishes them into ``mirror``
    (MNIST's four gzip files; the CIFAR-10 / STL-10 tar.gz; the Tiny ImageNet zip) and the
    tree a correct fetch must produce into ``work/<name>`` (returned)."""
    tree = work / name
    mirror.mkdir(parents=True, exist_ok=True)
    if name == "mnist":
        write_mnist(tree)
        for f in tree.iterdir():
            shutil.copy(f, mirror / f.name)
        return tree
    if name == "cifar10":
        write_cifar(tree)
        top, archive = "cifar-10-batches-py", "cifar-10-python.tar.gz"
    elif name == "stl10":
        write_stl(tree)
        top, archive = "stl10_binary", "stl10_binary.tar.gz"
    elif name == "tiny_imagenet":
        write_tiny_imagenet(tree)
        top, archive = "tiny-imagenet-200", "tiny-imagenet-200.zip"
    else:
        raise ValueError(name)
    if archive.endswith(".zip"):
        with zipfile.ZipFile(mirror / archive, "w") as z:
            for path in sorted((tree / top).rglob("*")):
                z.write(path, path.relative_to(tree))
    else:
        with tarfile.open(mirror / archive, "w:gz") as t:
            t.add(tree / top, arcname=top)
    return tree


def local_source(name: str, urls: list[str], mirror: Path, tree: Path):
    """The real er_core.download source of ``name`` with its mirrors replaced by ``urls``
    and its md5s by those of the tiny files (``mirror``: what the host serves, ``tree``:
    what fetch yields); the file layout stays the real one."""
    from er_core import download

    real = download.source(name)
    remotes = tuple(dataclasses.replace(r, urls=tuple(u + r.filename for u in urls),
                                        md5=download.md5_of(mirror / r.filename, r.gunzip))
                    for r in real.remotes)
    files = {rel: None if want is None else download.md5_of(tree / rel, real.gunzip_md5)
             for rel, want in real.files.items()}
    return dataclasses.replace(real, remotes=remotes, files=files)


# ---------------------------------------------------------------- local mirror


class Mirror:
    """A static file server on 127.0.0.1 (a thread) for ``folder``, with HTTP Range support.

    ``requests``: (path, Range header or None) per GET. ``cut[path] = n``: the next GET of
    path announces the full length but sends only n bytes, then drops the connection."""

    def __init__(self, folder: Path):
        self.folder, self.requests, self.cut = folder, [], {}
        mirror = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def do_GET(self):
                name = self.path.lstrip("/")
                rng = self.headers.get("Range")
                mirror.requests.append((name, rng))
                path = mirror.folder / name
                if not path.is_file():
                    self.send_error(404)
                    return
                body = path.read_bytes()
                start = 0
                if rng and rng.startswith("bytes=") and rng.endswith("-"):
                    start = int(rng[len("bytes="):-1])
                    if start >= len(body):
                        self.send_error(416)
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                keep = mirror.cut.pop(name, None)
                self.wfile.write(body[start:] if keep is None else body[start:start + keep])
                if keep is not None:
                    self.close_connection = True

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> "Mirror":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
