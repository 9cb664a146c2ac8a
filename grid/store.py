"""The results store: plain parquet files, one per (trial, attack, ε, batch), on any pyarrow filesystem.

Layout under ``root`` (a local path or a URI that ``pyarrow.fs.FileSystem.from_uri`` knows)::

    examples/experiment=<e>/dataset=<d>/method=<m>/<trial_id>__<attack>__eps<eps>__b<batch>.parquet
    trials/experiment=<e>/dataset=<d>/method=<m>/<trial_id>.parquet

This is plain Hive partitioning: ``experiment``, ``dataset`` and ``method`` live in the
directory names only, not inside the files, so that the directory read by any tool's
defaults gives every column (``pandas.read_parquet(root + "/examples")``,
``pyarrow.dataset.dataset(..., partitioning="hive")``, duckdb's ``read_parquet('.../**/*.parquet')``).
Repeating them inside the files would break those readers: pyarrow then refuses to merge the
file's column with the directory's (string vs dictionary).

Why one file per batch: a retried or resumed batch rewrites exactly its own file, so rows are
never duplicated, and which batches are done is known from file names alone
(:meth:`ResultStore.done_batches`, no parquet reads).

Why a temporary name: on a local or network filesystem a file is written as
``.<name>.tmp-<uuid>`` in the same directory and then renamed over the final name (rename is
atomic there), so a reader never sees half a file and a killed writer leaves only a dot-file
that :func:`load` skips. On object stores (S3, GCS, Azure) a single PUT is already atomic: the
object appears complete or not at all, and a "rename" would be a copy plus a delete (two
requests, not atomic), so files are written under their final key directly.

S3 with a custom endpoint (e.g. moto or MinIO)::

    ResultStore("s3://bucket/prefix?endpoint_override=127.0.0.1:9000&scheme=http")

with ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` / ``AWS_DEFAULT_REGION`` in the
environment, or pass ``filesystem=pyarrow.fs.S3FileSystem(...)`` and a plain ``bucket/prefix``.
"""

from __future__ import annotations

import datetime as _dt
import io
import math
import uuid
from pathlib import Path
from typing import Optional, Union

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from .fingerprint import er_grid_code_version

# --------------------------------------------------------------------------- schemas


def column(name: str, type_: pa.DataType, nullable: bool = False) -> pa.Field:
    """A schema column; not nullable unless said, so a missing value is an error, not a null."""
    return pa.field(name, type_, nullable=nullable)


UTC_TIMESTAMP = pa.timestamp("us", tz="UTC")

#: One row per evaluated example (DESIGN.md "Results schema" plus the fingerprint columns).
ROW_SCHEMA = pa.schema([
    column("experiment", pa.string()),
    column("trial_id", pa.string()),
    column("dataset", pa.string()),
    column("method", pa.string()),
    column("train_eps", pa.float64(), nullable=True),   # None where the method trains on clean data
    column("lam", pa.float64(), nullable=True),         # None where the method has no λ
    column("seed", pa.int64()),
    column("epochs", pa.int64()),
    column("attack", pa.string()),
    column("norm", pa.string()),                        # "Linf" | "L2"
    column("eps", pa.float64()),                        # in [0, 1] image space
    column("batch", pa.int64()),                        # evaluation batch index from 0
    column("sample_idx", pa.int64()),                   # index into the dataset's test set
    column("label", pa.int64()),
    column("pred_clean", pa.int64()),
    column("pred_adv", pa.int64()),
    column("correct_clean", pa.bool_()),
    column("correct_adv", pa.bool_()),
    column("l2", pa.float64()),                         # ‖x_adv − x‖₂
    column("l2_rms", pa.float64()),                     # ‖x_adv − x‖₂ / sqrt(C·H·W), the paper's form
    column("linf", pa.float64()),
    column("queries", pa.int64()),                      # model queries; −1 where not counted
    column("seconds", pa.float64()),                    # attack wall time per example (batch time / N)
    column("code_version", pa.string()),
    column("created_at", UTC_TIMESTAMP),
    # Fingerprint: what produced the row, so changed runs never mix silently.
    column("attack_config", pa.string()),               # canonical JSON of the attack's full config
    column("checkpoint_hash", pa.string()),             # hash of the evaluated model checkpoint
    column("eval_subset", pa.string()),                 # "n=1000,seed=0"
    column("library_versions", pa.string()),            # JSON {library: version}
    column("gradient_failed", pa.bool_(), nullable=True),  # None where the attack uses no gradient
    column("randomized", pa.bool_()),                   # model is randomized (RSE): ensemble verdict
])

#: One row per trial: training outcome and where it ran.
TRIAL_SCHEMA = pa.schema([
    column("trial_id", pa.string()),
    column("experiment", pa.string()),
    column("dataset", pa.string()),
    column("method", pa.string()),
    column("train_eps", pa.float64(), nullable=True),
    column("lam", pa.float64(), nullable=True),
    column("seed", pa.int64()),
    column("epochs", pa.int64()),
    column("clean_accuracy", pa.float64()),             # on the evaluation subset, in [0, 1]
    column("losses_json", pa.string()),                 # JSON list of per-epoch {loss name: mean}
    column("wall_seconds", pa.float64()),               # training + evaluation wall time
    column("device", pa.string()),                      # e.g. "cuda:0 (NVIDIA H100)" or "cpu"
    column("checkpoint_hash", pa.string()),
    column("code_version", pa.string()),
    column("created_at", UTC_TIMESTAMP),
])

#: Columns write_batch fills from its keyword arguments when a row omits them.
BATCH_KEY_COLUMNS = ("experiment", "dataset", "method", "trial_id", "attack", "eps", "batch")
#: Columns the store fills when a row omits them (code version of this process, now in UTC).
AUTO_COLUMNS = ("code_version", "created_at")
PARTITION_COLUMNS = ("experiment", "dataset", "method")

EXAMPLES_DIR = "examples"
TRIALS_DIR = "trials"
_SEP = "__"
_OBJECT_STORES = ("s3", "gcs", "abfs")

RootLike = Union[str, Path, "ResultStore"]


# --------------------------------------------------------------------------- store


class ResultStore:
    """Parquet results under ``root`` (local path, ``file://``, ``s3://``, ``gs://``, ...).

    ``filesystem``: an explicit ``pyarrow.fs.FileSystem``; ``root`` is then a path on it.
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
        self.atomic_put = self.fs.type_name in _OBJECT_STORES

    def __repr__(self) -> str:
        return f"ResultStore({self.root!r})"

    # -- paths ----------------------------------------------------------------------------

    def partition_dir(self, table: str, experiment: str, dataset: str, method: str) -> str:
        """``<base>/<table>/experiment=<e>/dataset=<d>/method=<m>``."""
        parts = [f"{k}={_partition_value(k, v)}" for k, v in
                 zip(PARTITION_COLUMNS, (experiment, dataset, method))]
        return "/".join([self.base, table, *parts])

    @staticmethod
    def batch_file_name(trial_id: str, attack: str, eps: float, batch: int) -> str:
        """``<trial_id>__<attack>__eps<repr(eps)>__b<batch>.parquet``."""
        _name_part("trial_id", trial_id)
        _name_part("attack", attack)
        return f"{trial_id}{_SEP}{attack}{_SEP}eps{_eps_text(eps)}{_SEP}b{int(batch)}.parquet"

    # -- writing --------------------------------------------------------------------------

    def write_batch(
        self, rows: list[dict], *, experiment: str, dataset: str, method: str, trial_id: str,
        attack: str, eps: float, batch: int,
    ) -> str:
        """Store one evaluation batch's rows atomically; a rewrite replaces the earlier file.

        ``rows``: one dict per example with every :data:`ROW_SCHEMA` column; the batch key
        columns (:data:`BATCH_KEY_COLUMNS`) and ``code_version``/``created_at`` may be omitted
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
        self.write_atomic(table, path)
        return path

    def write_trial(self, row: dict) -> str:
        """Store (or replace) the one :data:`TRIAL_SCHEMA` row of a trial; returns its path."""
        if not isinstance(row, dict):
            raise ValueError(f"write_trial: expected a dict row, got {type(row).__name__}")
        table = without_partitions(rows_to_table([row], TRIAL_SCHEMA, fill={}))
        name = f"{_name_part('trial_id', row['trial_id'])}.parquet"
        path = "/".join([self.partition_dir(TRIALS_DIR, row["experiment"], row["dataset"], row["method"]), name])
        self.write_atomic(table, path)
        return path

    def write_atomic(self, table: pa.Table, path: str) -> None:
        """Write ``table`` as parquet at ``path`` so a reader sees the old file or the new one, never half.

        Local/POSIX: a dot-named temporary file in the same directory, then a rename. Object
        stores: one PUT, which is already all-or-nothing (a "rename" there is copy + delete).
        Every table of the store (examples, trials, detection) is written through here.
        """
        directory, _, name = path.rpartition("/")
        buffer = io.BytesIO()
        pq.write_table(table, buffer)
        data = buffer.getvalue()
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
            # Leave no temp file behind where we can help it (a SIGKILL still can; load skips those).
            _delete_quietly(self.fs, tmp)
            raise

    # -- reading --------------------------------------------------------------------------

    def done_batches(self, experiment: str, dataset: str, method: str, trial_id: str) -> set[tuple[str, float, int]]:
        """(attack, ε, batch) of every stored batch of ``trial_id``, from file names only."""
        directory = self.partition_dir(EXAMPLES_DIR, experiment, dataset, method)
        prefix = f"{_name_part('trial_id', trial_id)}{_SEP}"
        done = set()
        for info in self._list(directory, recursive=False):
            name = info.base_name
            if not name.startswith(prefix) or not _is_final_file(name):
                continue
            parsed = _parse_batch_name(name[len(prefix):-len(".parquet")])
            if parsed is not None:
                done.add(parsed)
        return done

    def load(self, **filters) -> pd.DataFrame:
        """Example rows as a DataFrame; see :func:`load`."""
        return self.load_table(EXAMPLES_DIR, ROW_SCHEMA, filters)

    def load_trials(self, **filters) -> pd.DataFrame:
        """Trial rows as a DataFrame; see :func:`load_trials`."""
        return self.load_table(TRIALS_DIR, TRIAL_SCHEMA, filters)

    def files(self, table: str = EXAMPLES_DIR, **filters) -> list[str]:
        """Paths of the final (non-temporary) parquet files of ``table`` that may hold rows
        matching ``filters``, pruned without reading any file.

        Scalar experiment/dataset/method filters narrow the directory listed; the partition
        values and the names (trial_id, attack, ε, batch) prune the rest.
        """
        directory = f"{self.base}/{table}"
        for column in PARTITION_COLUMNS:
            wanted = filters.get(column)
            if not isinstance(wanted, str):
                break  # absent, a list or None: list everything below this level
            directory += f"/{column}={_partition_value(column, wanted)}"
        return [
            info.path for info in self._list(directory, recursive=True)
            if _is_final_file(info.base_name) and _partitions_match(info.path, filters)
            and _name_matches(table, info.base_name, filters)
        ]

    def _list(self, directory: str, recursive: bool) -> list[pafs.FileInfo]:
        selector = pafs.FileSelector(directory, allow_not_found=True, recursive=recursive)
        return [i for i in self.fs.get_file_info(selector) if i.type == pafs.FileType.File]

    def load_table(self, table: str, schema: pa.Schema, filters: dict) -> pd.DataFrame:
        """Rows of one table (``examples``, ``trials``, ``detection``…) matching ``filters``.

        Files are pruned by partition directory and file name before any is opened; temporary
        and dot-files are never read.
        """
        expression = _filter_expression(schema, filters)
        paths = self.files(table, **filters)
        if not paths:
            return schema.empty_table().to_pandas()
        # An explicit file list (so temp files are never seen) and an explicit string
        # partitioning (so Hive discovery never re-types values: "2024" would become an int).
        file_schema = _file_schema(schema)
        partitioning = ds.partitioning(pa.schema([schema.field(c) for c in PARTITION_COLUMNS]), flavor="hive")
        dataset = ds.dataset(
            paths, schema=pa.schema(list(file_schema) + list(partitioning.schema)), format="parquet",
            filesystem=self.fs, partitioning=partitioning, partition_base_dir=f"{self.base}/{table}",
        )
        result = dataset.to_table(filter=expression).select(schema.names)
        return result.to_pandas()


def load(root: RootLike, **filters) -> pd.DataFrame:
    """All example rows under ``root`` as a pandas DataFrame (columns of :data:`ROW_SCHEMA`).

    ``filters``: column=value (equality; ``None`` matches nulls) or column=[values] (any of).
    Only final files are read: names starting with '.' or '_' and ``*.tmp*`` are skipped.
    An empty store gives an empty DataFrame with the schema's columns.
    """
    return _as_store(root).load(**filters)


def load_trials(root: RootLike, **filters) -> pd.DataFrame:
    """All trial rows under ``root`` (columns of :data:`TRIAL_SCHEMA`); filters as in :func:`load`."""
    return _as_store(root).load_trials(**filters)


# --------------------------------------------------------------------------- rows


def rows_to_table(rows: list[dict], schema: pa.Schema, fill: dict) -> pa.Table:
    """Validate row dicts against ``schema`` and build a table.

    ``fill``: column → value used where a row omits the column (a given value must equal it);
    ``code_version``/``created_at`` are filled too if the schema has them. Missing or extra
    keys, nulls in non-nullable columns and values of the wrong type raise ValueError.
    """
    if not isinstance(rows, list) or not rows:
        raise ValueError("rows: expected a non-empty list of dicts")
    auto = {}
    if "code_version" in schema.names:
        auto["code_version"] = er_grid_code_version()
    if "created_at" in schema.names:
        auto["created_at"] = _dt.datetime.now(_dt.timezone.utc)
    auto.update(fill)
    names = schema.names
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise ValueError(f"rows[{i}]: expected a dict, got {type(row).__name__}")
        extra = sorted(set(row) - set(names))
        missing = sorted(set(names) - set(row) - set(auto))
        if extra or missing:
            raise ValueError(
                f"rows[{i}]: does not match the schema: missing column(s) {missing}, unknown column(s) {extra}"
            )
        for column, value in fill.items():
            if column in row and not _same(row[column], value):
                raise ValueError(f"rows[{i}].{column}: {row[column]!r} disagrees with the batch's {column}={value!r}")
    arrays = []
    for field in schema:
        values = [row[field.name] if field.name in row else auto[field.name] for row in rows]
        try:
            array = pa.array(values, type=field.type)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, OverflowError) as err:
            raise ValueError(f"column {field.name!r}: values do not fit type {field.type}: {err}") from err
        if not field.nullable and array.null_count:
            raise ValueError(f"column {field.name!r}: null value(s) in a non-nullable column")
        arrays.append(array)
    return pa.Table.from_arrays(arrays, schema=schema)


def _file_schema(schema: pa.Schema) -> pa.Schema:
    """``schema`` without the Hive partition columns (they live in directory names)."""
    return pa.schema([f for f in schema if f.name not in PARTITION_COLUMNS])


def without_partitions(table: pa.Table) -> pa.Table:
    """Drop experiment/dataset/method before writing: they live in the Hive directory names,
    and a file holding them too makes ``pandas.read_parquet`` of the folder fail on a type clash."""
    return table.drop_columns(list(PARTITION_COLUMNS))


def _same(a, b) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return a is not None and b is not None and float(a) == float(b)
    return a == b


# --------------------------------------------------------------------------- helpers


def _as_store(root: RootLike) -> ResultStore:
    return root if isinstance(root, ResultStore) else ResultStore(root)


def _name_part(what: str, value) -> str:
    """Values that become part of file names: no separators, no path characters."""
    if not isinstance(value, str) or not value or _SEP in value or any(c in value for c in "/\\=. ") \
            or value.startswith(("_", "-")):
        raise ValueError(f"{what}: {value!r} cannot be part of a file name (no '/', '=', '.', ' ', '__')")
    return value


def _partition_value(column: str, value) -> str:
    if not isinstance(value, str) or not value or any(c in value for c in "/\\=") or value.startswith((".", "_")):
        raise ValueError(f"{column}: {value!r} cannot be a partition directory name")
    return value


def _eps_text(eps: float) -> str:
    eps = float(eps)
    if not math.isfinite(eps) or eps < 0:
        raise ValueError(f"eps: expected a finite number ≥ 0, got {eps!r}")
    # repr is the shortest round-tripping form, so float(text) == eps exactly.
    return repr(eps)


def _parse_batch_name(stem: str) -> Optional[tuple[str, float, int]]:
    """``<attack>__eps<eps>__b<batch>`` → (attack, eps, batch); None for foreign names."""
    parts = stem.rsplit(_SEP, 2)
    if len(parts) != 3 or not parts[1].startswith("eps") or not parts[2].startswith("b"):
        return None
    try:
        return parts[0], float(parts[1][3:]), int(parts[2][1:])
    except ValueError:
        return None


def _is_final_file(name: str) -> bool:
    # '.'/'_' prefixes are temp and metadata files (pyarrow.dataset's own ignore_prefixes);
    # '.tmp' covers temp names written by other tools.
    return name.endswith(".parquet") and not name.startswith((".", "_")) and ".tmp" not in name


def _partitions_match(path: str, filters: dict) -> bool:
    """Prune files by their Hive directories before opening them."""
    for segment in path.split("/"):
        key, sep, value = segment.partition("=")
        if sep and key in PARTITION_COLUMNS and key in filters:
            wanted = filters[key]
            wanted = list(wanted) if isinstance(wanted, (list, tuple, set, frozenset)) else [wanted]
            if value not in {str(w) for w in wanted}:
                return False
    return True


def _name_matches(table: str, name: str, filters: dict) -> bool:
    """Prune by what a file name says: trial_id (both tables), attack/ε/batch (examples)."""
    stem = name[: -len(".parquet")]
    if table == EXAMPLES_DIR:
        trial_id, sep, rest = stem.partition(_SEP)
        parsed = _parse_batch_name(rest) if sep else None
        if parsed is None:
            return True  # a foreign name: let the reader decide, never hide rows
        known = {"trial_id": trial_id, "attack": parsed[0], "eps": parsed[1], "batch": parsed[2]}
    else:
        known = {"trial_id": stem}
    for column, value in known.items():
        if column in filters:
            wanted = filters[column]
            wanted = list(wanted) if isinstance(wanted, (list, tuple, set, frozenset)) else [wanted]
            if value not in wanted:
                return False
    return True


def _filter_expression(schema: pa.Schema, filters: dict):
    expression = None
    for column, wanted in filters.items():
        if column not in schema.names:
            raise ValueError(f"filter {column!r}: unknown column; valid: {', '.join(schema.names)}")
        field = ds.field(column)
        if isinstance(wanted, (list, tuple, set, frozenset)):
            values = list(wanted)
            if not values:
                raise ValueError(f"filter {column!r}: empty list of values")
            non_null = [v for v in values if v is not None]
            term = field.isin(pa.array(non_null, type=schema.field(column).type)) if non_null else None
            if len(non_null) < len(values):
                term = field.is_null() if term is None else (term | field.is_null())
        elif wanted is None:
            term = field.is_null()
        else:
            term = field == pa.scalar(wanted, type=schema.field(column).type)
        expression = term if expression is None else (expression & term)
    return expression


def _delete_quietly(fs: pafs.FileSystem, path: str) -> None:
    try:
        fs.delete_file(path)
    except (FileNotFoundError, OSError):
        pass  # already gone or never created: nothing to clean


__all__ = [
    "ROW_SCHEMA", "TRIAL_SCHEMA", "ResultStore", "load", "load_trials", "rows_to_table",
    "er_grid_code_version", "BATCH_KEY_COLUMNS", "AUTO_COLUMNS",
]
