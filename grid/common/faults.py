"""Fault-injection hooks for the resume tests: SIGKILL a trial process at a chosen point, or
fill its disk.

Each hook is an environment variable that normal runs never set; ``grid.run.tuner`` forwards every
``ER_GRID_TEST_*`` variable of the driver to the trial processes.

- ``ER_GRID_TEST_KILL_AFTER_EPOCHS=k``: when epoch k+1 finishes training, before it is
  checkpointed (so the last checkpoint is epoch k).
- ``ER_GRID_TEST_KILL_AFTER_BATCHES=k``: right after the k-th evaluation batch this process stores.
- ``ER_GRID_TEST_KILL_IN_DETECTION=1``: in the detection stage, after its adversarial
  examples are crafted and before its rows are written.
- ``ER_GRID_TEST_DISK_FULL_AFTER_BATCHES=k``: every evaluation batch this process writes after
  its k-th fails as a full disk does (``OSError`` ENOSPC, worded and without a file name as
  pyarrow raises it); a real full disk is a tmpfs, which needs root to mount.
"""

from __future__ import annotations

import errno
import os
import signal

KILL_AFTER_EPOCHS_ENV = "ER_GRID_TEST_KILL_AFTER_EPOCHS"
KILL_AFTER_BATCHES_ENV = "ER_GRID_TEST_KILL_AFTER_BATCHES"
KILL_IN_DETECTION_ENV = "ER_GRID_TEST_KILL_IN_DETECTION"
DISK_FULL_AFTER_BATCHES_ENV = "ER_GRID_TEST_DISK_FULL_AFTER_BATCHES"


def kill_if_asked(variable: str, count: int) -> None:
    """SIGKILL this process when ``count`` equals the integer value of ``variable``."""
    wanted = os.environ.get(variable)
    if wanted is not None and count == int(wanted):
        os.kill(os.getpid(), signal.SIGKILL)


def disk_full_if_asked(variable: str, count: int) -> None:
    """Raise ENOSPC, as pyarrow does on a full disk, when ``count`` exceeds the integer value of
    ``variable`` (a full disk stays full: every later write fails too)."""
    wanted = os.environ.get(variable)
    if wanted is not None and count > int(wanted):
        raise OSError(errno.ENOSPC, f"Error writing bytes to file. Detail: [errno {errno.ENOSPC}] "
                                    f"{os.strerror(errno.ENOSPC)}")
