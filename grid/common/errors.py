"""The user error every layer raises: a bad path, a folder that is not an experiment, a spec
run into another spec's experiment. The CLI prints it as one line (exit 2), no traceback."""

from __future__ import annotations


class GridError(ValueError):
    """A user error (bad path, not an experiment): the CLI prints it without a traceback."""


__all__ = ["GridError"]
