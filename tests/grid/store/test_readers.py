"""Every reader of every table takes the one path convention: an experiment folder gives the
same rows as its ``results`` folder, and a folder holding neither is one clear error (never an
empty frame). Parametrized over ``grid.store.readers.__all__``, so a reader added later is
checked too. Runtime: < 1 s."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pyarrow as pa
import pytest

from grid.store import NoResults, ResultStore, readers
from grid.store.layout import (
    CODES_DIR, DETECTION_DIR, EXAMPLES_DIR, NOTES_DIR, SANITY_DIR, TRIALS_DIR, trial_file,
)
from grid.store.rows import rows_to_table, without_partitions
from grid.store.schemas import CODES_SCHEMA, DETECTION_SCHEMA, NOTES_SCHEMA, ROW_SCHEMA, SANITY_SCHEMA, TRIAL_SCHEMA

TRIAL = type("Trial", (), {"experiment": "exp", "dataset": "digits", "method": "none", "trial_id": "abcdef0123"})
TABLES = {EXAMPLES_DIR: ROW_SCHEMA, TRIALS_DIR: TRIAL_SCHEMA, DETECTION_DIR: DETECTION_SCHEMA,
          CODES_DIR: CODES_SCHEMA, SANITY_DIR: SANITY_SCHEMA, NOTES_DIR: NOTES_SCHEMA}
READS = {"load": EXAMPLES_DIR, "load_trials": TRIALS_DIR, "load_detection": DETECTION_DIR,
         "load_codes": CODES_DIR, "load_flags": SANITY_DIR, "load_notes": NOTES_DIR}


def value(field: pa.Field):
    """One valid value of a column's type (the trial's own value for its key columns)."""
    if hasattr(TRIAL, field.name):
        return getattr(TRIAL, field.name)
    kind = field.type
    if pa.types.is_string(kind):
        return "x"
    if pa.types.is_boolean(kind):
        return True
    if pa.types.is_integer(kind):
        return 1
    if pa.types.is_floating(kind):
        return 0.5
    if pa.types.is_timestamp(kind):
        return dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    if pa.types.is_list(kind):
        return [0.25, 0.75]
    raise AssertionError(f"no test value for {field}")


@pytest.fixture()
def experiment(tmp_path):
    store = ResultStore(tmp_path / "exp" / "results")
    for table, schema in TABLES.items():
        row = {f.name: value(f) for f in schema}
        suffix = "__fgsm__eps0.1__b0" if table in (EXAMPLES_DIR, NOTES_DIR) else ""
        store.write_atomic(without_partitions(rows_to_table([row], schema, fill={})), trial_file(store, table, TRIAL, suffix))
    return tmp_path / "exp"


def test_every_reader_is_checked_here():
    assert set(readers.__all__) == set(READS)


@pytest.mark.parametrize("reader", sorted(READS))
def test_an_experiment_folder_reads_like_its_results_folder(experiment, reader):
    read = getattr(readers, reader)
    by_results, by_experiment = read(experiment / "results"), read(experiment)
    assert len(by_results) == 1 and by_results["trial_id"].tolist() == [TRIAL.trial_id]
    pd.testing.assert_frame_equal(by_results, by_experiment)
    pd.testing.assert_frame_equal(read(str(experiment)), by_experiment)  # str or Path alike


@pytest.mark.parametrize("reader", sorted(READS))
def test_a_folder_with_neither_is_one_clear_error(tmp_path, reader):
    read = getattr(readers, reader)
    (tmp_path / "empty").mkdir()
    with pytest.raises(NoResults, match="holds no results"):
        read(tmp_path / "empty")
    with pytest.raises(NoResults, match="does not exist"):
        read(tmp_path / "missing")
