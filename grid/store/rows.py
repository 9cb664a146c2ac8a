"""Rows of the results store: validation of row dicts against a schema, and the values that
become file and directory names (no separators, no path characters)."""

from __future__ import annotations

import datetime as _dt
import math

import pyarrow as pa

from grid.common.fingerprint import er_grid_code_version

PARTITION_COLUMNS = ("experiment", "dataset", "method")
SEP = "__"


def present(value) -> bool:
    """False for None and a float NaN (a method without λ, a cell with no result)."""
    return value is not None and not (isinstance(value, float) and math.isnan(value))


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
            if column in row and not same(row[column], value):
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


def file_schema(schema: pa.Schema) -> pa.Schema:
    """``schema`` without the Hive partition columns (they live in directory names)."""
    return pa.schema([f for f in schema if f.name not in PARTITION_COLUMNS])


def without_partitions(table: pa.Table) -> pa.Table:
    """Drop experiment/dataset/method before writing: they live in the Hive directory names,
    and a file holding them too makes ``pandas.read_parquet`` of the folder fail on a type clash."""
    return table.drop_columns(list(PARTITION_COLUMNS))


def same(a, b) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return a is not None and b is not None and float(a) == float(b)
    return a == b


# --------------------------------------------------------------------------- helpers


def name_part(what: str, value) -> str:
    """Values that become part of file names: no separators, no path characters."""
    if not isinstance(value, str) or not value or SEP in value or any(c in value for c in "/\\=. ") \
            or value.startswith(("_", "-")):
        raise ValueError(f"{what}: {value!r} cannot be part of a file name (no '/', '=', '.', ' ', '__')")
    return value


def partition_value(column: str, value) -> str:
    if not isinstance(value, str) or not value or any(c in value for c in "/\\=") or value.startswith((".", "_")):
        raise ValueError(f"{column}: {value!r} cannot be a partition directory name")
    return value


def eps_text(eps: float) -> str:
    eps = float(eps)
    if not math.isfinite(eps) or eps < 0:
        raise ValueError(f"eps: expected a finite number ≥ 0, got {eps!r}")
    # repr is the shortest round-tripping form, so float(text) == eps exactly.
    return repr(eps)
