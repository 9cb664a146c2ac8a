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

import json
import re

# The spec and its trial ids, so that running a changed spec into an existing experiment
# stops instead of mixing two grids in one folder.
SPEC_FILE = "grid_spec.json"
STATE_FILE = "state.pt"
EPOCH_FILE = "epoch.json"
# Tune names a trial's checkpoint folders checkpoint_000000, checkpoint_000001, ...
CHECKPOINT_DIR = re.compile(r"checkpoint_\d+")


def checkpoint_epochs(fs, trial_path: str) -> list[tuple[int, float, str]]:
    """``(epoch, train_seconds, folder path)`` of every checkpoint folder in ``trial_path``
    whose sidecar reads, newest epoch first.

    ``fs``: a ``pyarrow.fs.FileSystem``. A folder without a readable sidecar was not persisted
    completely (a kill during its upload) and is left out; a missing trial folder gives [].
    """
    import pyarrow.fs as pafs

    found = []
    for info in fs.get_file_info(pafs.FileSelector(trial_path, allow_not_found=True)):
        if info.type != pafs.FileType.Directory or not CHECKPOINT_DIR.fullmatch(info.base_name):
            continue
        try:
            with fs.open_input_stream(f"{info.path}/{EPOCH_FILE}") as stream:
                record = json.loads(stream.read())
            found.append((int(record["epoch"]), float(record.get("train_seconds", 0.0)), info.path))
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            continue
    found.sort(key=lambda entry: entry[0], reverse=True)
    return found
