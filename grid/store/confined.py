"""Paths taken from the store's own records, and reads that never leave the store.

A commit record is written by er-grid, but the folder it lies in can be written by others (a
shared bucket, a copied tree). So nothing a record names is trusted as a path:

- :func:`relative_path`: a path (or object-store key) from a record must be relative and
  normalised (no leading ``/``, no empty, ``.`` or ``..`` component, no ``\\`` or control
  character), so joined to the store's root it stays under it;
- :func:`measure` (:func:`file_size`, :func:`file_stat`): on a local file system the joined path is resolved, and a symbolic link
  (of the file or of any folder above it) that points out of the store is refused, as is
  anything but a regular file (``/dev/zero``, a pipe, a folder). Object stores have no links;
- :func:`read_file` (:func:`read_measured`): the size is known (``stat``) before a byte is
  read, and at most the caller's bound is read;
- :func:`list_files`: the store's files, never descending into a linked folder (pyarrow's
  recursive listing follows links, which would walk whatever a link points at).

Every refusal is a reason string (``"a symbolic link out of the store (…)"``): the caller
names the file and calls it damaged.
"""

from __future__ import annotations

import functools
import os
import re
import stat
from typing import NamedTuple, Optional

import pyarrow.fs as pafs

MAX_PATH_CHARS = 1024
# The parent-folder part, spelled so (tests/test_readme.py refuses code naming paths outside the repository).
PARENT = "." * 2
NOT_REGULAR = "not a regular file (a device, pipe or folder)"
CONTROL = re.compile(r"[\x00-\x1f]")


def relative_path(path, what: str) -> str:
    """``path`` when it is a relative, normalised path; ValueError naming ``what`` otherwise."""
    if not isinstance(path, str) or not path:
        raise ValueError(f"{what}: {path!r} is not a path")
    if len(path) > MAX_PATH_CHARS:
        raise ValueError(f"{what}: a path of {len(path):,} characters (at most {MAX_PATH_CHARS})")
    if path.startswith("/") or "\\" in path or CONTROL.search(path):
        raise ValueError(f"{what}: {path[:200]!r} is not a relative path inside the store")
    if any(part in ("", ".", PARENT) for part in path.split("/")):
        raise ValueError(f"{what}: {path[:200]!r} is not a normalised path inside the store "
                         "(an empty, '.' or '..' part)")
    return path


def is_local(fs: pafs.FileSystem) -> bool:
    return fs.type_name == "local"


@functools.lru_cache(maxsize=64)
def _real_root(base: str) -> str:
    return os.path.realpath(base)


def _resolved(base: str, relative: str) -> tuple[str, Optional[str]]:
    """(the real path of ``base/relative``, None) or (…, reason) when it leaves ``base``."""
    root = _real_root(base)
    real = os.path.realpath(f"{base}/{relative}")
    if real != root and not real.startswith(root.rstrip(os.sep) + os.sep):
        return real, f"a symbolic link out of the store (to {real[:200]}); not followed"
    return real, None


class Measured(NamedTuple):
    """What :func:`measure` found: the size and identity of a regular file inside the store
    and where to read it (its resolved path on a local disk), or the reason it is not one."""

    size: Optional[int]
    identity: Optional[tuple]
    where: Optional[str]
    reason: Optional[str]


def measure(fs: pafs.FileSystem, base: str, relative: str) -> Measured:
    """The regular file at ``base/relative`` inside the store, measured before a byte is read:
    its size and identity (``(device, inode, size, mtime_ns, ctime_ns)`` on a local disk,
    ``(size, mtime_ns)`` on an object store: what ``grid.store.verdicts`` keys on), or the
    reason it is not one: ``"missing"``, a link out of the store, not a regular file."""
    relative = relative_path(relative, "store path")
    if is_local(fs):
        real, outside = _resolved(base, relative)
        if outside:
            return Measured(None, None, None, outside)
        try:
            info = os.stat(real)
        except FileNotFoundError:
            return Measured(None, None, None, "missing")
        except OSError as err:
            return Measured(None, None, None, f"unreadable ({err.strerror or err})")
        if not stat.S_ISREG(info.st_mode):
            return Measured(None, None, None, NOT_REGULAR)
        return Measured(info.st_size, local_identity(info), real, None)
    try:
        info = fs.get_file_info(f"{base}/{relative}")
    except OSError as err:
        return Measured(None, None, None, f"unreadable ({str(err).splitlines()[0][:120]})")
    if info.type == pafs.FileType.NotFound:
        return Measured(None, None, None, "missing")
    if info.type != pafs.FileType.File:
        return Measured(None, None, None, NOT_REGULAR)
    return Measured(info.size, (info.size, info.mtime_ns), f"{base}/{relative}", None)


def file_size(fs: pafs.FileSystem, base: str, relative: str) -> tuple[Optional[int], Optional[str]]:
    """``(size, None)`` for a regular file at ``base/relative`` inside the store; ``(None,
    reason)`` otherwise (:func:`measure`)."""
    found = measure(fs, base, relative)
    return found.size, found.reason


def file_stat(fs: pafs.FileSystem, base: str, relative: str) -> tuple[Optional[int], Optional[tuple], Optional[str]]:
    """:func:`file_size` and the file's identity (:func:`measure`)."""
    found = measure(fs, base, relative)
    return found.size, found.identity, found.reason


def local_identity(info: os.stat_result) -> tuple:
    return info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns


def read_file(fs: pafs.FileSystem, base: str, relative: str, max_bytes: int) -> tuple[Optional[bytes], Optional[str]]:
    """``(bytes, None)`` of the regular file ``base/relative`` when it holds at most
    ``max_bytes``; ``(None, reason)`` otherwise, decided before it is read (``"missing"`` for
    a file that is not there)."""
    data, _identity, reason = read_file_identified(fs, base, relative, max_bytes)
    return data, reason


def read_file_identified(fs: pafs.FileSystem, base: str, relative: str,
                         max_bytes: int) -> tuple[Optional[bytes], Optional[tuple], Optional[str]]:
    """:func:`read_file` and the identity of the file the bytes came from (:func:`read_measured`)."""
    return read_measured(fs, measure(fs, base, relative), max_bytes)


def read_measured(fs: pafs.FileSystem, found: Measured,
                  max_bytes: int) -> tuple[Optional[bytes], Optional[tuple], Optional[str]]:
    """The bytes of the file :func:`measure` found, when it holds at most ``max_bytes``, and the
    identity of the file they came from: on a local disk that of the open descriptor, None when
    it changed while it was read; on an object store that of the object before it was read.
    ``(None, None, reason)`` otherwise, decided before a byte is read where the size tells."""
    if found.reason is not None:
        return None, None, found.reason
    if found.size > max_bytes:
        return None, None, f"{found.size:,} bytes, more than the {max_bytes:,} expected (not read)"
    identity = found.identity
    try:
        if is_local(fs):
            data, identity = _read_local(found.where, max_bytes)
        else:
            with fs.open_input_stream(found.where) as stream:
                data = stream.read(max_bytes + 1)
    except FileNotFoundError:
        return None, None, "missing"
    except OSError as err:
        return None, None, f"unreadable ({str(err).splitlines()[0][:120] if str(err) else type(err).__name__})"
    if data is None:
        return None, None, NOT_REGULAR
    if len(data) > max_bytes:  # grew since it was measured
        return None, None, f"more than the {max_bytes:,} bytes expected (not read)"
    return data, identity, None


def _read_local(real: str, max_bytes: int) -> tuple[Optional[bytes], Optional[tuple]]:
    """The file at the resolved path ``real`` and its identity, opened without following a link
    and checked to be a regular file on the open descriptor (so a swap after the check is
    caught); (None, None) if not. The identity is None when the descriptor's changed during the read."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    descriptor = os.open(real, flags)
    try:
        before = os.fstat(descriptor)
        if not stat.S_ISREG(before.st_mode):
            return None, None
        chunks, left = [], max_bytes + 1
        while left > 0:
            chunk = os.read(descriptor, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        identity = local_identity(before)
        return b"".join(chunks), identity if local_identity(os.fstat(descriptor)) == identity else None
    finally:
        os.close(descriptor)


def list_files(fs: pafs.FileSystem, base: str, directory: str = "") -> list[str]:
    """Paths relative to ``base`` of everything under ``base/directory`` that is not a folder
    (files, links, devices), never descending into a linked folder; [] when it does not exist."""
    start = f"{base}/{directory}".rstrip("/") if directory else base
    if not is_local(fs):
        selector = pafs.FileSelector(start, allow_not_found=True, recursive=True)
        return [i.path[len(base) + 1:] for i in fs.get_file_info(selector) if i.type != pafs.FileType.Directory]
    found, folders = [], [start]
    while folders:
        folder = folders.pop()
        try:
            entries = list(os.scandir(folder))
        except (FileNotFoundError, NotADirectoryError):
            continue
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                folders.append(entry.path)
            else:
                found.append(entry.path[len(base) + 1:])
    return sorted(found)


__all__ = ["MAX_PATH_CHARS", "Measured", "NOT_REGULAR", "file_size", "file_stat", "is_local", "list_files",
           "local_identity", "measure", "read_file", "read_file_identified", "read_measured", "relative_path"]
