"""Reading the results store: exactly the committed files, verified, as one table or trial by trial.

``read_committed`` is what ``ResultStore.load_table`` (and so every reader of
``grid.store.readers``) runs, and :func:`committed_chunks` what a reader that aggregates runs
to hold a few trials' rows at a time (``er-grid query``): the commit record names the files
(pruned by their committed key values before any is opened), each is verified against its
commit (``grid.store.manifest.verify``: its sha256 every time, its footer and values once per
entry, ``grid.store.verdicts``), only the columns asked for are decoded, the partition values
come back from the commit's key, filters apply to the rows, and duplicate keys are refused
(within each trial: every table's row key holds the trial).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Iterator, Optional

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from . import manifest
from . import rows as store_rows
from .rows import PARTITION_COLUMNS

# Parallel GETs: on an object store each committed file is one request of tens of ms.
READ_THREADS = 16
# What one chunk of committed_chunks holds at most (unless one trial holds more): a few trials
# of the paper grid (~23,000 rows each), so memory does not grow with the store.
CHUNK_ROWS = 100_000


def read_committed(store, table: str, schema: pa.Schema, filters: dict, damaged: str,
                   unique: tuple, columns: Optional[list] = None, categorical: bool = False) -> pd.DataFrame:
    """Rows of ``table`` in ``store`` matching ``filters``; see ``ResultStore.load_table``.
    ``columns``: the columns to read (None: all of ``schema``), in that order. ``categorical``:
    string columns as pandas categoricals (see :func:`as_categories`)."""
    parts = list(committed_chunks(store, table, schema, filters, damaged, unique, columns, categorical=categorical))
    names = schema.names if columns is None else list(columns)
    if not parts:
        return pa.schema([schema.field(c) for c in names]).empty_table().to_pandas()
    result = pa.concat_tables(parts)
    del parts
    frame = result.to_pandas(split_blocks=True, self_destruct=True)
    del result
    # Arrow's allocator keeps freed memory for its next tables; the callers' next work is pandas.
    pa.default_memory_pool().release_unused()
    return as_categories(frame) if categorical else frame


def as_categories(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame``'s categorical columns with their categories in sorted order, so that grouping and
    sorting order rows as the strings themselves would. A store's string columns hold few
    distinct values (trials, attacks, fingerprints) over millions of rows: as categories they
    take a code per row instead of the text (a tenth of the memory on the paper grid's rows)."""
    for column in frame.columns:
        if isinstance(frame[column].dtype, pd.CategoricalDtype):
            frame[column] = frame[column].cat.reorder_categories(sorted(frame[column].cat.categories))
    return frame


def committed_chunks(store, table: str, schema: pa.Schema, filters: dict, damaged: str, unique: tuple,
                     columns: Optional[list] = None, chunk_rows: Optional[int] = None,
                     categorical: bool = False) -> Iterator[pa.Table]:
    """The rows of :func:`read_committed` as arrow tables of whole trials, about ``chunk_rows``
    rows each (default :data:`CHUNK_ROWS`; ``categorical``: string columns dictionary-encoded,
    so the text of a value is held once per chunk). With ``damaged="raise"`` a damaged file
    stops the reading before the chunk that holds it is given out, naming every damaged file of
    the selection."""
    if damaged not in ("raise", "skip"):
        raise ValueError(f"damaged: expected 'raise' or 'skip', got {damaged!r}")
    names = schema.names if columns is None else list(columns)
    unknown = [c for c in names if c not in schema.names]
    if unknown:
        raise ValueError(f"columns: unknown column(s) {unknown}; valid: {', '.join(schema.names)}")
    filter_expression(schema, filters)  # unknown columns and empty lists refused before any read
    file_schema = store_rows.file_schema(schema)
    needed = list(dict.fromkeys([*names, *filters, *unique]))
    file_columns = [c for c in needed if c in file_schema.names]
    chunks = _chunks(store.commits(table, damaged=damaged, **filters), chunk_rows or CHUNK_ROWS)
    with ThreadPoolExecutor(max_workers=READ_THREADS) as pool:
        def submit(chunk):
            return [pool.submit(manifest.verify, store.fs, store.base, c, file_schema, file_columns, store.verdicts)
                    for c in chunk]

        pending = submit(chunks[0]) if chunks else []
        for index, chunk in enumerate(chunks):
            checked = [future.result() for future in pending]
            # The next chunk is read while this one is assembled.
            pending = submit(chunks[index + 1]) if index + 1 < len(chunks) else []
            problems = [f"{c.path}: {reason}" for c, (_, reason) in zip(chunk, checked) if reason is not None]
            if problems and damaged == "raise":
                for future in pending:
                    future.cancel()
                later = [c for rest in chunks[index + 1:] for c in rest]
                problems += [f"{c.path}: {reason}" for c, reason in zip(later, pool.map(
                    lambda c: manifest.check(store.fs, store.base, c, file_schema, store.verdicts), later)) if reason]
                store.verdicts.save()
                raise manifest.DamagedStore(
                    f"{len(problems)} committed file(s) of {store.root} are damaged: {'; '.join(problems[:3])}"
                    f"{' …' if len(problems) > 3 else ''} (`er-grid status` lists them; `er-grid resume` recomputes them)")
            kept = [(c, t) for c, (t, _) in zip(chunk, checked) if t is not None]
            if not kept:
                continue
            rows = assemble(kept, file_schema, needed)
            if unique:
                refuse_duplicates(rows, [c for c, _ in kept], unique, table, store.root)
            # A filter on a column every file of the chunk holds one committed value of was met
            # when the files were chosen (and the values were checked against the key).
            expression = filter_expression(schema, {c: v for c, v in filters.items()
                                                    if not all(c in commit.key for commit, _ in kept)})
            if expression is not None:
                rows = rows.filter(expression)
            rows = rows.select(names)
            yield encoded(rows) if categorical else rows
    store.verdicts.save()


def encoded(rows: pa.Table) -> pa.Table:
    """``rows`` with every string column dictionary-encoded (pandas reads those as categoricals)."""
    for index, field in enumerate(rows.schema):
        if pa.types.is_string(field.type) or pa.types.is_large_string(field.type):
            rows = rows.set_column(index, field.with_type(pa.dictionary(pa.int32(), field.type)),
                                   pc.dictionary_encode(rows.column(index)))
    return rows


def _chunks(commits: list, chunk_rows: int) -> list[list]:
    """``commits`` in groups of whole trials of about ``chunk_rows`` committed rows."""
    by_trial: dict[str, list] = {}
    for commit in commits:
        by_trial.setdefault(commit.key["trial_id"], []).append(commit)
    chunks, current, rows = [], [], 0
    for trial in by_trial.values():
        if current and rows + sum(c.rows for c in trial) > chunk_rows:
            chunks.append(current)
            current, rows = [], 0
        current += trial
        rows += sum(c.rows for c in trial)
    return chunks + ([current] if current else [])


def assemble(kept: list, file_schema: pa.Schema, columns: list) -> pa.Table:
    """One table of verified files ``kept`` (``(commit, table)`` pairs, in order) with the
    partition columns among ``columns`` filled from each commit's key."""
    # The committed schema equals each table's (checked) up to nullability: cast where it differs.
    target = pa.schema([file_schema.field(n) for n in kept[0][1].column_names])
    rows = pa.concat_tables([t if t.schema.equals(target) else t.cast(target) for _, t in kept])
    owner = pa.array(np.repeat(np.arange(len(kept)), [t.num_rows for _, t in kept]))
    for column in PARTITION_COLUMNS:
        if column in columns:
            values = pa.array([c.key[column] for c, _ in kept], pa.string())
            rows = rows.append_column(pa.field(column, pa.string(), nullable=False), pc.take(values, owner))
    return rows


def refuse_duplicates(rows: pa.Table, commits: list, unique: tuple, table: str, root: str) -> None:
    """DamagedStore naming up to three keys that ``rows`` (whole trials, the rows of
    ``commits`` in order) hold more than once.

    The key's columns that every commit holds as one value (trial, attack, ε: checked against
    the rows when the file was verified) group the files; only the rest is compared row by row,
    within each group (for examples, the sample indices of one trial's attack at one ε)."""
    fixed = [c for c in unique if all(c in commit.key for commit in commits)]
    varying = [c for c in unique if c not in fixed]
    groups: dict[tuple, list] = {}
    start = 0
    for commit in commits:
        groups.setdefault(tuple(commit.key[c] for c in fixed), []).append((start, commit.rows))
        start += commit.rows
    if start != rows.num_rows:  # a commit's row count is checked on verification; to be sure
        varying, fixed = list(unique), []
        groups = {(): [(0, rows.num_rows)]}
    integer = len(varying) == 1 and pa.types.is_integer(rows.schema.field(varying[0]).type) \
        and rows.column(varying[0]).null_count == 0
    values = rows.column(varying[0]).to_numpy() if integer else None
    for key, spans in groups.items():
        if sum(n for _, n in spans) < 2:
            continue
        if not varying:
            raise manifest.DamagedStore(f"{root}: duplicate {table} rows for key(s) {[dict(zip(fixed, key))]}")
        if integer:
            ordered = np.sort(np.concatenate([values[offset:offset + n] for offset, n in spans]))
            if not (ordered[1:] == ordered[:-1]).any():
                continue
        part = pa.concat_tables([rows.select(varying).slice(offset, n) for offset, n in spans])
        counts = part.group_by(varying).aggregate([([], "count_all")])
        dupes = counts.filter(pc.greater(counts["count_all"], 1))
        if dupes.num_rows:
            keys = [{**dict(zip(fixed, key)), **d} for d in dupes.select(varying).slice(0, 3).to_pylist()]
            raise manifest.DamagedStore(f"{root}: duplicate {table} rows for key(s) {keys}")


def key_matches(key: dict, filters: dict) -> bool:
    """False when a committed key value rules the file out of ``filters`` (no read needed)."""
    for column, wanted in filters.items():
        if column not in key:
            continue
        values = list(wanted) if isinstance(wanted, (list, tuple, set, frozenset)) else [wanted]
        if key[column] not in values:
            return False
    return True


def filter_expression(schema: pa.Schema, filters: dict):
    """A pyarrow expression for column=value / column=[values] / column=None filters."""
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
