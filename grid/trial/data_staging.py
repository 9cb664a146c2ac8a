"""Datasets kept on an object store reach a trial once per node, as local files.

``data_root`` in a spec may be a local folder or a URI (``s3://bucket/datasets``, with
pyarrow's query options such as ``?endpoint_override=…``). For a URI, the dataset's folder
``<uri>/<dataset>/`` is copied once into a node-local cache and every later trial on that
node reads the cached copy; er_core's loaders then read it as from any local folder (er_core
never sees pyarrow). The copy goes to a temporary folder that is renamed when complete, so a
trial killed mid-copy leaves no half dataset behind and the next one copies again.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

import pyarrow.fs as pafs

CACHE_ENV = "ER_GRID_DATA_CACHE"


def is_uri(root: str) -> bool:
    return "://" in root


def cache_root() -> Path:
    """Node-local cache folder: ``$ER_GRID_DATA_CACHE`` or ``~/.cache/er-grid/data``."""
    return Path(os.environ.get(CACHE_ENV, Path.home() / ".cache" / "er-grid" / "data"))


def local_dataset_dir(data_root: str, dataset: str) -> Path:
    """The local folder holding ``dataset``: ``<data_root>/<dataset>``, staged first for a URI."""
    if not is_uri(data_root):
        return Path(data_root).expanduser() / dataset
    # One cache entry per (URI, dataset): two buckets with the same dataset name never mix.
    key = hashlib.sha256(f"{data_root}|{dataset}".encode()).hexdigest()[:12]
    target = cache_root() / f"{dataset}-{key}"
    if target.is_dir():
        return target
    fs, base = pafs.FileSystem.from_uri(data_root)
    source = f"{base.rstrip('/')}/{dataset}"
    if fs.get_file_info(source).type != pafs.FileType.Directory:
        raise FileNotFoundError(
            f"data_root {data_root!r}: no folder {dataset!r} there; put the dataset's standard "
            f"on-disk files under {data_root.split('?')[0].rstrip('/')}/{dataset}/ (see er_core/data.py)"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        pafs.copy_files(source, str(staging), source_filesystem=fs,
                        destination_filesystem=pafs.LocalFileSystem())
        os.replace(staging, target)  # another trial may have won the race: keep its copy
    except OSError:
        if not target.is_dir():
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
