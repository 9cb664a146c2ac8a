"""The example rows ``er-grid query`` and ``er-grid report`` read: their filters checked against
the store first, damaged committed files stopping the command (naming them) or, with
``--skip-damaged``, left out after a warning, and an empty selection refused."""

from __future__ import annotations

import sys
from typing import Callable

from .common import UsageError
from .filters import check_filters


def query_rows(path: str, filters: dict, by: list, worst_case: bool, skip_damaged: bool):
    """``query``'s rows reduced a few trials at a time (``grid.report.query.query_store``):
    what its table, flags and attacks need, in memory that does not grow with the store."""
    from grid.report.query import query_store
    from grid.store import open_results

    store = open_results(path)
    check_filters(store.root, path, filters)
    parts = skipping_damaged(lambda damaged: query_store(store, by, worst_case, damaged, filters), skip_damaged)
    if parts.trials().empty:
        raise no_rows(filters, path)
    return parts


# Example columns no report section reads (the batch index, the adversarial prediction, the
# attack's time, the write time): left unread, a fifth of the rows' memory.
NOT_REPORTED = ("batch", "pred_adv", "seconds", "created_at")


def load_rows(path: str, filters: dict, skip_damaged: bool = False):
    """Committed example rows under ``path`` matching ``filters`` (column → list of values), their
    strings as sorted categoricals (``grid.store.load``: the report's rows in a tenth of the
    memory), without the columns :data:`NOT_REPORTED`."""
    from grid.store import ROW_SCHEMA, load, open_results

    root = open_results(path).root
    check_filters(root, path, filters)
    columns = [c for c in ROW_SCHEMA.names if c not in NOT_REPORTED]
    df = skipping_damaged(lambda damaged: load(root, damaged=damaged, columns=columns, categorical=True, **filters),
                          skip_damaged)
    if df.empty:
        raise no_rows(filters, path)
    return df


def skipping_damaged(read: Callable[[str], object], skip_damaged: bool):
    """``read("raise")``; with ``skip_damaged``, damaged committed files are named on stderr and
    the rows read again without them (``read("skip")``)."""
    from grid.store import DamagedStore

    try:
        return read("raise")
    except DamagedStore as err:
        if not skip_damaged:
            raise
        print(f"er-grid: warning: {err}; leaving them out", file=sys.stderr)
        return read("skip")


def no_rows(filters: dict, path: str) -> UsageError:
    # Every value is there (checked first), but not together (a method never run on that dataset).
    together = f"{filters} together" if filters else "anything"
    return UsageError(f"no result rows match {together} in {path}")


__all__ = ["NOT_REPORTED", "load_rows", "no_rows", "query_rows", "skipping_damaged"]
