"""Reading the results store: exactly the committed files, verified, as one table.

``read_committed`` is what ``ResultStore.load_table`` (and so every reader of
``grid.store.readers``) runs: the commit record names the
files (pruned by their committed key values before any is opened), each is verified against
its commit (``grid.store.manifest.verify``), the partition values come back from the commit's key,
filters apply to the rows, and duplicate keys are refused.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds

from . import manifest
from . import rows as store_rows
from .rows import PARTITION_COLUMNS

# Parallel GETs: on an object store each committed file is one request of tens of ms.
READ_THREADS = 16


def read_committed(store, table: str, schema: pa.Schema, filters: dict, damaged: str,
                   unique: tuple) -> pd.DataFrame:
    """Rows of ``table`` in ``store`` matching ``filters``; see ``ResultStore.load_table``."""
    if damaged not in ("raise", "skip"):
        raise ValueError(f"damaged: expected 'raise' or 'skip', got {damaged!r}")
    expression = filter_expression(schema, filters)
    file_schema = store_rows.file_schema(schema)
    commits = store.commits(table, damaged=damaged, **filters)
    with ThreadPoolExecutor(max_workers=READ_THREADS) as pool:
        checked = list(pool.map(lambda c: manifest.verify(store.fs, store.base, c, file_schema), commits))
    problems = [f"{c.path}: {reason}" for c, (_, reason) in zip(commits, checked) if reason is not None]
    if problems and damaged == "raise":
        raise manifest.DamagedStore(
            f"{len(problems)} committed file(s) of {store.root} are damaged: {'; '.join(problems[:3])}"
            f"{' …' if len(problems) > 3 else ''} (`er-grid status` lists them; `er-grid resume` recomputes them)")
    parts = [with_partitions(t.cast(file_schema), c.key) for c, (t, _) in zip(commits, checked) if t is not None]
    if not parts:
        return schema.empty_table().to_pandas()
    result = pa.concat_tables(parts).select(schema.names)
    if expression is not None:
        result = result.filter(expression)
    df = result.to_pandas()
    if unique and df.duplicated(list(unique)).any():
        dupes = df[df.duplicated(list(unique), keep=False)][list(unique)].drop_duplicates().head(3)
        raise manifest.DamagedStore(f"{store.root}: duplicate {table} rows for key(s) {dupes.to_dict('records')}")
    return df


def with_partitions(table: pa.Table, key: dict) -> pa.Table:
    """Add the Hive partition columns (strings, as in the directory names) from a commit key."""
    for column in PARTITION_COLUMNS:
        table = table.append_column(pa.field(column, pa.string(), nullable=False),
                                    pa.array([key[column]] * table.num_rows, pa.string()))
    return table


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


