"""What every command line of er-grid shares: exit codes, the one-line user error, the guard
that turns user errors into that line, and the summary of a run."""

from __future__ import annotations

import os
import select
import signal
import sys
from typing import Callable, Optional

EXIT_OK, EXIT_TRIAL_ERRORS, EXIT_USAGE = 0, 1, 2
# A reader that stopped early (`er-grid query … | head`) is not an error: nothing is printed and
# the exit code is 141 = 128 + SIGPIPE, what the shell reports for a Unix tool that SIGPIPE ended
# (`seq 100000 | head`), so a pipeline under `set -o pipefail` still sees the output was cut.
# Not SIGPIPE's default action itself: that would also kill a run whose socket (Ray, S3) closed.
EXIT_BROKEN_PIPE = 128 + int(signal.SIGPIPE)


class UsageError(ValueError):
    """Bad input from the command line: printed as one line, exit code 2."""


def print_summary(summary) -> int:
    print(f"experiment: {summary.experiment_path}")
    print(f"trials: {summary.trials} — finished {summary.terminated}, errored {summary.errored}")
    for line in summary.errors:
        print(f"  error: {line}")
    if summary.errored:
        print(f"resume with: er-grid resume {summary.experiment_path}")
        return EXIT_TRIAL_ERRORS
    return EXIT_OK


def spec_with_storage(spec: dict, storage: Optional[str]):
    """A validated GridSpec from ``spec`` with ``storage`` (if given) as its storage_path, so
    that the spec's checks (e.g. shared storage when num_nodes > 1) see the real location."""
    from grid.spec import GridSpec

    return GridSpec.from_dict(dict(spec, storage_path=storage) if storage else spec)


def guarded(command: Callable[[], int]) -> int:
    """Run ``command``; user errors, damaged files, OS errors and a full disk (however wrapped)
    become one line on stderr naming what is wrong (and the path), and exit code 2. Never a
    traceback for those."""
    import yaml

    from grid.common.disk_full import disk_full

    try:
        code = command()
        sys.stdout.flush()  # a reader gone meanwhile shows here, inside the guard, not at exit
        return code
    except BrokenPipeError as err:
        if not stdout_reader_gone():
            message = f"{err.strerror or err}"  # a socket's, not our output's: a real error
        else:
            # Python flushes stdout again at exit; point it at /dev/null so that says nothing.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return EXIT_BROKEN_PIPE
    except OSError as err:
        # Permission denied, is/not a directory, disk full, missing file, object-store errors.
        where = f": {err.filename}" if getattr(err, "filename", None) else ""
        full = disk_full(err)  # pyarrow's ENOSPC names no file: said as a full disk, with where
        message = str(full) if full else f"{err.strerror or err}{where}" if err.strerror else f"{err}{where}"
    except (ValueError, yaml.YAMLError) as err:
        # Usage errors (UsageError, grid.common.errors.GridError), spec validation, store filters,
        # damaged results (DamagedStore) and damaged JSON records: ValueErrors naming the field
        # or the file. OSError comes first: a few errors are both (io.UnsupportedOperation).
        # A full disk met by a run or resume (grid.common.disk_full.DiskFull) is a GridError.
        message = str(err)
    except Exception as err:
        # A full disk wrapped by Ray or Tune (a trial's RayTaskError, a TuneError's text); any
        # other error is a bug and keeps its traceback.
        full = disk_full(err)
        if full is None:
            raise
        message = str(full)
    print(f"er-grid: error: {' '.join(message.split())}", file=sys.stderr)
    return EXIT_USAGE


def stdout_reader_gone() -> bool:
    """Whether stdout is a pipe whose reader has closed it: then a BrokenPipeError is the reader
    leaving (``| head``). ``poll`` flags such a pipe with POLLERR (Linux, macOS)."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        return False  # stdout replaced by an object without a descriptor (tests, notebooks)
    if not hasattr(select, "poll"):
        return True
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    return any(events & (select.POLLERR | select.POLLHUP) for _fd, events in poller.poll(0))


__all__ = ["EXIT_BROKEN_PIPE", "EXIT_OK", "EXIT_TRIAL_ERRORS", "EXIT_USAGE", "UsageError", "guarded", "print_summary", "spec_with_storage"]
