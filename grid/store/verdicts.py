"""Verdicts on committed files, kept between commands so that an unchanged file is checked once.

:func:`grid.store.manifest.verify` reads a committed file whole, compares its sha256, reads its
footer and decodes its key and range columns before it believes it, and every entry of a commit
record is checked before it is believed. Three things learnt are worth keeping:

- **the record's checks**: a trial's commit record whose sha256 passed ``decode_manifest``'s
  checks before is decoded without checking each entry again (the checks are a function of
  the bytes);
- **the entry's checks**: bytes whose sha256 is an entry's passed its footer and value checks
  against that entry. The sha256 is part of the entry, so this verdict depends on the entry
  alone (:attr:`~grid.store.manifest.Commit.digest`): a reader that has read and hashed the
  bytes again skips the footer and value checks and decodes only the columns it needs. Every
  byte a reader decodes is still compared by sha256 first;
- **the file's identity**: the file those bytes were read from. On a local disk (device,
  inode, size, mtime_ns, ctime_ns): any write changes mtime and ctime, a user can set mtime
  (``touch``) but not ctime, and a file replaced by a rename is another inode. On an object store
  (size, Last-Modified), which the server sets on every PUT (pyarrow's file systems expose no
  ETag). ``er-grid status`` believes an unchanged identity without reading the file.

Verdicts are kept with a digest of the code that gives them (``manifest`` and ``confined``):
a changed check is run again on everything. An identity is kept only when it was the same before and after the bytes were read (the same
open descriptor on a local disk) and when the file's timestamps are at least
:data:`RACY_SECONDS` older than the read: a change within the same timestamp tick as the
last one would keep the timestamps (git's index has the same rule for "racily clean" files).

Where: ``$ER_GRID_VERDICT_CACHE`` (``off`` turns it off), else ``$XDG_CACHE_HOME/er-grid/verdicts``,
else ``~/.cache/er-grid/verdicts``; one folder per store (a hash of where it lies), one JSON
file per trial, each written whole (temporary name and rename). Never inside the results
folder: whoever can write a shared store could write verdicts there. The folder is the user's
own; a verdict file that cannot be read is ignored (a verdict only ever skips a check, and only
for a file or entry that matches it exactly).
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import shutil
import threading
import time
from pathlib import Path
from typing import Optional

from grid.common.bounded_json import bounded_json
from grid.common.errors import DamagedRecord

CACHE_ENV = "ER_GRID_VERDICT_CACHE"


def _checks_digest() -> str:
    """sha256 of the code that gives the verdicts (the record's and the files' checks, the
    path rules): verdicts given by other code are not read, so a changed check runs again."""
    from . import confined, manifest

    try:
        text = inspect.getsource(manifest) + inspect.getsource(confined)
    except (OSError, TypeError):  # no source at hand (a frozen install): the code's version instead
        from grid.common.fingerprint import er_grid_code_version

        text = er_grid_code_version()
    return hashlib.sha256(text.encode()).hexdigest()[:16]


FORMAT = f"er-grid-verdicts/1/{_checks_digest()}"
# Local timestamps tick every few ms; an object store's Last-Modified comes from the server's
# clock, which may be off from ours.
RACY_SECONDS = {"local": 2.0, "object": 120.0}
MAX_VERDICT_FILE_BYTES = 16 << 20
# Where a trial's verdicts keep the sha256 of its commit record that passed its checks (no
# entry digest is this string: they are hex).
RECORD = "record"
# A folder per store: past this many, folders of stores that are gone (or untouched for
# STALE_DAYS) are removed when a new one is made.
MAX_STORES = 64
STALE_DAYS = 30


def cache_root() -> Optional[Path]:
    """The verdict folder, or None when verdicts are turned off."""
    chosen = os.environ.get(CACHE_ENV)
    if chosen:
        return None if chosen.lower() == "off" else Path(chosen).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "er-grid" / "verdicts"


def store_identity(store) -> str:
    """What names a store's verdict folder: its file system and where the store lies on it."""
    where = os.path.realpath(store.base) if store.fs.type_name == "local" else store.root
    return f"{store.fs.type_name}:{where}"


class Verdicts:
    """The verdicts of one store: looked up and recorded by :func:`grid.store.manifest.verify`
    (from reading threads at once), written back by :meth:`save`."""

    def __init__(self, store, root: Optional[Path] = None):
        root = cache_root() if root is None else root
        self.local = store.fs.type_name == "local"
        self.identity = store_identity(store)
        self.folder = None if root is None else root / hashlib.sha256(self.identity.encode()).hexdigest()[:24]
        self._lock = threading.Lock()
        self._trials: dict[str, dict] = {}
        self._changed: set[str] = set()

    def _trial(self, trial_id: str) -> dict:
        with self._lock:
            if trial_id not in self._trials:
                self._trials[trial_id] = self._read(trial_id)
            return self._trials[trial_id]

    def _read(self, trial_id: str) -> dict:
        if self.folder is None:
            return {}
        try:
            with open(self.folder / f"{trial_id}.json", "rb") as handle:
                data = handle.read(MAX_VERDICT_FILE_BYTES + 1)
            record = bounded_json(data, "verdicts", MAX_VERDICT_FILE_BYTES)
        except (OSError, DamagedRecord):
            return {}
        if not isinstance(record, dict) or record.get("format") != FORMAT or not isinstance(record.get("files"), dict):
            return {}
        return {**record["files"], RECORD: record.get("record")}

    def record_checked(self, trial_id: str, data: bytes) -> bool:
        """The trial's commit record ``data`` passed ``decode_manifest``'s checks before."""
        return self._trial(trial_id).get(RECORD) == hashlib.sha256(data).hexdigest()

    def record_passed(self, trial_id: str, data: bytes) -> None:
        """The trial's commit record ``data`` passed ``decode_manifest``'s checks."""
        digest, verdicts = hashlib.sha256(data).hexdigest(), self._trial(trial_id)
        with self._lock:
            if verdicts.get(RECORD) != digest:
                verdicts[RECORD] = digest
                self._changed.add(trial_id)

    def checked(self, commit) -> bool:
        """Bytes with ``commit``'s sha256 passed the footer and value checks against ``commit``."""
        return commit.digest in self._trial(commit.key["trial_id"])

    def unchanged(self, commit, identity) -> bool:
        """The file is the one whose bytes were verified against ``commit`` (same identity)."""
        return identity is not None and self._trial(commit.key["trial_id"]).get(commit.digest) == list(identity)

    def record(self, commit, identity, started: float) -> None:
        """``commit``'s checks passed on bytes read (from ``started``, a ``time.time()``) from the
        file with ``identity`` (None when it changed during the read: the entry's checks are kept,
        the identity not)."""
        if identity is not None and not self._settled(identity, started):
            identity = None
        verdicts = self._trial(commit.key["trial_id"])
        value = None if identity is None else list(identity)
        with self._lock:
            if commit.digest not in verdicts or (value is not None and verdicts[commit.digest] != value):
                verdicts[commit.digest] = value
                self._changed.add(commit.key["trial_id"])

    def _settled(self, identity, started: float) -> bool:
        """The file's timestamps lie :data:`RACY_SECONDS` before the read began."""
        newest = max(identity[-2:]) if self.local else identity[-1]
        return newest / 1e9 < started - RACY_SECONDS["local" if self.local else "object"]

    def save(self) -> None:
        """Write the trials whose verdicts changed, each file whole; a folder that cannot be
        written leaves verdicts unsaved (the next command checks those files again)."""
        if self.folder is None or not self._changed:
            return
        try:
            self._make_folder()
            for trial_id in sorted(self._changed):
                files = {k: v for k, v in self._trials[trial_id].items() if k != RECORD}
                payload = json.dumps({"format": FORMAT, "record": self._trials[trial_id].get(RECORD), "files": files},
                                     sort_keys=True).encode()
                temporary = self.folder / f".{trial_id}.{os.getpid()}.{threading.get_ident()}.tmp"
                temporary.write_bytes(payload)
                os.replace(temporary, self.folder / f"{trial_id}.json")
        except OSError:
            return
        self._changed.clear()

    def _make_folder(self) -> None:
        if self.folder.is_dir():
            return
        self.folder.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        prune_stores(self.folder.parent)
        self.folder.mkdir(mode=0o700, exist_ok=True)
        (self.folder / "store.json").write_text(json.dumps({"store": self.identity}))


_SHARED: dict = {}
_SHARED_LOCK = threading.Lock()


def verdicts_for(store) -> Verdicts:
    """The one :class:`Verdicts` of this process for the store ``store`` lies in (every
    ``ResultStore`` of one folder shares it: commands open the store several times)."""
    key = (cache_root(), store_identity(store))
    with _SHARED_LOCK:
        if key not in _SHARED:
            _SHARED[key] = Verdicts(store, key[0])
        return _SHARED[key]


def prune_stores(root: Path) -> None:
    """Past :data:`MAX_STORES` folders, remove those of local stores that are gone and those
    untouched for :data:`STALE_DAYS` (temporary stores of tests, moved experiments)."""
    folders = [p for p in root.iterdir() if p.is_dir()]
    if len(folders) < MAX_STORES:
        return
    for folder in folders:
        try:
            kind, _, where = json.loads((folder / "store.json").read_text())["store"].partition(":")
            gone = kind == "local" and not os.path.isdir(where)
            stale = time.time() - folder.stat().st_mtime > STALE_DAYS * 86400
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            gone, stale = True, True
        if gone or stale:
            shutil.rmtree(folder, ignore_errors=True)


__all__ = ["CACHE_ENV", "FORMAT", "RACY_SECONDS", "Verdicts", "cache_root", "prune_stores", "store_identity",
           "verdicts_for"]
