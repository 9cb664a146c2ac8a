"""The user error every layer raises: a bad path, a folder that is not an experiment, a spec
run into another spec's experiment, a record on storage that er-grid cannot have written. The
CLI prints it as one line (exit 2), no traceback."""

from __future__ import annotations


class GridError(ValueError):
    """A user error (bad path, not an experiment): the CLI prints it without a traceback."""


class DamagedRecord(GridError):
    """A JSON record read from storage (commit record, spec record, checkpoint sidecar) that is
    too large, too deeply nested or not JSON: damaged, named in one line."""


__all__ = ["DamagedRecord", "GridError"]
