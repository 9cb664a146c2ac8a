"""Compare two er-grid result stores: the same committed files, schemas and values.

    python tools/compare_stores.py BEFORE_EXPERIMENT AFTER_EXPERIMENT

For a change that must not change results (a refactor): run the same spec before and after it
(e.g. `python jobs/full_grid.py --preset smoke --storage DIR`) and compare the two experiment
folders. Every parquet file under `results/` must exist on both sides with the same schema and
the same values. Wall times, timestamps and the code version differ between any two runs, so
those columns (and the per-epoch `seconds` inside `losses_json`) are compared by type only.
NaN equals NaN. Prints each difference and exits 1 if there is any, else 0.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pyarrow.parquet as pq

# Columns that differ between any two runs of the same code on the same machine.
VOLATILE = frozenset({"seconds", "wall_seconds", "fit_seconds", "score_seconds", "craft_seconds",
                      "created_at", "code_version"})


def parquet_files(experiment: Path) -> list[str]:
    root = experiment / "results"
    return sorted(str(p.relative_to(experiment)) for p in root.rglob("*.parquet"))


def _without_epoch_seconds(value):
    if value is None:
        return None
    return [{k: v for k, v in epoch.items() if k != "seconds"} for epoch in json.loads(value)]


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def compare(before: Path, after: Path) -> list[str]:
    """Every difference between the two stores, one line each (empty: the same results)."""
    files_before, files_after = parquet_files(before), parquet_files(after)
    differences = [f"only in {before}: {f}" for f in sorted(set(files_before) - set(files_after))]
    differences += [f"only in {after}: {f}" for f in sorted(set(files_after) - set(files_before))]
    for rel in sorted(set(files_before) & set(files_after)):
        a, b = pq.read_table(before / rel), pq.read_table(after / rel)
        if a.schema.remove_metadata() != b.schema.remove_metadata():
            differences.append(f"{rel}: schema differs")
            continue
        for column in a.schema.names:
            if column in VOLATILE:
                continue
            va, vb = a[column].to_pylist(), b[column].to_pylist()
            if column == "losses_json":
                va, vb = [_without_epoch_seconds(v) for v in va], [_without_epoch_seconds(v) for v in vb]
            if len(va) != len(vb) or not all(_same(x, y) for x, y in zip(va, vb)):
                differences.append(f"{rel}: column {column} differs")
    return differences


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    before, after = Path(argv[0]), Path(argv[1])
    for folder in (before, after):
        if not (folder / "results").is_dir():
            print(f"{folder}: no results/ folder (give the experiment folder)", file=sys.stderr)
            return 2
    differences = compare(before, after)
    for line in differences:
        print(line)
    count = len(set(parquet_files(before)) | set(parquet_files(after)))
    print(f"{count} parquet files compared; {len(differences)} difference(s)")
    return 1 if differences else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
