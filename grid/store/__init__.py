"""The results store: parquet tables committed through one record per trial, and every reader
of them. No torch at import.

- ``results_store``: :class:`ResultStore` (atomic writes, the commit, moving damaged files aside);
- ``layout`` / ``schemas`` / ``rows``: where each table's files live, their pyarrow schemas, row
  validation and the values that become file names;
- ``manifest``: the commit record (``manifest_cache``: decoded records kept per process);
  ``read``: exactly the committed files, verified, as one table or a few trials at a time;
  ``verdicts``: what a check learnt, kept between commands in the user's cache folder;
- ``locate``: :func:`open_results`, the one path convention (experiment folder or its ``results``);
- ``check``: :func:`check_store`, every committed file verified and every other file listed;
- ``readers``: :func:`load`, :func:`load_trials`, :func:`load_detection`, :func:`load_codes`,
  :func:`load_flags`; ``flags``: sanity flags recomputed from rows or read back.
"""

from __future__ import annotations

from grid.common.fingerprint import er_grid_code_version

from .check import StoreCheck, check_store
from .flags import flag_names, flags_for_trials, flags_from_frames, status_summary
from .layout import (
    CODES_DIR, DETECTION_DIR, EXAMPLES_DIR, MOVED_ASIDE_DIR, RESULTS_DIR, SANITY_DIR, TRIALS_DIR, UNIQUE_KEYS,
)
from .locate import NoResults, open_results
from .manifest import DamagedStore
from .readers import load, load_codes, load_detection, load_flags, load_notes, load_trials
from .results_store import ResultStore
from .rows import PARTITION_COLUMNS, rows_to_table, without_partitions
from .schemas import (
    ADVERSARIAL, CODES_SCHEMA, DETECTION_SCHEMA, NATURAL, ROW_SCHEMA, SANITY_SCHEMA, TRIAL_SCHEMA, UTC_TIMESTAMP,
    column,
)

__all__ = [
    "ADVERSARIAL", "CODES_DIR", "CODES_SCHEMA", "DETECTION_DIR", "DETECTION_SCHEMA", "DamagedStore", "EXAMPLES_DIR",
    "MOVED_ASIDE_DIR", "NATURAL", "NoResults", "PARTITION_COLUMNS", "RESULTS_DIR", "ROW_SCHEMA", "ResultStore",
    "SANITY_DIR", "SANITY_SCHEMA", "StoreCheck", "TRIALS_DIR", "TRIAL_SCHEMA", "UNIQUE_KEYS", "UTC_TIMESTAMP",
    "check_store", "column", "er_grid_code_version", "flag_names", "flags_for_trials", "flags_from_frames",
    "load", "load_codes", "load_detection", "load_flags", "load_notes", "load_trials", "open_results", "rows_to_table",
    "status_summary", "without_partitions",
]
