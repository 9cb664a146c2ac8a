"""Decoded commit records kept per process, read again only when their file changed.

``status``, ``query`` and ``report`` each read every trial's commit record several times (the
filters, the rows, the flags, the plan), and a trial's writer reads its own before every
commit. :func:`load_manifest` keeps each decoded record with its file's identity
(``grid.store.confined.file_stat``: inode, size, mtime and ctime on a local disk; size and
Last-Modified on an object store) and decodes it again only when that changed. A record written
within :data:`RACY_SECONDS` before it was read is not kept (a change in the same timestamp
tick would keep the identity); the writer's own record is kept as it wrote it
(:func:`remember_written`), since a trial has one writer.
"""

from __future__ import annotations

import threading
import time

import pyarrow.fs as pafs

from . import confined, manifest

# (file system, store, trial) → (identity, entries).
_DECODED: dict = {}
_DECODED_LOCK = threading.Lock()
MAX_DECODED = 4096
RACY_SECONDS = 2.0


def load_manifest(fs: pafs.FileSystem, base: str, trial_id: str, verdicts=None) -> dict[str, manifest.Commit]:
    """``grid.store.manifest.decode_manifest`` of the trial's record ({} where there is none),
    read again only when the file changed since this process last read it (DamagedStore as
    ``read_manifest`` and ``decode_manifest`` raise it), its entries checked again only where
    ``verdicts`` (``grid.store.verdicts``) has not seen these bytes pass. The caller gets its own dict."""
    relative = manifest.manifest_relative(trial_id)
    key = (fs.type_name, base, trial_id)
    cached = _DECODED.get(key)
    if cached is not None:
        _size, identity, reason = confined.file_stat(fs, base, relative)
        if reason is None and identity == cached[0]:
            return dict(cached[1])
    started = time.time()
    data, identity = manifest.read_identified(fs, base, trial_id)
    if data is None:
        commits = {}
    elif verdicts is not None and verdicts.record_checked(trial_id, data):
        commits = manifest.decode_checked(relative, data)
    else:
        commits = manifest.decode_manifest(relative, data)
        if verdicts is not None:
            verdicts.record_passed(trial_id, data)
    if identity is not None and max(identity[-2:] if confined.is_local(fs) else identity[-1:]) / 1e9 \
            < started - RACY_SECONDS:
        _remember(key, identity, commits)
    return dict(commits)


def remember_written(fs: pafs.FileSystem, base: str, trial_id: str, commits: dict[str, manifest.Commit]) -> None:
    """What a trial's (single) writer just wrote as its manifest, so its next commit reads it
    from here while the file is unchanged (no timestamp margin: this process wrote it)."""
    _size, identity, reason = confined.file_stat(fs, base, manifest.manifest_relative(trial_id))
    if reason is None:
        _remember((fs.type_name, base, trial_id), identity, dict(commits))


def _remember(key: tuple, identity: tuple, commits: dict) -> None:
    with _DECODED_LOCK:
        if len(_DECODED) >= MAX_DECODED:
            _DECODED.clear()
        _DECODED[key] = (identity, commits)


__all__ = ["MAX_DECODED", "RACY_SECONDS", "load_manifest", "remember_written"]
