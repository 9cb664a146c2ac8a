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

Atomicity: a manifest is written like every file of the store (``ResultStore.put_atomic``):
temporary name and rename on POSIX, one PUT on object stores (all-or-nothing, and since 2020
strongly read-after-write consistent on S3). The data file is written first and its commit
second, so a writer killed in between leaves a file with no commit: not part of the store,
recomputed on resume. Should a zombie process of the same trial ever write at the same time,
the one entry it overwrites is counted missing and recomputed; rows are never wrong.

:func:`verify` checks a committed file against its entry: present, same size and sha256,
parquet with the committed schema, the committed row count, keys and ranges.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
from typing import Optional

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

COMMITS_DIR = "_commits"
FORMAT = "er-grid-commits/1"


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
        # Shallow (json.dumps only reads it): the manifest is encoded whole at every commit, and a
        # deep copy of every entry (dataclasses.asdict) would cost more than the rest of a commit.
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "path"}

    @classmethod
    def from_json(cls, path: str, d: dict) -> "Commit":
        return cls(path=path, table=str(d["table"]), rows=int(d["rows"]), bytes=int(d["bytes"]),
                   sha256=str(d["sha256"]), schema=str(d["schema"]), key=dict(d["key"]),
                   ranges={k: list(v) for k, v in d["ranges"].items()})


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
    files = {p: commits[p].to_json() for p in sorted(commits)}
    return json.dumps({"format": FORMAT, "trial_id": trial_id, "files": files},
                      sort_keys=True, separators=(",", ":")).encode()


def decode_manifest(path: str, data: bytes) -> dict[str, Commit]:
    """Entries of one manifest; a manifest that is not ours raises :class:`DamagedStore` naming it."""
    try:
        payload = json.loads(data)
        if not isinstance(payload, dict) or payload.get("format") != FORMAT:
            raise ValueError(f"not an {FORMAT} record")
        return {p: Commit.from_json(p, d) for p, d in payload["files"].items()}
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise DamagedStore(f"commit record {path} is damaged ({err})") from err


def read_bytes(fs: pafs.FileSystem, path: str) -> Optional[bytes]:
    """The whole file, or None where it does not exist."""
    try:
        with fs.open_input_stream(path) as stream:
            return stream.read()
    except FileNotFoundError:
        return None


def verify(fs: pafs.FileSystem, base: str, commit: Commit,
           expected: Optional[pa.Schema] = None) -> tuple[Optional[pa.Table], Optional[str]]:
    """``(table, None)`` for an intact committed file, ``(None, reason)`` for a damaged one.

    ``expected``: the file schema the reader wants (columns and types); the committed schema
    must equal it.
    """
    if expected is not None and schema_hash(expected) != commit.schema:
        return None, "committed with another schema than this table's"
    try:
        data = read_bytes(fs, f"{base}/{commit.path}")
    except OSError as err:
        return None, f"unreadable ({err})"
    if data is None:
        return None, "missing"
    try:
        table = pq.read_table(io.BytesIO(data))
    except (pa.ArrowException, OSError, ValueError) as err:
        reason = "truncated" if len(data) < commit.bytes else "not readable as parquet"
        return None, f"{reason} ({len(data)} of {commit.bytes} bytes; {str(err).splitlines()[0][:80]})"
    if schema_hash(table.schema) != commit.schema:
        return None, f"schema differs from the committed one ({_schema_difference(table.schema, expected)})"
    if table.num_rows != commit.rows:
        return None, f"{table.num_rows} rows, {commit.rows} committed"
    if len(data) != commit.bytes or hashlib.sha256(data).hexdigest() != commit.sha256:
        return None, "checksum differs from the committed one (the file was changed)"
    for column, value in commit.key.items():
        if column in table.column_names and not _all_equal(table[column], value):
            return None, f"column {column!r} holds other values than the committed {value!r}"
    for column, span in commit.ranges.items():
        if _min_max(table[column]) != list(span):
            return None, f"column {column!r} spans other values than the committed {span}"
    return table, None


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


__all__ = ["COMMITS_DIR", "Commit", "DamagedStore", "decode_manifest", "describe", "encode_manifest",
           "manifest_path", "read_bytes", "schema_hash", "verify"]
