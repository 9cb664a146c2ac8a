"""Orchestration of the ER-Classifier experiments: spec → trials, Ray Tune, parquet store, reports.

``grid`` decides what runs where and what is kept; the learning itself lives in ``er_core``.
Modules: ``spec`` (GridSpec, TrialConfig), ``store`` (ResultStore, schemas, load),
``report`` (robust-accuracy tables), ``fingerprint`` (canonical hashing, versions),
``models`` (:func:`load_model`: a trained model back from an experiment),
``trainable``/``run``/``cli`` (Ray Tune and the ``er-grid`` command).

Submodules are imported on use (``from grid.spec.grid_spec import GridSpec``) so that importing
``grid`` never pulls in Ray or pyarrow.
"""


def load_model(experiment: str, trial_id: str, epoch=None, device: str = "cpu"):
    """The er_core method of a trial with its trained weights; see :func:`grid.experiment.models.load_model`."""
    from grid.experiment.models import load_model as load

    return load(experiment, trial_id, epoch=epoch, device=device)
