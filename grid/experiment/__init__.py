"""An experiment folder ``<storage>/<experiment>`` and what er-grid keeps in it besides the
results: the spec record (``spec_record``: the one reader and writer of ``grid_spec.json``), the
names of its files and the scan of a trial's checkpoints (``files``), ``er-grid status``
(``status``) and trained models back from their checkpoints (``models``). No torch at import:
``load_model`` imports it when called.
"""

from __future__ import annotations

from .files import CHECKPOINT_DIR, EPOCH_FILE, SPEC_FILE, STATE_FILE, checkpoint_epochs
from .models import load_model
from .spec_record import check_recorded_spec, experiment_folder, planned_trials, read_record, record_spec
from .status import ExperimentStatus, TrialStatus, status, trials_to_repair

__all__ = ["CHECKPOINT_DIR", "EPOCH_FILE", "ExperimentStatus", "SPEC_FILE", "STATE_FILE", "TrialStatus",
           "check_recorded_spec", "checkpoint_epochs", "experiment_folder", "load_model", "planned_trials",
           "read_record", "record_spec", "status", "trials_to_repair"]
