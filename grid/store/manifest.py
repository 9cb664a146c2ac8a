"""The results store's commit record: a file counts as results only once its commit is recorded.

One manifest per trial, ``<results>/_commits/<trial_id>.json``, names every file of that trial
that is part of the store: every table a trial writes (examples batches, the trial row,
detection, codes and sanity rows; ``grid.store.layout``)::

    {"format": "er-grid-commits/1", "trial_id": "1a2b3c4d5e",
     "files": {"examples/experiment=e/dataset=d/method=m/1a2b3c4d5e__pgd__eps0.1__b0.parquet":
                 {"table": "examples", "rows": 20, "bytes": 9120, "sha256": "…",
                  "schema": "<hash of the file's columns and types>",
                  "key": {"experiment": "e", …, "attack": "pgd", "eps": 0.1, "batch": 0},
                  "ranges": {"sample_idx": [3, 355]}}}}

``key`` holds the columns that have one value in the whole file (the Hive partition values
and e.g. trial, attack, ε, batch); ``ranges`` the min and max of the columns that vary.

Why one manifest per trial (and not one log for the store, as Delta Lake's ``_delta_log``):
a grid has many writers at once (one per running trial, on many nodes) but each trial has
exactly one, since Tune runs one instance of a trial at a time. A per-trial manifest
therefore has a single writer and can be replaced whole (read, add the entry, write) with no
lock and no conditional write. One shared log needs "put if absent" on a numbered object so
that concurrent writers do not overwrite each other's commit (Delta on S3 needs a DynamoDB
log store for exactly this); per-trial manifests never contend. Readers list ``_commits/``
and read one small JSON per trial (60 for the paper grid), not one object per batch.

What a commit costs: the record is rewritten whole (an object store has no append), but from
each entry's canonical JSON encoded once (:attr:`Commit.encoded`), and the writer takes the
record it last wrote from memory while the file is unchanged (``grid.store.manifest_cache``): no
entry is decoded or encoded again, so a commit costs the write of a few hundred bytes per entry
(``bench/bench_store.py`` measures it flat up to thousands of entries).

Atomicity: a manifest is written like every file of the store (``ResultStore.put_atomic``):
temporary name and rename on POSIX, one PUT on object stores (all-or-nothing, and since 2020
strongly read-after-write consistent on S3). The data file is written first and its commit
second, so a writer killed in between leaves a file with no commit: not part of the store,
recomputed on resume. Should a zombie process of the same trial ever write at the same time,
the one entry it overwrites is counted missing and recomputed; rows are never wrong.

:func:`verify` checks a committed file against its entry: present, same size and sha256,
parquet with the committed schema, the committed row count, keys and ranges; :func:`check`
says the same without returning rows. Both keep what they learn in a verdict cache
(``grid.store.verdicts``): the sha256 of every file a reader decodes is compared every time.

Nothing in a record is trusted before it is checked (ARCHITECTURE.md, "Reading under a
bound"): an entry's path must be relative and normalised and lie under its own table's folder
(``grid.store.confined``), its key must hold the trial and its partition values; a manifest
is read only up to :data:`MAX_MANIFEST_BYTES` and :data:`~grid.common.bounded_json.MAX_DEPTH`
levels. :func:`verify` measures a file before it reads it, reads it only when its size is the
committed one (or, to say what changed, close to it), compares the sha256 before parsing, and
checks the parquet footer (row count, rows and decoded size within bounds) before decoding a
value. Each failure is a reason, never an exception.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import time
from typing import Optional

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from grid.common.bounded_json import bounded_json
from grid.common.errors import DamagedRecord

from . import confined
from .rows import PARTITION_COLUMNS

COMMITS_DIR = "_commits"
FORMAT = "er-grid-commits/1"
# Bounds on what one record or file may make a reader hold. A trial's manifest is ~0.5 KB per
# committed file (a few thousand files at most); a committed file is one batch, trial row or
# stage table (a few MB at most); MAX_DECODED_BYTES bounds the footer's declared uncompressed size.
MAX_MANIFEST_BYTES = 64 << 20
MAX_FILE_BYTES = 256 << 20
MAX_ROWS = 1_000_000
MAX_DECODED_BYTES = 1 << 30
# A file of another size than committed is read only this far past its committed size, to say
# what changed (truncated, other schema, other rows); anything larger is refused unread.
DIAGNOSIS_SLACK = 1 << 20
SCALARS = (str, int, float, bool, type(None))


class DamagedStore(ValueError):
    """Committed results that cannot be read as committed (missing, changed, or duplicated)."""


@dataclasses.dataclass(frozen=True)
class Commit:
    """One committed file: ``path`` relative to the store root, and what it must hold."""

    path: str
    table: str
    rows: int
    bytes: int
    sha256: str
    schema: str
    key: dict
    ranges: dict

    def to_json(self) -> dict:
        # Shallow (json.dumps only reads it): a deep copy of every entry (dataclasses.asdict)
        # would cost more than the rest of a commit.
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "path"}

    @functools.cached_property
    def encoded(self) -> str:
        """The entry as the manifest spells it (canonical JSON), encoded once per entry: a commit
        rewrites the manifest from these, so its cost does not grow with the entries before it."""
        return json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))

    @functools.cached_property
    def digest(self) -> str:
        """sha256 of the path and the entry: what a verdict on this entry is keyed by
        (``grid.store.verdicts``); any change of the entry (another sha256, key, size) is another digest."""
        return hashlib.sha256(f"{json.dumps(self.path)}:{self.encoded}".encode()).hexdigest()[:32]

    @classmethod
    def from_json(cls, path: str, d: dict) -> "Commit":
        """The entry of ``path``; ValueError naming what is wrong with it (see :func:`check_entry`)."""
        check_entry(path, d)
        return cls(path=path, table=d["table"], rows=d["rows"], bytes=d["bytes"], sha256=d["sha256"],
                   schema=str(d["schema"]), key=dict(d["key"]), ranges={k: list(v) for k, v in d["ranges"].items()})


def check_entry(path: str, d) -> None:
    """An entry er-grid could have written: a confined path under its own table's folder
    (never ``_commits/`` or ``_moved_aside/``), counts that are integers ≥ 0, a key of scalars
    holding the trial and its partition values, ranges as ``[min, max]`` pairs."""
    confined.relative_path(path, "entry")
    if not isinstance(d, dict):
        raise ValueError(f"entry {path[:200]}: expected a mapping, got {type(d).__name__}")
    table = d.get("table")
    if not isinstance(table, str) or table.startswith("_") or path.split("/", 1)[0] != table:
        raise ValueError(f"entry {path[:200]}: not a file of its table {table!r}'s folder")
    for name in ("rows", "bytes"):
        if isinstance(d.get(name), bool) or not isinstance(d.get(name), int) or d[name] < 0:
            raise ValueError(f"entry {path[:200]}: {name} {d.get(name)!r} is not a count")
    if not isinstance(d.get("sha256"), str) or len(d["sha256"]) != 64:
        raise ValueError(f"entry {path[:200]}: sha256 {d.get('sha256')!r} is not a sha256")
    key, ranges = d.get("key"), d.get("ranges")
    if not isinstance(key, dict) or not all(isinstance(v, SCALARS) for v in key.values()):
        raise ValueError(f"entry {path[:200]}: key is not a mapping of column → value")
    needed = ("trial_id", *PARTITION_COLUMNS)
    absent = [c for c in needed if c not in key or key[c] is None]
    if absent:
        raise ValueError(f"entry {path[:200]}: key lacks {', '.join(absent)}")
    if not all(isinstance(key[c], str) for c in ("trial_id", *PARTITION_COLUMNS)):
        raise ValueError(f"entry {path[:200]}: key's trial_id and partition values are not strings")
    if not isinstance(ranges, dict) or not all(
            isinstance(v, list) and len(v) == 2 and all(isinstance(x, SCALARS) for x in v) for v in ranges.values()):
        raise ValueError(f"entry {path[:200]}: ranges are not column → [min, max]")


def batch_key(commit: Commit) -> Optional[tuple[str, float, int]]:
    """``(attack, ε, batch)`` of an evaluation batch's entry; None where its key does not hold
    them as written by ``ResultStore.write_batch`` (such a file is never counted as a batch)."""
    attack, eps, batch = (commit.key.get(k) for k in ("attack", "eps", "batch"))
    if not isinstance(attack, str) or isinstance(eps, bool) or not isinstance(eps, (int, float)) \
            or isinstance(batch, bool) or not isinstance(batch, int):
        return None
    return attack, float(eps), batch


@functools.lru_cache(maxsize=256)
def schema_hash(schema: pa.Schema) -> str:
    """16 hex digits over the column names and types (not nullability or metadata)."""
    # A list's item field is named "item" in memory and "element" once read back from parquet:
    # the same type, so the name is left out of the text.
    text = "|".join(f"{f.name}:{_type_text(f.type)}" for f in schema)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _type_text(type_: pa.DataType) -> str:
    if pa.types.is_list(type_) or pa.types.is_large_list(type_):
        return f"list<{_type_text(type_.value_type)}>"
    return str(type_)


def describe(table_name: str, path: str, table: pa.Table, data: bytes, key: dict,
             range_columns: tuple = ()) -> Commit:
    """The commit entry of ``table`` serialised as ``data`` at ``path``.

    ``key``: the values every row shares (partition values included); each column of the
    table named in ``key`` is checked to hold only that value.
    """
    for column, value in key.items():
        if column in table.column_names and not _all_equal(table[column], value):
            raise ValueError(f"commit {path}: column {column!r} does not hold {value!r} in every row")
    ranges = {c: _min_max(table[c]) for c in range_columns}
    return Commit(path=path, table=table_name, rows=table.num_rows, bytes=len(data),
                  sha256=hashlib.sha256(data).hexdigest(), schema=schema_hash(table.schema),
                  key=dict(key), ranges=ranges)


def manifest_path(base: str, trial_id: str) -> str:
    return f"{base}/{COMMITS_DIR}/{trial_id}.json"


def encode_manifest(trial_id: str, commits: dict[str, Commit]) -> bytes:
    """The manifest's bytes: canonical JSON (sorted keys, no spaces), assembled from each entry's
    :attr:`Commit.encoded`, so an entry is encoded once, not at every later commit of its trial."""
    files = ",".join(f"{json.dumps(p)}:{commits[p].encoded}" for p in sorted(commits))
    return f'{{"files":{{{files}}},"format":{json.dumps(FORMAT)},"trial_id":{json.dumps(trial_id)}}}'.encode()


def decode_manifest(path: str, data: bytes) -> dict[str, Commit]:
    """Entries of one manifest; a manifest that is not ours raises :class:`DamagedStore` naming it.

    ``path``: the manifest's path relative to the store (``_commits/<trial_id>.json``): every
    entry's key must name that trial."""
    try:
        payload = bounded_json(data, f"commit record {path}", MAX_MANIFEST_BYTES)
    except DamagedRecord as err:
        raise DamagedStore(str(err)) from err
    try:
        if not isinstance(payload, dict) or payload.get("format") != FORMAT:
            raise ValueError(f"not an {FORMAT} record")
        trial_id = path.rsplit("/", 1)[-1].removesuffix(".json")
        if payload.get("trial_id") != trial_id or not isinstance(payload.get("files"), dict):
            raise ValueError(f"not the record of trial {trial_id!r}")
        commits = {p: Commit.from_json(p, d) for p, d in payload["files"].items()}
        foreign = [p for p, c in commits.items() if c.key["trial_id"] != trial_id]
        if foreign:
            raise ValueError(f"entry {foreign[0][:200]} is keyed to trial {commits[foreign[0]].key['trial_id']!r}")
        return commits
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise DamagedStore(f"commit record {path} is damaged ({err})") from err


def decode_checked(path: str, data: bytes) -> dict[str, Commit]:
    """:func:`decode_manifest` of bytes that have passed it before (the same sha256,
    ``grid.store.verdicts``): the entries without their checks, which the same bytes pass again."""
    files = json.loads(data)["files"]
    return {p: Commit(path=p, table=d["table"], rows=d["rows"], bytes=d["bytes"], sha256=d["sha256"],
                      schema=str(d["schema"]), key=d["key"], ranges=d["ranges"]) for p, d in files.items()}


def read_manifest(fs: pafs.FileSystem, base: str, trial_id: str) -> Optional[bytes]:
    """The bytes of one trial's manifest, or None where there is none; DamagedStore when it is
    a link out of the store, not a regular file, or larger than :data:`MAX_MANIFEST_BYTES`.
    ValueError when ``trial_id`` cannot name a manifest (a path such as ``a/b``)."""
    return read_identified(fs, base, trial_id)[0]


def manifest_relative(trial_id: str) -> str:
    relative = confined.relative_path(f"{COMMITS_DIR}/{trial_id}.json", "trial_id")
    if "/" in trial_id:
        raise ValueError(f"trial_id: {trial_id!r} is not a trial id")
    return relative


def read_identified(fs: pafs.FileSystem, base: str, trial_id: str) -> tuple[Optional[bytes], Optional[tuple]]:
    """:func:`read_manifest` and the identity of the file read (``grid.store.confined.file_stat``)."""
    relative = manifest_relative(trial_id)
    data, identity, reason = confined.read_file_identified(fs, base, relative, MAX_MANIFEST_BYTES)
    if reason == "missing":
        return None, None
    if reason is not None:
        raise DamagedStore(f"commit record {relative} is damaged ({reason})")
    return data, identity


def verify(fs: pafs.FileSystem, base: str, commit: Commit, expected: Optional[pa.Schema] = None,
           columns: Optional[list] = None, verdicts=None) -> tuple[Optional[pa.Table], Optional[str]]:
    """``(table, None)`` for an intact committed file, ``(None, reason)`` for a damaged one.

    ``expected``: the file schema the reader wants (columns and types); the committed schema
    must equal it. ``columns``: the columns to decode (None: all). ``verdicts``: a
    ``grid.store.verdicts.Verdicts`` of the store: an entry whose checks passed before skips the
    footer and value checks (never the size and sha256), and a pass is recorded there. What is
    read is bounded by the entry (see the module docstring), and a value is decoded only from
    bytes whose sha256 is the committed one.
    """
    if expected is not None and schema_hash(expected) != commit.schema:
        return None, "committed with another schema than this table's"
    if commit.bytes > MAX_FILE_BYTES or commit.rows > MAX_ROWS:
        return None, f"committed as {commit.bytes:,} bytes and {commit.rows:,} rows, more than a store file holds"
    started = time.time()
    found = confined.measure(fs, base, commit.path)
    if found.reason is not None:
        return None, found.reason
    limit = commit.bytes if found.size == commit.bytes else min(MAX_FILE_BYTES, 2 * commit.bytes + DIAGNOSIS_SLACK)
    if found.size > limit:
        return None, f"{found.size:,} bytes on storage, {commit.bytes:,} committed (changed; not read)"
    data, identity, reason = confined.read_measured(fs, found, limit)
    if reason is not None:
        return None, reason
    if len(data) != commit.bytes or hashlib.sha256(data).hexdigest() != commit.sha256:
        return None, _what_changed(data, commit, expected)
    # The bytes are the committed ones; only a forged entry gets past here with a bad file.
    known = verdicts is not None and verdicts.checked(commit)
    try:
        parquet = pq.ParquetFile(pa.BufferReader(data))
        if not known:
            reason = _footer_reason(parquet, commit, expected)
            if reason is not None:
                return None, reason
        names = parquet.schema_arrow.names
        checked = [] if known else [c for c in (*commit.key, *commit.ranges) if c in names]
        # One file is small and files are read in parallel: no threads within one.
        table = parquet.read(columns=None if columns is None else list(dict.fromkeys([*columns, *checked])),
                             use_threads=False)
    except (pa.ArrowException, OSError, ValueError) as err:
        return None, f"not readable as parquet ({str(err).splitlines()[0][:80] if str(err) else type(err).__name__})"
    if not known:
        try:
            reason = _values_reason(table, commit)
        except (pa.ArrowException, TypeError, ValueError, OverflowError) as err:
            reason = f"committed key or range values do not fit the file's columns ({str(err)[:80]})"
        if reason is not None:
            return None, reason
        if verdicts is not None:
            verdicts.record(commit, identity, started)
    return (table if columns is None else table.select(list(columns))), None


def check(fs: pafs.FileSystem, base: str, commit: Commit, expected: Optional[pa.Schema] = None,
          verdicts=None) -> Optional[str]:
    """Why the committed file is damaged, or None when it is intact (:func:`verify`, decoding
    only what its checks need). A file whose identity is the one a verdict recorded is intact
    without being read (``grid.store.verdicts``)."""
    if verdicts is not None and (expected is None or schema_hash(expected) == commit.schema) \
            and commit.bytes <= MAX_FILE_BYTES and commit.rows <= MAX_ROWS:
        size, identity, reason = confined.file_stat(fs, base, commit.path)
        if reason is None and size == commit.bytes and verdicts.unchanged(commit, identity):
            return None
    return verify(fs, base, commit, expected, columns=[], verdicts=verdicts)[1]


def _values_reason(table: pa.Table, commit: Commit) -> Optional[str]:
    for column, value in commit.key.items():
        if column in table.column_names and not _all_equal(table[column], value):
            return f"column {column!r} holds other values than the committed {value!r}"
    for column, span in commit.ranges.items():
        if column not in table.column_names:
            return f"the committed range names column {column!r}, which the file lacks"
        if _min_max(table[column]) != list(span):
            return f"column {column!r} spans other values than the committed {span}"
    return None


def _footer_reason(parquet: pq.ParquetFile, commit: Commit, expected: Optional[pa.Schema]) -> Optional[str]:
    """What the footer alone shows is wrong (schema, row count, sizes past the bounds), before
    any value is decoded; None when it agrees with the entry."""
    meta = parquet.metadata
    if schema_hash(parquet.schema_arrow) != commit.schema:
        return f"schema differs from the committed one ({_schema_difference(parquet.schema_arrow, expected)})"
    if meta.num_rows != commit.rows:
        return f"{meta.num_rows:,} rows, {commit.rows:,} committed"
    declared = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
    if meta.num_rows > MAX_ROWS or declared > MAX_DECODED_BYTES:
        return f"declares {meta.num_rows:,} rows and {declared:,} bytes decoded, more than a store file holds"
    return None


def _what_changed(data: bytes, commit: Commit, expected: Optional[pa.Schema]) -> str:
    """Why bytes that are not the committed ones differ, from the footer only (never decoded)."""
    try:
        parquet = pq.ParquetFile(pa.BufferReader(data))
        reason = _footer_reason(parquet, commit, expected)
    except (pa.ArrowException, OSError, ValueError) as err:
        kind = "truncated" if len(data) < commit.bytes else "not readable as parquet"
        detail = str(err).splitlines()[0][:80] if str(err) else type(err).__name__
        return f"{kind} ({len(data)} of {commit.bytes} bytes; {detail})"
    return reason or "checksum differs from the committed one (the file was changed)"


def _schema_difference(found: pa.Schema, expected: Optional[pa.Schema]) -> str:
    if expected is None:
        return f"columns {', '.join(found.names)}"
    missing = [n for n in expected.names if n not in found.names]
    extra = [n for n in found.names if n not in expected.names]
    retyped = [n for n in expected.names if n in found.names and found.field(n).type != expected.field(n).type]
    parts = ([f"missing column(s) {missing}"] if missing else []) + ([f"extra column(s) {extra}"] if extra else []) \
        + ([f"retyped column(s) {retyped}"] if retyped else [])
    return "; ".join(parts) or "column order"


def _all_equal(array, value) -> bool:
    if len(array) == 0:  # an empty table (e.g. a trial with no sanity flags) holds any key vacuously
        return True
    if value is None:
        return array.null_count == len(array)
    return bool(pc.all(pc.equal(array, pa.scalar(value, type=array.type))).as_py() is True) and array.null_count == 0


def _min_max(array) -> list:
    result = pc.min_max(array)
    return [result["min"].as_py(), result["max"].as_py()]


__all__ = ["COMMITS_DIR", "Commit", "DamagedStore", "MAX_DECODED_BYTES", "MAX_FILE_BYTES", "MAX_MANIFEST_BYTES",
           "MAX_ROWS", "batch_key", "check", "check_entry", "decode_checked", "decode_manifest", "describe", "encode_manifest",
           "manifest_path", "manifest_relative", "read_identified", "read_manifest", "schema_hash", "verify"]
