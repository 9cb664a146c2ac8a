"""Fault-injection hooks for the resume tests: SIGKILL a trial process at a chosen point.

Each hook is an environment variable that normal runs never set; ``grid.run.tuner`` forwards every
``ER_GRID_TEST_*`` variable of the driver to the trial processes.

- ``ER_GRID_TEST_KILL_AFTER_EPOCHS=k``: when epoch k+1 finishes training, before it is
  checkpointed (so the last checkpoint is epoch k).
- ``ER_GRID_TEST_KILL_AFTER_BATCHES=k``: right after the k-th evaluation batch this process stores.
- ``ER_GRID_TEST_KILL_IN_DETECTION=1``: in the detection stage, after its adversarial
  examples are crafted and before its rows are written.
"""

from __future__ import annotations

import os
import signal

KILL_AFTER_EPOCHS_ENV = "ER_GRID_TEST_KILL_AFTER_EPOCHS"
KILL_AFTER_BATCHES_ENV = "ER_GRID_TEST_KILL_AFTER_BATCHES"
KILL_IN_DETECTION_ENV = "ER_GRID_TEST_KILL_IN_DETECTION"


def kill_if_asked(variable: str, count: int) -> None:
    """SIGKILL this process when ``count`` equals the integer value of ``variable``."""
    wanted = os.environ.get(variable)
    if wanted is not None and count == int(wanted):
        os.kill(os.getpid(), signal.SIGKILL)
