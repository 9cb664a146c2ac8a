"""The sanity stage: er_core's sanity flags of a finished trial, from its committed rows and
trial row, one file per trial (``sanity/…/<trial_id>.parquet``, ``grid.store.schemas.SANITY_SCHEMA``).
Zero rows when nothing is flagged, so "checked, clean" differs from "not checked". Derived from
the rows and the trial row, so it is redone whenever either was (re)written. The rules are
``er_core.sanity``; how status, query and report read the flags is ``grid.store.flags``.
"""

from __future__ import annotations

from grid.store.flags import compute_flags
from grid.store.layout import sanity_path
from grid.store.readers import load_notes
from grid.store.rows import rows_to_table, without_partitions
from grid.store.schemas import SANITY_SCHEMA

from .base import SingleFileStage, TrialBundle

FLAG_FIELDS = ("flag", "attack", "eps", "value", "threshold", "evidence")


def write_flags(store, trial, flags: list) -> str:
    """Store (or replace) one trial's flags atomically; zero rows records "checked, nothing flagged".

    ``trial``: anything with experiment, dataset, method and trial_id.
    """
    key = {k: getattr(trial, k) for k in ("experiment", "dataset", "method", "trial_id")}
    if flags:
        rows = [{**key, **{k: getattr(f, k) for k in FLAG_FIELDS}} for f in flags]
        table = rows_to_table(rows, SANITY_SCHEMA, fill={})
    else:
        table = SANITY_SCHEMA.empty_table()
    path = sanity_path(store, trial)
    store.write_atomic(without_partitions(table), path)
    return path


def check_trial(store, trial) -> list:
    """Compute and store the flags of a finished trial (``trial``: a ``grid.spec.TrialConfig``)."""
    key = {"experiment": trial.experiment, "dataset": trial.dataset, "method": trial.method}
    flags, _ = compute_flags(store.load(**key, trial_id=trial.trial_id),
                             store.load_trials(**key, trial_id=trial.trial_id),
                             load_notes(store, **key, trial_id=trial.trial_id))
    write_flags(store, trial, flags)
    return flags


class SanityStage(SingleFileStage):
    name = "sanity"
    derived_from = ("evaluation", "trial_row")

    def wants(self, trial) -> bool:
        return True

    def path(self, store, trial) -> str:
        return sanity_path(store, trial)

    def compute(self, bundle: TrialBundle) -> None:
        check_trial(bundle.store, bundle.trial)


STAGE = SanityStage()

__all__ = ["STAGE", "check_trial", "write_flags"]
