"""Resume an experiment: ``Tuner.restore(path, resume_errored=True)`` continues unfinished
trials and resumes errored ones from their last checkpoint (Tune's ``restart_errored`` would
throw the checkpoints away, so it is not used); then the repair (``grid.run.repair``) runs the
missing stages of every trial Tune considers finished whose stored files are damaged or
incomplete. An experiment whose every trial is already DONE is answered from the store, without
starting Ray.

Trust: ``resume`` restores through ``Tuner.restore``, which unpickles the experiment state
(``tuner.pkl``, ``experiment_state-*.json``): resume only folders you (or your cluster) wrote.
``status``, ``query`` and ``report`` never unpickle anything.
"""

from __future__ import annotations

import re

from grid.common.bounded_json import bounded_json, read_at_most
from grid.common.errors import GridError
from grid.common.locations import filesystem, storage_location
from grid.experiment.spec_record import experiment_folder
from grid.experiment.status import status

from .feasibility import check_cluster_fits, recorded_demands
from .repair import repair_finished_trials
from .session import connect, trainable
from .summary import RunSummary


def resume(path: str) -> RunSummary:
    """Resume the experiment folder ``path`` (or its results folder): unfinished and errored
    trials continue from their last checkpoint; finished ones are kept, and those whose stored
    results are damaged or incomplete are repaired (``grid.run.repair``). Works on a moved or
    copied folder. Trusts the folder: Tune's restore unpickles its experiment state."""
    from ray import tune

    path = storage_location(path)
    if not tune.Tuner.can_restore(path):
        try:
            path = experiment_folder(path)
        except GridError:
            pass
    if not tune.Tuner.can_restore(path):
        raise GridError(
            f"{path} is not a Ray Tune experiment folder (no tuner.pkl / experiment_state file); "
            "give the folder <storage>/<experiment> that `er-grid run` printed"
        )
    check_tune_state(path)
    finished = already_finished(path)
    if finished is not None:
        return finished
    connect()
    check_cluster_fits(recorded_demands(path))  # before Tune restores trials that could never start
    try:
        tuner = tune.Tuner.restore(path, trainable=trainable(), resume_unfinished=True, resume_errored=True)
    except (ValueError, KeyError, EOFError, TypeError, AttributeError, ImportError) as err:
        # Tune's own state (tuner.pkl, experiment_state-*.json) cut short or edited.
        raise GridError(f"{path}: Ray Tune's experiment state is damaged ({type(err).__name__}: "
                        f"{str(err).splitlines()[0] if str(err) else ''})") from err
    return repair_finished_trials(path, tuner.fit())


def already_finished(path: str) -> RunSummary | None:
    """The summary of an experiment whose every planned trial is DONE (every stage's files
    committed and intact, ``grid.experiment.status``), read from the store alone; None when
    anything is left to do. Then ``resume`` starts no Ray at all: restoring Tune would start a
    local cluster (half a minute) only to find nothing to run."""
    report = status(path)
    if report.damaged_records or any(t.state != "DONE" for t in report.trials):
        return None
    return RunSummary(experiment_path=path, trials=len(report.trials), terminated=len(report.trials), errored=0,
                      errors=())


# Tune's experiment state holds a few KB per trial; a grid has at most 10,000 trials.
MAX_TUNE_STATE_BYTES = 256 << 20


def check_tune_state(path: str) -> None:
    """Tune's experiment state files must at least be whole JSON: a cut-short one makes Tune's
    restore carry on with a trial list it cannot rebuild and fail deep inside ``fit``. Only
    parsed as JSON here, never unpickled."""
    import pyarrow.fs as pafs

    fs, folder = filesystem(path)
    for info in fs.get_file_info(pafs.FileSelector(folder, allow_not_found=True)):
        if not re.fullmatch(r"experiment_state-.*\.json", info.base_name):
            continue
        try:
            with fs.open_input_stream(info.path) as stream:
                bounded_json(read_at_most(stream, MAX_TUNE_STATE_BYTES), info.path, MAX_TUNE_STATE_BYTES)
        except (OSError, ValueError, GridError) as err:
            raise GridError(f"{info.path}: Ray Tune's experiment state is damaged "
                            f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})") from err


__all__ = ["already_finished", "check_tune_state", "resume"]
