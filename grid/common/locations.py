"""Where things live: the one convention for storage paths, experiment folders and their
``results`` folder, local or on an object store.

For storage ``S`` and experiment ``E``: the experiment folder is ``S/E`` (Tune's trial folders,
``grid_spec.json``) and its results store is ``S/E/results``. A URI keeps its query arguments
(``s3://bucket/grid?endpoint_override=…``) at the end whatever is joined to it. Every reader
and command takes either folder (:func:`folder_candidates`); no other module strips or appends
``results`` by itself.
"""

from __future__ import annotations

import os
from pathlib import Path

#: Where an experiment folder keeps its results store.
RESULTS_DIR = "results"


def default_storage() -> str:
    """Where the job files put results when neither ``--storage`` nor the preset names a place:
    ``$XDG_DATA_HOME/er-grid/results``, ``~/.local/share/er-grid/results`` where that is unset.

    A folder of the user's own (created owner-only by :func:`make_private`), never a shared one
    such as the machine's temp folder: a job finding an experiment of the same name and spec
    there resumes it, so a shared default would let one user resume another's experiment.
    """
    base = os.environ.get("XDG_DATA_HOME", "")
    if not os.path.isabs(base):  # the XDG rule: a relative value is ignored
        base = os.path.join(Path.home(), ".local", "share")
    return str(Path(base) / "er-grid" / "results")


def make_private(folder: str) -> None:
    """Create the local ``folder`` and its missing parents readable by their owner only (0700);
    folders already there are left as they are."""
    path, missing = Path(folder).expanduser(), []
    while not path.exists():
        missing.append(path)
        path = path.parent
    for part in reversed(missing):
        part.mkdir(mode=0o700, exist_ok=True)


def storage_location(storage: str) -> str:
    """Tune's ``storage_path``: URIs unchanged; local paths absolute (Tune requires it)."""
    if "://" in storage:
        return storage
    return str(Path(storage).expanduser().resolve())


def join(base: str, *parts: str) -> str:
    """``base/part/...``; a URI's query arguments stay at the end."""
    path, sep, query = base.partition("?")
    joined = "/".join([path.rstrip("/"), *parts])
    return joined + sep + query


def experiment_path(storage: str, experiment: str) -> str:
    """``<storage>/<experiment>`` (a URI's query arguments stay at the end)."""
    return join(storage_location(storage), experiment)


def results_location(experiment_dir: str) -> str:
    """The results store root of an experiment: ``<experiment dir>/results``."""
    return join(experiment_dir, RESULTS_DIR)


def parent_of_results(path: str):
    """The experiment folder when ``path`` names its ``results`` folder, else None."""
    base, sep, query = path.partition("?")
    base = base.rstrip("/")
    if base.endswith(f"/{RESULTS_DIR}"):
        return base[: -len(RESULTS_DIR) - 1] + sep + query
    return None


def folder_candidates(path: str) -> tuple[str, str]:
    """(experiment folder, results folder) that a user may mean by ``path``: the experiment
    folder itself (then its ``results``), or its ``results`` folder (then its parent)."""
    path = storage_location(str(path))
    parent = parent_of_results(path)
    if parent is not None:
        return parent, path
    return path, results_location(path)


def filesystem(path: str):
    """(``pyarrow.fs.FileSystem``, path on it) for a local path or a URI."""
    import pyarrow.fs

    if "://" in path:
        return pyarrow.fs.FileSystem.from_uri(path)
    return pyarrow.fs.LocalFileSystem(), str(Path(path).expanduser().resolve())


__all__ = ["RESULTS_DIR", "default_storage", "experiment_path", "filesystem", "folder_candidates", "join", "parent_of_results",
           "make_private", "results_location", "storage_location"]
