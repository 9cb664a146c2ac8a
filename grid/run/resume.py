"""Resume an experiment: ``Tuner.restore(path, resume_errored=True)`` continues unfinished
trials and resumes errored ones from their last checkpoint (Tune's ``restart_errored`` would
throw the checkpoints away, so it is not used); then the repair (``grid.run.repair``) runs the
missing stages of every trial Tune considers finished whose stored files are damaged or
incomplete. An experiment whose every trial is already DONE is answered from the store, without
starting Ray. Tune's own files cut short by a crash or a full disk are set aside first, named
(``grid.run.tune_state``); a full disk is one line naming it (``grid.common.disk_full``).

Trust: ``resume`` restores through ``Tuner.restore``, which unpickles the experiment state
(``tuner.pkl``, ``experiment_state-*.json``): resume only folders you (or your cluster) wrote.
``status``, ``query`` and ``report`` never unpickle anything.
"""

from __future__ import annotations

from grid.common.disk_full import naming_full_disk, raise_if_trials_hit_full_disk
from grid.common.errors import GridError
from grid.common.locations import storage_location
from grid.experiment.spec_record import experiment_folder
from grid.experiment.status import status

from .feasibility import check_cluster_fits, recorded_demands
from .lease import releases_driver_leases, take_driver_lease
from .repair import repair_finished_trials
from .session import connect, trainable
from .summary import RunSummary
from .tune_state import recorded_param_space, recover_tune_state, restart_expected
from .watch import use_progress_table


@releases_driver_leases
def resume(path: str) -> RunSummary:
    """Resume the experiment folder ``path`` (or its results folder): unfinished and errored
    trials continue from their last checkpoint; finished ones are kept, and those whose stored
    results are damaged or incomplete are repaired (``grid.run.repair``). Works on a moved or
    copied folder. Trusts the folder: Tune's restore unpickles its experiment state. Holds the
    experiment's driver lease (``grid.run.lease``) until it returns: a second driver is refused."""
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
    take_driver_lease(path)  # before Tune's files are checked or set aside; shared with a `run` that resumes
    recovery = recover_tune_state(path)  # Tune's files cut short (a crash, a full disk): named, set aside
    finished = already_finished(path)
    if finished is not None:
        return finished
    connect()
    check_cluster_fits(recorded_demands(path))  # before Tune restores trials that could never start
    # With its experiment state set aside Tune restarts the run from the trials given here (from
    # grid_spec.json); each continues from its checkpoints and skips its committed results.
    param_space = recorded_param_space(path) if recovery.trial_list_lost else None
    try:
        tuner = tune.Tuner.restore(path, trainable=trainable(), param_space=param_space, resume_unfinished=True,
                                   resume_errored=True)
    except (ValueError, KeyError, EOFError, TypeError, AttributeError, ImportError) as err:
        # Tune's own state (tuner.pkl, experiment_state-*.json) edited into something whole but wrong.
        raise GridError(f"{path}: Ray Tune's experiment state is damaged ({type(err).__name__}: "
                        f"{str(err).splitlines()[0] if str(err) else ''})") from err
    use_progress_table()  # Tune's newer console output ignores the restored progress reporter
    with naming_full_disk(path), restart_expected(recovery.trial_list_lost):
        results = tuner.fit()
    raise_if_trials_hit_full_disk(results, path)
    return repair_finished_trials(path, results)


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


__all__ = ["already_finished", "resume"]
