"""Where each table of the results store keeps its files, named once.

::

    examples/experiment=<e>/dataset=<d>/method=<m>/<trial_id>__<attack>__eps<ε>__b<batch>.parquet
    trials/…/<trial_id>.parquet                     the trial row
    detection/…/<trial_id>__<plan hash>.parquet     the detection stage (one file per plan)
    codes/…/<trial_id>.parquet                      the codes stage
    sanity/…/<trial_id>.parquet                     the sanity flags
    notes/…/<trial_id>__<attack>__eps<ε>__b<batch>.parquet   what an attack's library warned of
    _commits/<trial_id>.json                        the commit record (grid.store.manifest)
    _moved_aside/<UTC time>/…                       files a repair replaced, kept as evidence

The path functions take the store (anything with ``partition_dir``) and a trial (anything with
``experiment``, ``dataset``, ``method``, ``trial_id``), so the stages that write a file and the
status that checks it name it the same way.
"""

from __future__ import annotations

from grid.common.fingerprint import short_hash
from grid.common.locations import RESULTS_DIR

from .rows import SEP, eps_text

EXAMPLES_DIR = "examples"
TRIALS_DIR = "trials"
DETECTION_DIR = "detection"
CODES_DIR = "codes"
SANITY_DIR = "sanity"
NOTES_DIR = "notes"
#: Files a repair replaced, kept as evidence (never read as results).
MOVED_ASIDE_DIR = "_moved_aside"
#: The columns that identify one row of each table; duplicates are refused on every read.
UNIQUE_KEYS = {
    EXAMPLES_DIR: ("trial_id", "attack", "eps", "sample_idx"),
    TRIALS_DIR: ("trial_id",),
    DETECTION_DIR: ("trial_id", "detection_config", "detector", "fit_attack", "test_attack"),
}


def trial_file(store, table: str, trial, suffix: str = "") -> str:
    """``<base>/<table>/experiment=…/dataset=…/method=…/<trial_id><suffix>.parquet``."""
    directory = store.partition_dir(table, trial.experiment, trial.dataset, trial.method)
    return f"{directory}/{trial.trial_id}{suffix}.parquet"


def trial_row_path(store, trial) -> str:
    return trial_file(store, TRIALS_DIR, trial)


def codes_path(store, trial) -> str:
    return trial_file(store, CODES_DIR, trial)


def sanity_path(store, trial) -> str:
    return trial_file(store, SANITY_DIR, trial)


def notes_path(store, trial, attack: str, eps: float, batch: int) -> str:
    """The notes of one evaluation batch, named like the batch's own file."""
    return trial_file(store, NOTES_DIR, trial, f"{SEP}{attack}{SEP}eps{eps_text(eps)}{SEP}b{int(batch)}")


def plan_hash(plan) -> str:
    """10 hex digits identifying a detection plan (file-name part; rows carry the full JSON)."""
    return short_hash(plan.to_dict(), 10)


def detection_path(store, trial, plan) -> str:
    """A changed plan hashes to a new file name, so its rows land beside the old ones."""
    return trial_file(store, DETECTION_DIR, trial, f"{SEP}{plan_hash(plan)}")


__all__ = ["CODES_DIR", "DETECTION_DIR", "EXAMPLES_DIR", "MOVED_ASIDE_DIR", "NOTES_DIR", "RESULTS_DIR", "SANITY_DIR",
           "TRIALS_DIR", "UNIQUE_KEYS", "codes_path", "detection_path", "notes_path", "plan_hash", "sanity_path",
           "trial_file", "trial_row_path"]
