"""Running a grid on Ray: the Tuner (``tuner``), the Ray session and trainable (``session``),
resuming after a crash or a kill (``resume``), one driver per experiment (``lease``),
repairing finished trials whose stored files are damaged or missing (``repair``), what a grid
will cost before it runs (``cost``), how long a running one has left (``estimate``) and how
Tune shows it (``watch``: imports Ray, so it is not re-exported here). Ray is imported when a
grid runs, torch when a trial does.
"""

from __future__ import annotations

from .lease import DriverLease, lease_location
from .resume import resume
from .summary import RunSummary, summarize
from .tuner import build_tuner, run

__all__ = ["DriverLease", "RunSummary", "build_tuner", "lease_location", "resume", "run", "summarize"]
