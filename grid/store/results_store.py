"""The results store: parquet files, one per (trial, attack, ε, batch), and a commit record.

Layout under ``root`` (a local path or a URI that ``pyarrow.fs.FileSystem.from_uri`` knows)::

    examples/experiment=<e>/dataset=<d>/method=<m>/<trial_id>__<attack>__eps<eps>__b<batch>.parquet
    trials/experiment=<e>/dataset=<d>/method=<m>/<trial_id>.parquet
    detection/, codes/, sanity/       the post-training stages' tables (grid.store.layout)
    _commits/<trial_id>.json          the commit record of each trial (grid.store.manifest)
    _moved_aside/<UTC time>/…         files replaced by a repair, kept as evidence

Where a store lives: ``<storage>/<experiment>/results``. Every reader (``grid.store.readers``,
each ``er-grid`` command) also takes the experiment folder itself (``grid.store.open_results``);
a folder with neither is one clear error.

What counts: exactly the files named in their trial's commit record (``grid.store.manifest``).
Copies (``…__b0 (copy).parquet``), ``backup/`` and ``method=none.bak`` folders, foreign and
temp files are never read (``er-grid status`` lists them). A committed file that is missing
or differs from its commit is damaged: readers raise :class:`~grid.store.manifest.DamagedStore`
naming it (or skip it, ``damaged="skip"``) and ``er-grid resume`` recomputes it after moving
it aside. Duplicate (trial, attack, ε, sample) keys cannot arise and are checked on each read.

Plain Hive partitioning: ``experiment``, ``dataset``, ``method`` live in directory names
only, so any tool's defaults give every column (``pandas.read_parquet(root + "/examples")``,
duckdb); those tools read every parquet file, committed or not, hence the project's readers.
Writes are atomic: a dot-named temp file renamed over the final name on POSIX; one PUT
(already all-or-nothing) on object stores, where a rename is a copy plus a delete.

S3 with a custom endpoint (moto, MinIO): ``ResultStore("s3://bucket/prefix?endpoint_override=
127.0.0.1:9000&scheme=http")`` with the AWS_* credentials in the environment, or
``filesystem=pyarrow.fs.S3FileSystem(...)`` and a plain ``bucket/prefix``.
"""

from __future__ import annotations

import datetime as _dt
import io
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Optional, Union

import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from . import manifest, manifest_cache
from .layout import EXAMPLES_DIR, MOVED_ASIDE_DIR, TRIALS_DIR, UNIQUE_KEYS
from .manifest import Commit, DamagedStore
from .read import READ_THREADS, key_matches, read_committed
from .rows import (
    PARTITION_COLUMNS, SEP, eps_text, file_schema, name_part, partition_value, rows_to_table, without_partitions,
)
from .schemas import ROW_SCHEMA, TRIAL_SCHEMA
from .verdicts import Verdicts, verdicts_for

# --------------------------------------------------------------------------- store


# Object-store PUTs are atomic and renames are not (see the module docstring).
OBJECT_STORES = ("s3", "gcs", "abfs")


class ResultStore:
    """Parquet results under ``root`` (local path, ``file://``, ``s3://``, ``gs://``, ...).

    ``filesystem``: an explicit ``pyarrow.fs.FileSystem``; ``root`` is then a path on it.
    Constructing a store reads nothing (a trial creates one before anything is written);
    readers that take a user's path go through ``grid.store.open_results``.
    """

    def __init__(self, root: Union[str, Path], filesystem: Optional[pafs.FileSystem] = None):
        root = str(root)
        if not root:
            raise ValueError("ResultStore: root must be a non-empty path or URI")
        if filesystem is not None:
            self.fs, self.base = filesystem, root.rstrip("/")
        elif "://" in root:
            self.fs, self.base = pafs.FileSystem.from_uri(root)
            self.base = self.base.rstrip("/")
        else:
            self.fs, self.base = pafs.LocalFileSystem(), str(Path(root).expanduser().resolve())
        self.root = root
        # Object-store PUTs are atomic and renames are not (see module docstring).
        self.atomic_put = self.fs.type_name in OBJECT_STORES
        self._verdicts: Optional[Verdicts] = None

    @property
    def verdicts(self) -> Verdicts:
        """What earlier commands learnt of this store's committed files (``grid.store.verdicts``;
        one per folder in a process); ``save()`` it after a pass over the files."""
        if self._verdicts is None:
            self._verdicts = verdicts_for(self)
        return self._verdicts

    # -- paths ----------------------------------------------------------------------------

    def partition_dir(self, table: str, experiment: str, dataset: str, method: str) -> str:
        """``<base>/<table>/experiment=<e>/dataset=<d>/method=<m>``."""
        parts = [f"{k}={partition_value(k, v)}" for k, v in
                 zip(PARTITION_COLUMNS, (experiment, dataset, method))]
        return "/".join([self.base, table, *parts])

    def relative(self, path: str) -> str:
        """``path`` relative to the store root (how the commit record names files)."""
        if not path.startswith(self.base + "/"):
            raise ValueError(f"{path} is not inside the store {self.base}")
        return path[len(self.base) + 1:]

    @staticmethod
    def batch_file_name(trial_id: str, attack: str, eps: float, batch: int) -> str:
        """``<trial_id>__<attack>__eps<repr(eps)>__b<batch>.parquet``."""
        name_part("trial_id", trial_id)
        name_part("attack", attack)
        return f"{trial_id}{SEP}{attack}{SEP}eps{eps_text(eps)}{SEP}b{int(batch)}.parquet"

    # -- writing --------------------------------------------------------------------------

    def write_batch(
        self, rows: list[dict], *, experiment: str, dataset: str, method: str, trial_id: str,
        attack: str, eps: float, batch: int,
    ) -> str:
        """Store and commit one evaluation batch's rows; a rewrite replaces the earlier file.

        ``rows``: one dict per example with every :data:`ROW_SCHEMA` column; the batch key
        columns (the keyword arguments) and ``code_version``/``created_at`` may be omitted
        and are filled here; if given they must agree with the keyword arguments.
        Missing/extra/mistyped columns raise ValueError. Returns the file's path.
        """
        if batch < 0:
            raise ValueError(f"write_batch: batch must be ≥ 0, got {batch!r}")
        key = {"experiment": experiment, "dataset": dataset, "method": method, "trial_id": trial_id,
               "attack": attack, "eps": float(eps), "batch": int(batch)}
        table = without_partitions(rows_to_table(rows, ROW_SCHEMA, fill=key))
        path = "/".join([self.partition_dir(EXAMPLES_DIR, experiment, dataset, method),
                         self.batch_file_name(trial_id, attack, eps, batch)])
        self.commit_table(EXAMPLES_DIR, table, path, key, range_columns=("sample_idx",))
        return path

    def write_trial(self, row: dict) -> str:
        """Store and commit (or replace) the one :data:`TRIAL_SCHEMA` row of a trial; returns its path."""
        if not isinstance(row, dict):
            raise ValueError(f"write_trial: expected a dict row, got {type(row).__name__}")
        table = without_partitions(rows_to_table([row], TRIAL_SCHEMA, fill={}))
        name = f"{name_part('trial_id', row['trial_id'])}.parquet"
        path = "/".join([self.partition_dir(TRIALS_DIR, row["experiment"], row["dataset"], row["method"]), name])
        key = {c: row[c] for c in (*PARTITION_COLUMNS, "trial_id")}
        self.commit_table(TRIALS_DIR, table, path, key)
        return path

    def commit_table(self, table_name: str, table: pa.Table, path: str, key: dict,
                     range_columns: tuple = ()) -> Commit:
        """Write ``table`` as parquet at ``path`` and record its commit in its trial's manifest.

        ``key``: the values every row shares, with ``trial_id`` and the partition values. Every
        table (examples, trials, detection) is written through here.
        """
        trial_id = name_part("trial_id", key["trial_id"])
        buffer = io.BytesIO()
        pq.write_table(table, buffer)
        data = buffer.getvalue()
        commit = manifest.describe(table_name, self.relative(path), table, data, key, range_columns)
        commits = self.trial_commits(trial_id, repair=True)
        if self.fs.get_file_info(path).type != pafs.FileType.NotFound:
            # Replacing an intact committed file is an ordinary rewrite; anything else there
            # (damaged, or never committed) is kept as evidence.
            previous = commits.get(commit.path)
            if previous is None or manifest.check(self.fs, self.base, previous) is not None:
                self.move_aside(path)
        self.put_atomic(path, data)
        commits[commit.path] = commit
        self.put_atomic(manifest.manifest_path(self.base, trial_id), manifest.encode_manifest(trial_id, commits))
        manifest_cache.remember_written(self.fs, self.base, trial_id, commits)
        return commit

    def write_atomic(self, table: pa.Table, path: str) -> Commit:
        """Write and commit ``table`` at a store path ``<base>/<table>/experiment=…/dataset=…/
        method=…/<trial_id>[__<anything>].parquet`` (the commit key is read from the path).
        How tables other than examples and trials (detection, …) are stored."""
        parts = self.relative(path).split("/")
        if len(parts) != 5 or not all(p.startswith(f"{c}=") for p, c in zip(parts[1:4], PARTITION_COLUMNS)):
            raise ValueError(f"write_atomic: {path} is not <table>/experiment=…/dataset=…/method=…/<file> in the store")
        key = {c: p.split("=", 1)[1] for p, c in zip(parts[1:4], PARTITION_COLUMNS)}
        key["trial_id"] = parts[4].removesuffix(".parquet").split(SEP, 1)[0]
        return self.commit_table(parts[0], table, path, key)

    def put_atomic(self, path: str, data: bytes) -> None:
        """Write ``data`` at ``path`` so a reader sees the old file or the new one, never half."""
        directory, _, name = path.rpartition("/")
        if self.atomic_put:
            with self.fs.open_output_stream(path) as out:
                out.write(data)
            return
        self.fs.create_dir(directory, recursive=True)
        tmp = f"{directory}/.{name}.tmp-{uuid.uuid4().hex}"
        try:
            with self.fs.open_output_stream(tmp) as out:
                out.write(data)
            self.fs.move(tmp, path)  # rename: atomic on POSIX, replaces an existing file
        except BaseException:
            # Leave no temp file behind where we can help it (a SIGKILL still can; never read).
            _delete_quietly(self.fs, tmp)
            raise

    def move_aside(self, path: str) -> str:
        """Move the file at ``path`` to ``_moved_aside/<UTC time>/<its relative path>``; returns
        the new path. Evidence of damage is kept, never deleted (an object store copies, then
        deletes the original)."""
        stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
        target = f"{self.base}/{MOVED_ASIDE_DIR}/{stamp}/{self.relative(path)}"
        self.fs.create_dir(target.rpartition("/")[0], recursive=True)
        if self.atomic_put:
            self.fs.copy_file(path, target)
            self.fs.delete_file(path)
        else:
            self.fs.move(path, target)
        return target

    # -- the commit record ----------------------------------------------------------------

    def trial_commits(self, trial_id: str, repair: bool = False) -> dict[str, Commit]:
        """Relative path → :class:`~grid.store.manifest.Commit` of every committed file of one trial.

        A damaged manifest raises DamagedStore; with ``repair`` (the trial's own writer) it is
        moved aside instead and the trial starts a new one: its files then count as not
        committed and are recomputed.
        """
        path = manifest.manifest_path(self.base, trial_id)
        try:
            # Bounded and confined: a manifest that is a link out of the store, a device or
            # oversized is damaged before a byte of it is held (grid.store.confined). Decoded
            # again only when its file changed (grid.store.manifest_cache).
            return manifest_cache.load_manifest(self.fs, self.base, trial_id, self.verdicts)
        except DamagedStore:
            if not repair:
                raise
            self.move_aside(path)
            return {}

    def commits(self, table: Optional[str] = None, damaged: str = "raise", **filters) -> list[Commit]:
        """Every committed file (of ``table`` if given) whose key values may match ``filters``
        (a single ``trial_id`` reads only that trial's manifest). A damaged manifest raises
        DamagedStore, or is left out with ``damaged="skip"``."""
        trial_id = filters.get("trial_id")
        if isinstance(trial_id, str):
            names = [f"{trial_id}.json"]
        else:
            names = [i.base_name for i in self._list(f"{self.base}/{manifest.COMMITS_DIR}", recursive=False)
                     if i.base_name.endswith(".json") and not i.base_name.startswith(".")]
        found = []
        for name in names:
            try:
                entries = self.trial_commits(name.removesuffix(".json")).values()
            except DamagedStore:
                if damaged == "raise":
                    raise
                continue
            found += [c for c in entries if (table is None or c.table == table) and key_matches(c.key, filters)]
        self.verdicts.save()  # the records' checks
        return sorted(found, key=lambda c: c.path)

    def files(self, table: str = EXAMPLES_DIR, **filters) -> list[str]:
        """Absolute paths of the committed files of ``table`` that may hold rows matching ``filters``."""
        return [f"{self.base}/{c.path}" for c in self.commits(table, **filters)]

    def is_committed_intact(self, path: str) -> bool:
        """True when the file at ``path`` is committed and verifies against its commit."""
        relative = self.relative(path)
        trial_id = relative.rsplit("/", 1)[-1].split(SEP, 1)[0].removesuffix(".parquet")
        commit = self.trial_commits(trial_id).get(relative)
        return commit is not None and manifest.check(self.fs, self.base, commit, verdicts=self.verdicts) is None

    def done_batches(self, experiment: str, dataset: str, method: str, trial_id: str) -> set[tuple[str, float, int]]:
        """(attack, ε, batch) of every committed *intact* batch of ``trial_id``: what a resumed
        trial skips. Missing or damaged committed files are left out, so they are recomputed."""
        commits = [c for c in self.trial_commits(trial_id, repair=True).values() if c.table == EXAMPLES_DIR
                   and (c.key["experiment"], c.key["dataset"], c.key["method"]) == (experiment, dataset, method)]
        expected = file_schema(ROW_SCHEMA)
        with ThreadPoolExecutor(max_workers=READ_THREADS) as pool:  # one GET per file on object stores
            reasons = list(pool.map(lambda c: manifest.check(self.fs, self.base, c, expected, self.verdicts), commits))
        self.verdicts.save()
        return {manifest.batch_key(c) for c, reason in zip(commits, reasons)
                if reason is None and manifest.batch_key(c) is not None}

    # -- reading --------------------------------------------------------------------------

    def load(self, damaged: str = "raise", columns: Optional[list] = None, categorical: bool = False,
             **filters) -> pd.DataFrame:
        """Example rows as a DataFrame; see :func:`load`."""
        return self.load_table(EXAMPLES_DIR, ROW_SCHEMA, filters, damaged=damaged, columns=columns,
                               categorical=categorical)

    def load_trials(self, damaged: str = "raise", **filters) -> pd.DataFrame:
        """Trial rows as a DataFrame; see :func:`load_trials`."""
        return self.load_table(TRIALS_DIR, TRIAL_SCHEMA, filters, damaged=damaged)

    def _list(self, directory: str, recursive: bool) -> list[pafs.FileInfo]:
        selector = pafs.FileSelector(directory, allow_not_found=True, recursive=recursive)
        return [i for i in self.fs.get_file_info(selector) if i.type == pafs.FileType.File]

    def load_table(self, table: str, schema: pa.Schema, filters: dict, damaged: str = "raise",
                   unique: Optional[tuple] = None, columns: Optional[list] = None,
                   categorical: bool = False) -> pd.DataFrame:
        """Rows of one table (``examples``, ``trials``, ``detection``…) matching ``filters``, from
        exactly the committed files. ``damaged``: "raise" (DamagedStore naming each damaged
        committed file) or "skip" (leave them out). ``unique``: the row key (default
        :data:`UNIQUE_KEYS`); a duplicate raises DamagedStore. ``columns``: the columns to read
        (default: all), in that order; only those are decoded. ``categorical``: string columns as
        pandas categoricals, categories sorted (``grid.store.read.as_categories``)."""
        return read_committed(self, table, schema, filters, damaged, unique or UNIQUE_KEYS.get(table, ()), columns,
                              categorical)


def _delete_quietly(fs: pafs.FileSystem, path: str) -> None:
    try:
        fs.delete_file(path)
    except (FileNotFoundError, OSError):
        pass  # already gone or never created: nothing to clean


__all__ = ["ResultStore"]
