"""The results store a user means by a path: the one path convention of every reader and
every ``er-grid`` command (an experiment folder or its ``results`` folder, local or a URI;
``grid.common.locations``)."""

from __future__ import annotations

import pyarrow.fs as pafs

from grid.common.locations import results_location

from . import manifest
from .layout import EXAMPLES_DIR, RESULTS_DIR
from .results_store import ResultStore


class NoResults(ValueError):
    """A path given as a results store holds no committed results."""


def open_results(path) -> ResultStore:
    """The results store a user means by ``path``: an experiment's ``results`` folder, or the
    experiment folder ``<storage>/<experiment>`` (then its ``results``).

    A folder with neither raises :class:`NoResults`; so does one with parquet files but no
    commit record (nothing there counts as committed).
    """
    if isinstance(path, ResultStore):
        return path
    given = ResultStore(path)
    # The folder as given, then its results folder; a URI keeps its arguments in either.
    stores = [given, ResultStore(results_location(given.root))]
    for store in stores:
        if store.fs.get_file_info(f"{store.base}/{manifest.COMMITS_DIR}").type == pafs.FileType.Directory:
            return store
    if given.fs.get_file_info(given.base).type == pafs.FileType.NotFound:
        raise NoResults(f"{given.root} does not exist")
    for store in stores:
        if store.fs.get_file_info(f"{store.base}/{EXAMPLES_DIR}").type == pafs.FileType.Directory:
            raise NoResults(f"{store.root} holds parquet files but no commit record ({manifest.COMMITS_DIR}/): "
                            "nothing in it counts as committed results")
    raise NoResults(f"{given.root} holds no results: give an experiment folder <storage>/<experiment> "
                    f"or its {RESULTS_DIR}/ folder")


__all__ = ["NoResults", "open_results"]
