"""The files er-grid keeps in an experiment folder besides the results, named once.

::

    <experiment>/grid_spec.json                               SPEC_FILE (grid.run.tuner writes it)
    <experiment>/<trial name>/checkpoint_<n>/state.pt         STATE_FILE (grid.trial.checkpoints)
    <experiment>/<trial name>/checkpoint_<n>/epoch.json       EPOCH_FILE, the few-byte sidecar

No torch and no Ray at import: ``er-grid status`` and :func:`grid.load_model` read these
files without loading either. :func:`checkpoint_epochs` is the one scan of a trial folder's
checkpoints by their sidecars, shared by the restore, the status and the model loader.
"""

from __future__ import annotations

import math
import re
from typing import Optional

from grid.common.bounded_json import bounded_json, read_at_most
from grid.common.errors import DamagedRecord

# The spec and its trial ids, so that running a changed spec into an existing experiment
# stops instead of mixing two grids in one folder.
SPEC_FILE = "grid_spec.json"
STATE_FILE = "state.pt"
EPOCH_FILE = "epoch.json"
# Tune names a trial's checkpoint folders checkpoint_000000, checkpoint_000001, ...
CHECKPOINT_DIR = re.compile(r"checkpoint_\d+")
# The sidecar is a few bytes ({"epoch": 3, "train_seconds": 12.5}); anything longer is not one.
MAX_SIDECAR_BYTES = 4096


def checkpoint_epochs(fs, trial_path: str, epochs: Optional[int] = None) -> list[tuple[int, float, str]]:
    """``(epoch, train_seconds, folder path)`` of every checkpoint folder in ``trial_path``
    whose sidecar reads, newest epoch first.

    ``fs``: a ``pyarrow.fs.FileSystem``. A folder without a readable sidecar was not persisted
    completely (a kill during its upload) and is left out; a missing trial folder gives [].
    ``epochs``: the trial's planned epochs, when known; a sidecar claiming another epoch
    (``99`` of 2) is left out too (:func:`scan_checkpoints` names it).
    """
    return scan_checkpoints(fs, trial_path, epochs)[0]


def scan_checkpoints(fs, trial_path: str, epochs: Optional[int] = None) -> tuple[list, list]:
    """``(checkpoints, damaged)``: the checkpoints as :func:`checkpoint_epochs` gives them, and
    ``"<folder>/epoch.json: reason"`` for each sidecar that is whole but cannot be true (too
    large, too deep, not a record, an epoch outside 0..``epochs``). A sidecar that is missing
    or cut short is neither: that checkpoint was not persisted completely."""
    import pyarrow.fs as pafs

    found, damaged = [], []
    for info in fs.get_file_info(pafs.FileSelector(trial_path, allow_not_found=True)):
        if info.type != pafs.FileType.Directory or not CHECKPOINT_DIR.fullmatch(info.base_name):
            continue
        where = f"{info.base_name}/{EPOCH_FILE}"
        try:
            with fs.open_input_stream(f"{info.path}/{EPOCH_FILE}") as stream:
                data = read_at_most(stream, MAX_SIDECAR_BYTES)
        except OSError:
            continue
        try:
            epoch, seconds = _sidecar(bounded_json(data, where, MAX_SIDECAR_BYTES), epochs)
        except DamagedRecord as err:
            # A cut-short sidecar (kill during upload) is an unpersisted checkpoint, not damage.
            if "not JSON" not in str(err):
                damaged.append(str(err))
            continue
        except ValueError as err:
            damaged.append(f"{where} is damaged ({err})")
            continue
        found.append((epoch, seconds, info.path))
    found.sort(key=lambda entry: entry[0], reverse=True)
    return found, damaged


def _sidecar(record, epochs: Optional[int]) -> tuple[int, float]:
    """(epoch, train seconds) of a parsed sidecar; ValueError naming what cannot be true."""
    if not isinstance(record, dict):
        raise ValueError("not a sidecar record")
    epoch, seconds = record.get("epoch"), record.get("train_seconds", 0.0)
    if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
        raise ValueError(f"epoch {epoch!r} is not an epoch number")
    if epochs is not None and epoch > epochs:
        raise ValueError(f"claims epoch {epoch} of the trial's {epochs}")
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"train_seconds {seconds!r} is not a duration")
    return epoch, float(seconds)
