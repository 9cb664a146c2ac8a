"""Build and run the Ray Tune experiment of a :class:`~grid.spec.GridSpec`.

- :func:`build_tuner`: one Tune trial per ``TrialConfig`` (``param_space`` is a grid search
  over ``TrialConfig.to_dict()``), resources per dataset through ``tune.with_resources``,
  ``RunConfig(storage_path, name=experiment, FailureConfig(max_failures))``, the newest
  ``spec.keep_checkpoints`` checkpoints kept, trial names like ``digits-madry-eps0.1-lamna-s0-1a2b3c``,
  the grid's progress table and TensorBoard curves (``grid.run.watch``).
- :func:`run`: ``Tuner.fit()``; a second run of the same spec into the same experiment resumes
  it (``grid.run.resume``), a different spec is refused (``grid.experiment.spec_record``).

Where things live, for local storage ``S`` and experiment ``E``: Tune's experiment folder
``S/E`` (trial folders with ``checkpoint_00000k`` per epoch) and the results store
``S/E/results`` (``grid.common.locations``). The trainable finds ``S/E/results`` from Tune's
storage context at run time, so the folder ``S/E`` can be moved or copied elsewhere and resumed
there. For an object-store ``S`` (``s3://…``) the results URI is passed to the trials
explicitly (its query arguments such as ``endpoint_override`` are kept). The driver's code
version is exported to its environment (``grid.common.fingerprint.export_code_version``) before
Ray starts, so the trials of a Ray it starts record the same one.
"""

from __future__ import annotations

from typing import Optional

from grid.common.disk_full import naming_full_disk, raise_if_trials_hit_full_disk
from grid.common.errors import GridError
from grid.common.fingerprint import export_code_version
from grid.common.locations import experiment_path, results_location, storage_location
from grid.experiment.spec_record import check_recorded_spec, record_spec
from grid.spec import GridSpec, TrialConfig, check_data_root, storage_refusal

from .feasibility import check_cluster_fits, spec_demands
from .lease import releases_driver_leases, take_driver_lease
from .resume import resume
from .session import connect, trainable
from .summary import RunSummary, summarize
from .tune_state import tune_param_space


def trial_name(trial) -> str:
    """Tune trial name and folder name: the TrialConfig's readable name."""
    return TrialConfig.from_dict(trial.config["trial"]).name


def build_tuner(spec: GridSpec, storage: Optional[str] = None):
    """A ``tune.Tuner`` for every trial of ``spec``; ``storage`` overrides ``spec.storage_path``."""
    from ray import tune

    from . import watch

    storage = storage_location(storage or spec.storage_path)
    # The spec checked its own storage_path; `storage` may be another (a Python caller's).
    refusal = storage_refusal(storage, spec.num_nodes, spec.shared_storage)
    if refusal:
        raise GridError(f"storage {refusal}")
    trials = spec.expand()
    # The driver's code version (its checkout's commit, or what `er-grid submit` sent with the
    # job) into its environment before Ray starts: a local Ray's workers inherit it, so rows
    # record the driver's version even where a worker's copy of the code has no .git.
    export_code_version()
    results = results_location(experiment_path(storage, spec.experiment)) if "://" in storage else None
    param_space = tune_param_space(trials, results)
    run_config = tune.RunConfig(
        name=spec.experiment,
        storage_path=storage,
        failure_config=tune.FailureConfig(max_failures=spec.max_failures),
        # The newest spec.keep_checkpoints per trial (None: all): what a resumed or
        # re-evaluated trial starts from, with older ones as fallbacks.
        checkpoint_config=tune.CheckpointConfig(num_to_keep=spec.keep_checkpoints),
        # The grid's progress table and TensorBoard curves against the epoch (grid.run.watch);
        # verbose 1: the table alone, not a line per report with the whole trial config.
        progress_reporter=watch.progress_reporter(),
        callbacks=[watch.EpochTensorBoard()],
        verbose=1,
    )
    watch.use_progress_table()
    # reuse_actors: a finished trial's worker process runs the next trial with the same
    # resources, so torch/er_core are imported once per worker rather than once per trial.
    tune_config = tune.TuneConfig(trial_name_creator=trial_name, trial_dirname_creator=trial_name,
                                  reuse_actors=True)
    return tune.Tuner(trainable(), param_space=param_space, run_config=run_config, tune_config=tune_config)


@releases_driver_leases
def run(spec: GridSpec, storage: Optional[str] = None) -> RunSummary:
    """Run every trial of ``spec``.

    If ``<storage>/<experiment>`` already holds a run of the same spec (same trial configs), it is
    resumed instead: finished trials are kept, stored batches are not redone. If it holds a
    different spec, :class:`GridError` names the difference and nothing runs: one experiment
    folder never holds two grids (use a new experiment name). One driver at a time: a second
    ``run`` or ``resume`` of the experiment while this one holds its lease (``grid.run.lease``)
    is refused with :class:`GridError`.
    """
    from ray import tune

    check_data_root(spec.data_root, spec.datasets)  # a remote one probed: one line, before anything is written
    path = experiment_path(storage or spec.storage_path, spec.experiment)
    # Before the spec record is read: a second driver is refused here, not by a folder it sees
    # half made; a resume below shares this process's lease.
    take_driver_lease(path)
    # Checked before the Tuner exists: building one creates the experiment folder.
    if check_recorded_spec(spec, path) and tune.Tuner.can_restore(path):
        return resume(path)
    connect()
    # An infeasible trial would stay PENDING forever: refused before anything is written.
    check_cluster_fits(spec_demands(spec))
    with naming_full_disk(path):  # Tune's own files cut short by a full disk fail only when read back
        tuner = build_tuner(spec, storage)
        record_spec(spec, path)
        results = tuner.fit()
    raise_if_trials_hit_full_disk(results, path)
    return summarize(path, results)


__all__ = ["build_tuner", "run", "trial_name"]
