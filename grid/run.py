"""Build, run, resume and inspect the Ray Tune experiment of a :class:`~grid.spec.GridSpec`.

- :func:`build_tuner`: one Tune trial per ``TrialConfig`` (``param_space`` is a grid search
  over ``TrialConfig.to_dict()``), resources per dataset through ``tune.with_resources``,
  ``RunConfig(storage_path, name=experiment, FailureConfig(max_failures))``, the newest
  ``spec.keep_checkpoints`` checkpoints kept, trial names like ``digits-madry-eps0.1-lamna-s0-1a2b3c``.
- :func:`run` / :func:`resume`: ``Tuner.fit()``; ``Tuner.restore(path, resume_errored=True)``
  continues unfinished trials and resumes errored ones from their last checkpoint (Tune's
  ``restart_errored`` would throw the checkpoints away, so it is not used).
- :func:`resume` also repairs: a trial Tune considers finished whose stored results are
  damaged or incomplete (``er-grid status`` shows which) is evaluated again from its last
  checkpoint, outside Tune (``grid.repair``), recomputing exactly the missing batches.
- ``er-grid status`` lives in ``grid.status`` and reads only er-grid's own records.

Trust: ``resume`` restores through ``Tuner.restore``, which unpickles the experiment state
(``tuner.pkl``, ``experiment_state-*.json``): resume only folders you (or your cluster)
wrote. ``status``, ``query`` and ``report`` never unpickle anything.

Where things live, for local storage ``S`` and experiment ``E``: Tune's experiment folder
``S/E`` (trial folders with ``checkpoint_00000k`` per epoch) and the results store
``S/E/results`` (see ``grid.store``). The trainable finds ``S/E/results`` from Tune's storage
context at run time, so the folder ``S/E`` can be moved or copied elsewhere and resumed
there. For an object-store ``S`` (``s3://…``) the results URI is passed to the trials
explicitly (its query arguments such as ``endpoint_override`` are kept).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from pathlib import Path
from typing import Optional

from grid.experiment_files import SPEC_FILE
from grid.spec import GridSpec, TrialConfig, is_shared_storage
from grid.store import RESULTS_DIR

# Driver environment variables forwarded to every trial process (fault-injection hooks of
# grid.trainable); a Ray worker does not inherit the driver's environment otherwise.
FORWARDED_ENV_PREFIX = "ER_GRID_TEST_"


class GridError(ValueError):
    """A user error (bad path, not an experiment): the CLI prints it without a traceback."""


@dataclasses.dataclass(frozen=True)
class RunSummary:
    """What ``run``/``resume`` did: where the experiment is and how its trials ended."""

    experiment_path: str
    trials: int
    terminated: int
    errored: int
    errors: tuple  # "trial name: error message" per errored trial

    @property
    def ok(self) -> bool:
        return self.errored == 0 and self.terminated == self.trials


# --------------------------------------------------------------------------- locations


def storage_location(storage: str) -> str:
    """Tune's ``storage_path``: URIs unchanged; local paths absolute (Tune requires it)."""
    if "://" in storage:
        return storage
    return str(Path(storage).expanduser().resolve())


def experiment_path(storage: str, experiment: str) -> str:
    """``<storage>/<experiment>`` (a URI's query arguments stay at the end)."""
    return _join(storage_location(storage), experiment)


def results_location(experiment_dir: str) -> str:
    """The results store root of an experiment: ``<experiment dir>/results``."""
    return _join(experiment_dir, RESULTS_DIR)


def _join(base: str, *parts: str) -> str:
    path, sep, query = base.partition("?")
    joined = "/".join([path.rstrip("/"), *parts])
    return joined + sep + query


# --------------------------------------------------------------------------- tuner


def trial_name(trial) -> str:
    """Tune trial name and folder name: the TrialConfig's readable name."""
    return TrialConfig.from_dict(trial.config["trial"]).name


def trial_resources(config: dict) -> dict:
    """Resources of one trial (per dataset in the spec); fractional GPUs pass through."""
    resources = config["trial"]["resources"]
    return {"cpu": resources["cpu"], "gpu": resources["gpu"]}


def trainable():
    """The function trainable with per-trial resources (the same object for run and restore)."""
    from ray import tune

    from grid.trainable import train_and_evaluate

    return tune.with_resources(train_and_evaluate, resources=trial_resources)


def build_tuner(spec: GridSpec, storage: Optional[str] = None):
    """A ``tune.Tuner`` for every trial of ``spec``; ``storage`` overrides ``spec.storage_path``."""
    from ray import tune

    storage = storage_location(storage or spec.storage_path)
    if spec.num_nodes > 1 and not is_shared_storage(storage):
        raise GridError(
            f"storage {storage!r} is a local path but the spec asks for num_nodes={spec.num_nodes}; "
            "multi-node runs need shared storage such as s3://bucket/prefix or gs://bucket/prefix"
        )
    trials = spec.expand()
    results = results_location(experiment_path(storage, spec.experiment)) if "://" in storage else None
    param_space = {"trial": tune.grid_search([t.to_dict() for t in trials]), "results": results}
    run_config = tune.RunConfig(
        name=spec.experiment,
        storage_path=storage,
        failure_config=tune.FailureConfig(max_failures=spec.max_failures),
        # The newest spec.keep_checkpoints per trial (None: all): what a resumed or
        # re-evaluated trial starts from, with older ones as fallbacks.
        checkpoint_config=tune.CheckpointConfig(num_to_keep=spec.keep_checkpoints),
    )
    # reuse_actors: a finished trial's worker process runs the next trial with the same
    # resources, so torch/er_core are imported once per worker rather than once per trial.
    tune_config = tune.TuneConfig(trial_name_creator=trial_name, trial_dirname_creator=trial_name,
                                  reuse_actors=True)
    return tune.Tuner(trainable(), param_space=param_space, run_config=run_config, tune_config=tune_config)


def connect() -> None:
    """Join the Ray cluster of ``RAY_ADDRESS`` (a submitted job has it) or start a local one."""
    import ray

    if ray.is_initialized():
        return
    forwarded = {k: v for k, v in os.environ.items() if k.startswith(FORWARDED_ENV_PREFIX)}
    ray.init(runtime_env={"env_vars": forwarded} if forwarded else None)


def run(spec: GridSpec, storage: Optional[str] = None) -> RunSummary:
    """Run every trial of ``spec``.

    If ``<storage>/<experiment>`` already holds a run of the same spec (same trial configs), it is
    resumed instead: finished trials are kept, stored batches are not redone. If it holds a
    different spec, :class:`GridError` names the difference and nothing runs: one experiment
    folder never holds two grids (use a new experiment name).
    """
    from ray import tune

    from grid.spec_checks import check_data_root

    check_data_root(spec.data_root)
    path = experiment_path(storage or spec.storage_path, spec.experiment)
    # Checked before the Tuner exists: building one creates the experiment folder.
    if check_recorded_spec(spec, path) and tune.Tuner.can_restore(path):
        return resume(path)
    tuner = build_tuner(spec, storage)
    record_spec(spec, path)
    connect()
    return _summary(path, tuner.fit())


def _trial_records(spec: GridSpec) -> dict:
    """trial_id → the trial's config without where it runs (resources, data root), as
    canonical JSON: also catches changes outside trial_id (e.g. an added detection stage,
    which finished trials would otherwise never run)."""
    from grid.fingerprint import canonical_json

    return {t.trial_id: canonical_json({k: v for k, v in t.to_dict().items() if k not in ("resources", "data_root")})
            for t in spec.expand()}


def _filesystem(path: str):
    import pyarrow.fs

    if "://" in path:
        return pyarrow.fs.FileSystem.from_uri(path)
    return pyarrow.fs.LocalFileSystem(), path


def record_spec(spec: GridSpec, path: str) -> None:
    """Write ``grid_spec.json`` (spec and trial ids; no paths of ours) into the experiment folder."""
    from grid.store import ResultStore

    fs, base = _filesystem(path)
    fs.create_dir(base, recursive=True)
    payload = {"experiment": spec.experiment, "trials": _trial_records(spec),
               "spec": {k: v for k, v in spec.to_dict().items() if k not in ("storage_path", "data_root")}}
    # Atomic (temp + rename, or one PUT): a full disk never leaves half a spec record.
    ResultStore(base, filesystem=fs).put_atomic(f"{base}/{SPEC_FILE}", json.dumps(payload, indent=1, sort_keys=True).encode())


def check_recorded_spec(spec: GridSpec, path: str) -> bool:
    """True if ``path`` holds a run of this very spec (same trials, same trial configs apart
    from resources and data root); False if it holds nothing yet.

    Raises :class:`GridError` when it holds another spec's run (or a folder not made by
    ``er-grid run``)."""
    import pyarrow.fs

    fs, base = _filesystem(path)
    if fs.get_file_info(base).type == pyarrow.fs.FileType.NotFound:
        return False
    info = fs.get_file_info(f"{base}/{SPEC_FILE}")
    if info.type == pyarrow.fs.FileType.NotFound:
        if fs.get_file_info(pyarrow.fs.FileSelector(base)):
            raise GridError(f"{path} exists and was not made by `er-grid run` (no {SPEC_FILE}); "
                            "choose another experiment name or storage")
        return False
    with fs.open_input_stream(info.path) as stream:
        text = stream.read()
    try:
        recorded = json.loads(text)
    except ValueError as err:
        raise GridError(f"{path}/{SPEC_FILE} is damaged (not JSON: {err})") from err
    if not isinstance(recorded, dict) or not isinstance(recorded.get("trials"), dict):
        raise GridError(f"{path}/{SPEC_FILE} is not a spec record written by this version of er-grid")
    now = _trial_records(spec)
    if recorded["trials"] != now:
        added = [t for t in now if recorded["trials"].get(t) != now[t]]
        removed = [t for t in recorded["trials"] if t not in now]
        raise GridError(
            f"experiment {spec.experiment!r} at {path} was run with a different spec "
            f"({len(added)} trial(s) new or changed, {len(removed)} no longer in the spec); results of "
            "two specs are never mixed in one experiment: give the changed spec a new experiment "
            "name, or `er-grid resume` the existing one"
        )
    return True


def resume(path: str) -> RunSummary:
    """Resume the experiment folder ``path`` (or its results folder): unfinished and errored
    trials continue from their last checkpoint; finished ones are kept, and those whose stored
    results are damaged or incomplete are repaired (``grid.repair``). Works on a moved or
    copied folder. Trusts the folder: Tune's restore unpickles its experiment state."""
    from ray import tune

    from grid.repair import repair_finished_trials
    from grid.status import experiment_folder

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
    _check_tune_state(path)
    connect()
    try:
        tuner = tune.Tuner.restore(path, trainable=trainable(), resume_unfinished=True, resume_errored=True)
    except (ValueError, KeyError, EOFError, TypeError, AttributeError, ImportError) as err:
        # Tune's own state (tuner.pkl, experiment_state-*.json) cut short or edited.
        raise GridError(f"{path}: Ray Tune's experiment state is damaged ({type(err).__name__}: "
                        f"{str(err).splitlines()[0] if str(err) else ''})") from err
    return repair_finished_trials(path, tuner.fit())


def _check_tune_state(path: str) -> None:
    """Tune's experiment state files must at least be whole JSON: a cut-short one makes Tune's
    restore carry on with a trial list it cannot rebuild and fail deep inside ``fit``. Only
    parsed as JSON here, never unpickled."""
    import pyarrow.fs as pafs

    fs, folder = _filesystem(path)
    for info in fs.get_file_info(pafs.FileSelector(folder, allow_not_found=True)):
        if not re.fullmatch(r"experiment_state-.*\.json", info.base_name):
            continue
        try:
            with fs.open_input_stream(info.path) as stream:
                json.loads(stream.read())
        except (OSError, ValueError) as err:
            raise GridError(f"{info.path}: Ray Tune's experiment state is damaged "
                            f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})") from err


def _summary(path: str, results) -> RunSummary:
    errors = tuple(
        f"{result.path.rsplit('/', 1)[-1]}: {str(result.error).strip().splitlines()[-1]}"
        for result in results if result.error is not None
    )
    return RunSummary(
        experiment_path=path, trials=len(results), terminated=len(results) - len(errors),
        errored=len(errors), errors=errors,
    )
