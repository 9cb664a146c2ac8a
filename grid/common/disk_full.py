"""A full disk, recognised wherever it surfaces and named in one line.

No space left on a device (``ENOSPC``, errno 28) reaches the driver in many shapes: a plain
``OSError`` (pyarrow's, without a file name), a trial's error wrapped by Ray (``RayTaskError``,
its ``cause``) and by Tune (a ``TuneError`` holding only the text of the trace), or not at all:
Tune's own state files cut short by the full disk make Tune fail later reading them back (an
empty ``error.pkl`` is ``EOFError: Ran out of input``). :func:`disk_full` turns each into one
:class:`DiskFull` naming where; the CLI prints it as one line, exit 2.

Nothing committed is lost to a full disk: every store write is a temp file renamed into place
(``grid.store``), so a write cut short is never committed and is recomputed on resume.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator, Optional

from .errors import GridError

#: The text of ENOSPC, as every layer (Python, pyarrow, a trace kept as text) spells it.
NO_SPACE = os.strerror(errno.ENOSPC)
# Below this much free space a disk counts as full: a write that failed for want of room
# frees its few KB (the temp file is deleted) and the next write takes them again.
FULL_BELOW_BYTES = 1 << 20
# How deep an exception chain is followed (causes, contexts, Ray's `cause`).
MAX_CHAIN = 32


class DiskFull(GridError):
    """No space left on a device er-grid writes to; the message names where (when known: the
    file, the full disk's folder or the experiment) and what to do."""

    def __init__(self, where: Optional[str], experiment: Optional[str] = None):
        self.where, self.experiment = where, experiment
        free = free_bytes(where) if where else None
        place = f" at {where}" + (f" ({free:,} bytes free there)" if free is not None else "") if where else ""
        advice = (f"; results committed so far are kept: free space, then run `er-grid resume {experiment}`"
                  if experiment else "; free space and run the command again")
        super().__init__(f"{NO_SPACE} (disk full){place}{advice}")


def no_space_error(err: BaseException) -> Optional[BaseException]:
    """The exception in ``err``'s chain that says ENOSPC (an ``OSError`` with errno 28, or one
    whose text carries Python's or the OS's words for it), or None. The chain is followed
    through ``__cause__``, ``__context__`` and the ``cause`` Ray's task errors keep."""
    seen: set[int] = set()
    todo = [err]
    while todo and len(seen) < MAX_CHAIN:
        current = todo.pop(0)
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno == errno.ENOSPC:
            return current
        text = str(current)
        if NO_SPACE in text or f"[Errno {errno.ENOSPC}]" in text:
            return current
        todo += [current.__cause__, current.__context__, getattr(current, "cause", None)]
    return None


def free_bytes(path: str) -> Optional[int]:
    """Free bytes on the local filesystem of ``path`` (its nearest existing folder); None for
    an object store or where it cannot be measured."""
    if "://" in path:
        return None
    folder = Path(path).expanduser().absolute()
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def out_of_room(path: str) -> bool:
    """Whether the local filesystem of ``path`` has (almost) no space left."""
    free = free_bytes(path)
    return free is not None and free < FULL_BELOW_BYTES


def disk_full(err: BaseException, experiment: Optional[str] = None) -> Optional[DiskFull]:
    """``err`` as a :class:`DiskFull` when it is one, else None.

    It is one when its chain says ENOSPC, or (with ``experiment``, the folder being written)
    when it failed while that folder's disk had no room left: Tune's own files cut short by the
    full disk fail only when read back, with nothing of ENOSPC left in the error. The place named:
    the file the OS named, else the full disk among the experiment's and the temp folder's,
    else the experiment (a write that failed freed its room again)."""
    found = no_space_error(err)
    if found is None and not (experiment and out_of_room(experiment)):
        return None
    filename = getattr(found, "filename", None)
    candidates = [c for c in (experiment, tempfile.gettempdir()) if c]
    where = (str(filename) if filename else None) or next((c for c in candidates if out_of_room(c)), None)
    return DiskFull(where or experiment, experiment)


@contextlib.contextmanager
def naming_full_disk(experiment: Optional[str] = None) -> Iterator[None]:
    """Re-raise an error of the block that a full disk caused as one :class:`DiskFull` naming
    where (see :func:`disk_full`); user errors and other failures pass unchanged."""
    try:
        yield
    except GridError:
        raise
    except Exception as err:
        full = disk_full(err, experiment)
        if full is None:
            raise
        raise full from err


def raise_if_trials_hit_full_disk(results, experiment: str) -> None:
    """:class:`DiskFull` when a trial of ``results`` (Tune's results) errored for want of space:
    the run cannot go on until space is freed, whatever the other trials did."""
    for result in results:
        if result.error is not None and no_space_error(result.error) is not None:
            raise disk_full(result.error, experiment) from result.error


__all__ = ["DiskFull", "NO_SPACE", "disk_full", "free_bytes", "naming_full_disk", "no_space_error", "out_of_room",
           "raise_if_trials_hit_full_disk"]
